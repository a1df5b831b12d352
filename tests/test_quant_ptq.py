"""Post-training quantization of a Graph: values on their grids, precisions, memory by hand, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.core import data, ir
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.training.snn import evaluate as float_accuracy
from quant import QConfig, memory, quantize, quantized_net
from quant import evaluate as q_evaluate
from quant.neurons import formats_of

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "models" / "digits_snn.pt"


def tiny_graph() -> ir.Graph:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    b = np.array([0.3, -0.2, 0.05], dtype=np.float32)
    return ir.Graph((4,), [ir.Linear("fc", ["input"], weight=w, bias=b),
                           ir.LIF("lif", ["fc"], beta=0.9, threshold=1.0)], timesteps=4).validate()


def test_memory_by_hand():
    g = tiny_graph()
    # float32: weights 12 + bias 3 = 15 values = 60 B; lif beta, threshold, alpha scalars 12 B;
    # state: 3 membranes of 32 bits = 12 B
    assert memory(g) == {"param_bytes": 72.0, "state_bytes": 12.0, "memory_bytes": 84.0}
    q = quantize(g, QConfig(weight_bits=4, neuron_bits=8, per_channel=True), data=None)
    # 12 weights x 4 b + 3 biases x 8 b (membrane grid) + 3 scales x 32 b = 168 b = 21 B;
    # lif: beta, threshold, alpha at 8 b = 3 B; state 3 x 8 b = 3 B
    assert q["fc"].precision == {"weight": 4, "bias": 8}
    assert q["lif"].precision == {"membrane": 8, "current": 8, "beta": 8, "threshold": 8, "alpha": 8}
    assert memory(q) == {"param_bytes": 24.0, "state_bytes": 3.0, "memory_bytes": 27.0}
    assert sum(q.memory_bytes().values()) == 24.0
    q = quantize(g, QConfig(weight_bits=3, neuron_bits=6, per_channel=False), data=None)
    # 12 x 3 + 3 x 6 + 1 scale x 32 = 86 b = 10.75 B; lif 3 x 6 b = 2.25 B; state 3 x 6 b = 2.25 B
    assert memory(q) == {"param_bytes": 13.0, "state_bytes": 2.25, "memory_bytes": 15.25}


@pytest.mark.parametrize("rounding", ["truncation", "nearest", "stochastic"])
def test_values_lie_on_their_grids(rounding):
    g = tiny_graph()
    q = quantize(g, QConfig(4, 8, rounding), data=None)
    fc, lif = q["fc"], q["lif"]
    codes = fc.weight / fc.weight_scale[:, None]
    assert np.allclose(codes, np.round(codes), atol=1e-5) and np.abs(np.round(codes)).max() <= 7
    fmt = formats_of(q)["lif"]
    for value in (fc.bias, lif.threshold):
        c = np.asarray(value) / fmt.lsb
        assert np.allclose(c, np.round(c)) and np.all(np.abs(c) <= 2 ** 7)
    beta_code = lif.beta * 2 ** fmt.decay_bits
    assert beta_code == round(beta_code)
    # the worst-case range without data: threshold 1 + max_o sum|w_o| + |b_o|
    worst = 1.0 + np.max(np.abs(fc.weight).sum(1) + np.abs(g["fc"].bias)) * 1.0
    assert fmt.lsb * 2 ** 7 > worst >= fmt.lsb * 2 ** 6    # the finest power-of-two grid holding it


def test_truncation_biases_weights_down_nearest_does_not():
    g = tiny_graph()
    w = g["fc"].weight
    trunc = quantize(g, QConfig(3, 8, "truncation"), data=None)["fc"].weight
    near = quantize(g, QConfig(3, 8, "nearest"), data=None)["fc"].weight
    assert np.all(trunc <= w + 1e-6)                      # floor never rounds up
    assert np.abs(near - w).max() <= quantize(g, QConfig(3, 8), data=None)["fc"].weight_scale.max() / 2 + 1e-6


@pytest.fixture(scope="module")
def digits():
    return native.load(DIGITS), data.load("digits")


def test_digits_ptq_keeps_accuracy_and_round_trips(digits, tmp_path):
    g, split = digits
    float_acc = float_accuracy(SpikingNet(g), split.x_test, split.y_test)
    q = quantize(g, QConfig(8, 16), data=split)
    ev = q_evaluate(q, split.x_test, split.y_test)
    assert ev.accuracy >= float_acc - 0.01
    assert ev.memory["memory_bytes"] < memory(g)["memory_bytes"] / 3.5
    path = native.save(q, tmp_path / "q.pt")
    back = native.load(path)
    assert back["conv2d0"].precision == q["conv2d0"].precision and formats_of(back) == formats_of(q)
    x = split.x_test[:64]
    assert torch.equal(quantized_net(back).predict(x), quantized_net(q).predict(x))


def test_fixed_point_network_differs_from_float_at_low_precision(digits):
    g, split = digits
    q = quantize(g, QConfig(4, 4), data=split)
    # the bit-true net (saturating 4-bit membranes) and the float net on the same on-grid values disagree
    x = split.x_test[:128]
    assert not torch.equal(quantized_net(q).predict(x), SpikingNet(q).predict(x))


def test_compile_accepts_quantized_model(digits, tmp_path):
    from deploy.pipeline import compile as run_compile

    g, split = digits
    path = native.save(quantize(g, QConfig(4, 8), data=split), tmp_path / "q.pt")
    rq = run_compile(str(path), target="digital", data="digits", samples=32)
    rf = run_compile(str(DIGITS), target="digital", data="digits", samples=32)
    assert rq.totals.memory_bytes < rf.totals.memory_bytes / 4
