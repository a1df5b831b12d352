"""The fixed-point LIF against hand-computed integer traces and an independent integer model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.core.neurons import LIF
from quant.neurons import (
    FixedPointLI,
    FixedPointLIF,
    NeuronFormat,
    calibrate_format,
    decay_code,
    threshold_code,
)
from quant.quantizers import QuantError

torch.set_num_threads(1)


def run(neuron, inputs):
    x = torch.tensor(inputs, dtype=torch.float32).view(-1, 1, 1)
    s, v = neuron(x, return_state=True)
    return s.view(-1).tolist(), v.view(-1).tolist()


def test_hand_computed_trace_truncation():
    # 4-bit membrane [-8, 7], LSB 1, beta 0.75 = 3/4 (d = 1 with 2 decay bits), threshold 5
    fmt = NeuronFormat(bits=4, lsb=1.0, decay_bits=2, rounding="truncation")
    n = FixedPointLIF(fmt, beta=0.75, threshold=5.0)
    assert n.beta_code.item() == 3 and n.thr_code.item() == 5
    spikes, v = run(n, [4, 4, 6, -10, -10, 3])
    # t0: (0*3)>>2 + 4 = 4                        -> 4
    # t1: (4*3)>>2 = 3, + 4 = 7 > 5: spike, 7 - 5  -> 2
    # t2: (2*3)>>2 = 1, + 6 = 7 > 5: spike         -> 2
    # t3: (2*3)>>2 = 1, - 10 = -9, saturates        -> -8
    # t4: (-8*3)>>2 = -6, - 10 = -16, saturates     -> -8
    # t5: (-24)>>2 = -6, + 3                        -> -3
    assert spikes == [0, 1, 1, 0, 0, 0]
    assert v == [4, 2, 2, -8, -8, -3]


def test_hand_computed_trace_nearest_differs():
    # same unit, inputs 3, 3, 2: 15/4 = 3.75 truncates to 3 but rounds to 4
    trunc = FixedPointLIF(NeuronFormat(4, 1.0, 2, "truncation"), beta=0.75, threshold=5.0)
    near = FixedPointLIF(NeuronFormat(4, 1.0, 2, "nearest"), beta=0.75, threshold=5.0)
    # truncation: 3; 9>>2 = 2, +3 = 5 (not > 5); 15>>2 = 3, +2 = 5 (not > 5)
    assert run(trunc, [3, 3, 2]) == ([0, 0, 0], [3, 5, 5])
    # nearest: 3; floor(2.25 + .5) = 2, +3 = 5; floor(3.75 + .5) = 4, +2 = 6 > 5: spike, -> 1
    assert run(near, [3, 3, 2]) == ([0, 0, 1], [3, 5, 1])


def test_input_grid_reset_zero_and_strict_threshold():
    # LSB 0.5: inputs go onto the grid first (1.2 / 0.5 = 2.4 -> 2, 0.9 / 0.5 = 1.8 -> 1 by truncation)
    fmt = NeuronFormat(6, 0.5, 2, "truncation")
    n = FixedPointLIF(fmt, beta=1.0, threshold=2.0, reset="zero")        # threshold code 4
    # codes 2, 2, 2, 1: v = 2, 4 (not > 4), 6 > 4 spike -> 0 (reset to zero), 1
    assert run(n, [1.2, 1.2, 1.2, 0.9]) == ([0, 0, 1, 0], [2, 4, 0, 1])


def test_hand_computed_synaptic_current():
    # alpha 0.5 = 2/4, beta 1, threshold 3, nearest, LSB 1, 5-bit registers [-16, 15]
    n = FixedPointLIF(NeuronFormat(5, 1.0, 2, "nearest"), beta=1.0, threshold=3.0, alpha=0.5)
    # i: 2; floor(1 + .5) + 2 = 3; floor(1.5 + .5) + 0 = 2; floor(1 + .5) + 0 = 1
    # v: 2; 2 + 3 = 5 > 3: spike -> 2; 2 + 2 = 4 > 3: spike -> 1; 1 + 1 = 2
    assert run(n, [2, 2, 0, 0]) == ([0, 1, 1, 0], [2, 2, 1, 2])


def reference_lif(codes, bits, beta_code, decay_bits, thr, rounding, reset="subtract"):
    """An independent model of the unit in Python integers with shifts (no torch)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    half = 1 << (decay_bits - 1)
    v, spikes, trace = 0, [], []
    for x in codes:
        prod = v * beta_code
        leak = prod >> decay_bits if rounding == "truncation" else (prod + half) >> decay_bits
        v = min(max(leak + x, lo), hi)
        s = int(v > thr)
        if s:
            v = v - thr if reset == "subtract" else 0
        spikes.append(s)
        trace.append(v)
    return spikes, trace


@pytest.mark.parametrize("rounding", ["truncation", "nearest"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_matches_integer_reference_on_random_inputs(rounding, reset):
    rng = np.random.default_rng(3)
    bits, decay_bits = 8, 5
    fmt = NeuronFormat(bits, 1.0, decay_bits, rounding)
    for beta, thr in [(0.9, 40.0), (0.5, 7.0), (1.0, 100.0)]:
        n = FixedPointLIF(fmt, beta=beta, threshold=thr, reset=reset)
        codes = rng.integers(-60, 90, size=(50, 4)).tolist()
        x = torch.tensor(codes, dtype=torch.float32).unsqueeze(-1)      # (T=50, B=4, 1)
        s, v = n(x, return_state=True)
        for b in range(4):
            ref_s, ref_v = reference_lif([c[b] for c in codes], bits, int(n.beta_code), decay_bits,
                                         int(n.thr_code), rounding, reset)
            assert s[:, b, 0].tolist() == ref_s
            assert v[:, b, 0].tolist() == ref_v


def test_wide_format_matches_the_float_neuron():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 32, 50, generator=g) * 0.6
    ref = LIF(beta=0.875, threshold=1.0)(x)                 # 0.875 is exact with 3+ decay bits
    fmt = calibrate_format(24, 2.0, "nearest")
    got = FixedPointLIF(fmt, beta=0.875, threshold=1.0)(x)
    assert (got == ref).float().mean() > 0.999


def test_stochastic_neuron_is_reproducible_and_trainable():
    fmt = NeuronFormat(8, 1 / 16, 4, "stochastic", seed=5)
    n = FixedPointLIF(fmt, beta=0.8, threshold=1.0).eval()
    x = torch.rand(8, 4, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(n(x), n(x))
    n.train()
    x.requires_grad_(True)
    n(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_li_readout_is_integer_and_saturates():
    li = FixedPointLI(NeuronFormat(4, 0.5, 2, "truncation"), beta=0.5)
    out = li(torch.tensor([1.0, 1.0, 5.0, 5.0]).view(-1, 1, 1)).view(-1).tolist()
    # codes 2; (2*2)>>2 = 1, +2 = 3; (3*2)>>2 = 1, +10 = 11 -> 7; (7*2)>>2 = 3, +10 -> 7; times LSB 0.5
    assert out == [1.0, 1.5, 3.5, 3.5]


def test_parameter_codes_and_calibration():
    fmt = NeuronFormat(8, 1 / 16, 4, "nearest")
    assert decay_code(0.9, fmt).item() == 14               # d = round(1.6) = 2 -> 14/16
    assert decay_code(0.9, fmt, "truncation").item() == 15  # d = 1 -> 15/16
    assert decay_code(1.0, fmt).item() == 16 and decay_code(0.0, fmt).item() == 1   # d <= 2^F - 1
    assert threshold_code(1.0, fmt).item() == 16 and threshold_code(100.0, fmt).item() == 127
    assert threshold_code(0.001, fmt).item() == 1
    f = calibrate_format(8, 5.3)                           # 5.3 needs 3 integer bits: LSB 2^(3-7)
    assert f.lsb == 2 ** -4 and f.decay_bits == 8 and f.vmax * f.lsb >= 5.3
    assert calibrate_format(24, 1.0).decay_bits == 16


@pytest.mark.parametrize("bits", [0, 1, 33])
def test_bad_neuron_bits(bits):
    with pytest.raises(QuantError, match="bit width"):
        NeuronFormat(bits, 1.0, 4)
