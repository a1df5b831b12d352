"""Fixed-point conversion: formats, quantization error, exact quantized layers, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.loihi import Loihi1Target
from hwmodels.loihi.fixed_point import LoihiOverflowWarning


def mlp(w1=None, b1=None, beta=0.9, threshold=1.0, reset="zero", alpha=0.0, encoding="rate"):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (6, 4)).astype(np.float32) if w1 is None else np.asarray(w1, np.float32)
    b1 = np.zeros(w1.shape[0], np.float32) if b1 is None else np.asarray(b1, np.float32)
    return ir.Graph((w1.shape[1],), [
        ir.Linear("fc", ["input"], weight=w1, bias=b1),
        ir.LIF("n", ["fc"], beta=beta, threshold=threshold, reset=reset, alpha=alpha),
    ], timesteps=4, encoding=encoding)


def test_parameters_follow_lava_formats():
    w = np.array([[0.5, -0.25, 0.1, 0.0], [1.0, 0.3, -0.7, 0.2]], np.float32)
    g = mlp(w, b1=[0.05, -0.1], beta=0.75, threshold=2.0)
    net = Loihi1Target().map(g).network
    p, c = net.populations[0], net.connections[0]
    assert p.dv == 1024 and p.du == 4095 and p.start == 1         # 4096 * (1 - 0.75); alpha 0 -> du 4095
    assert 0 < p.vth < 2 ** 17 and p.bias_exp == 6
    s = p.vth / 2.0                                                # integer units per float unit
    back = c.weight * 2.0 ** c.weight_exp / s
    lsb = 2.0 ** (c.weight_exp + 1) / s                            # mixed sign: even integers
    assert np.abs(back - w).max() <= lsb / 2 + 1e-9
    assert c.weight.min() >= -256 and c.weight.max() <= 254 and (c.weight % 2 == 0).all()
    bias_back = p.bias_mant * 2.0 ** p.bias_exp / (64 * s)
    assert np.abs(bias_back - [0.05, -0.1]).max() <= 2.0 ** p.bias_exp / (64 * s) / 2 + 1e-9
    assert p.error["weight:fc"] == pytest.approx(np.linalg.norm(back - w) / np.linalg.norm(w))
    assert p.error["beta"] == 0.0


def test_automatic_scale_keeps_the_worst_case_current_inside_24_bits():
    w = np.full((3, 50), 0.9, np.float32)                         # 50 inputs all firing: 45 thresholds
    net = Loihi1Target().map(mlp(w)).network
    c = net.connections[0]
    worst = (c.weight * 2.0 ** c.weight_exp).sum(1).max() * 64
    assert worst < 2 ** 23
    assert worst > 0.9 * 2 ** 23                                   # and uses the range


def test_quantized_layer_keeps_its_integer_codes():
    rng = np.random.default_rng(1)
    codes = rng.integers(-8, 8, (5, 7)).astype(np.float32)
    g = mlp(codes * 0.1)
    g["fc"].precision = {"weight": 4}
    g["fc"].weight_scale = np.array([0.1], np.float32)
    c = Loihi1Target().map(g).network.connections[0]
    assert c.num_weight_bits == 4
    assert np.array_equal(c.weight, codes.astype(np.int64) * 32)   # 4-bit codes << (9 - 4)
    assert c.error["weight"] < 1e-3


def test_per_channel_scales_are_requantized_to_8_bits_with_a_note():
    rng = np.random.default_rng(2)
    codes = rng.integers(-7, 8, (5, 7)).astype(np.float32)
    scales = np.linspace(0.05, 0.2, 5).astype(np.float32)
    g = mlp(codes * scales[:, None])
    g["fc"].precision = {"weight": 4}
    g["fc"].weight_scale = scales
    net = Loihi1Target().map(g).network
    assert net.connections[0].num_weight_bits == 8 and net.connections[0].error["weight"] < 0.01
    assert any("'fc': 4-bit weights re-quantized to 8 bits" in n and "weight_scale" in n for n in net.notes)


def test_direct_encoding_graded_input():
    g = mlp(encoding="direct")
    net = Loihi1Target().map(g).network
    assert net.input_scale == 255 and net.connections[0].graded
    net4 = Loihi1Target(options={"input_bits": 4}).map(g).network
    assert net4.input_scale == 15


def test_fixed_scale_weight_overflow_names_layer_and_amount():
    g = mlp(np.array([[3.0, -0.1, 0.0, 0.0]] * 2))
    with pytest.raises(TargetError, match=r"layer 'n'.*weight of 'fc'.*overflow by 1\.47x.*saturate=True"):
        Loihi1Target(options={"scale": 15934}).map(g)    # 3 * 15934 = 47802 > 254 * 2^7 = 32512
    with pytest.warns(LoihiOverflowWarning, match="clipped"):
        m = Loihi1Target(options={"scale": 15934, "saturate": True}).map(g)
    assert m.network.connections[0].weight.max() == 254 and m.network.connections[0].weight_exp == 7


def test_threshold_and_bias_overflow():
    with pytest.raises(TargetError, match=r"layer 'n': threshold vth \(17-bit\) needs 200000.*overflow by 1\.53x"):
        Loihi1Target(options={"scale": 100000}).map(mlp(threshold=2.0))
    with pytest.raises(TargetError, match=r"layer 'n': bias mantissa .* needs 5000.*overflow by 1\.22x"):
        Loihi1Target(options={"scale": 1000}).map(mlp(b1=[5.0, 0, 0, 0, 0, 0]))
    with pytest.raises(TargetError, match="no threshold scale fits"):
        Loihi1Target().map(mlp(b1=[1e5, 0, 0, 0, 0, 0]))


def test_decay_overflow_and_saturation():
    with pytest.raises(TargetError, match=r"layer 'n': dv \(beta=0\) needs 4096.*4095"):
        Loihi1Target().map(mlp(beta=0.0))
    with pytest.warns(LoihiOverflowWarning):
        net = Loihi1Target(options={"saturate": True}).map(mlp(beta=0.0)).network
    assert net.populations[0].dv == 4095
    with pytest.raises(TargetError, match=r"alpha=1"):
        Loihi1Target().map(mlp(alpha=1.0))


def test_reset_subtract_is_approximated_or_refused():
    m = Loihi1Target().map(mlp(reset="subtract"))
    assert any("reset" in n for n in m.network.notes)
    with pytest.raises(TargetError, match="layer 'n': reset 'subtract' is not available"):
        Loihi1Target(options={"strict_reset": True}).map(mlp(reset="subtract"))


def test_unsupported_layers_are_named():
    from deploy.core.ir import timescale_node

    base = mlp()
    g = ir.Graph((4,), [base["fc"], timescale_node("bn", ["fc"], 6, 4), ir.LIF("n", ["bn"])], timesteps=4)
    with pytest.raises(TargetError, match=r"layer 'bn': layer type 'timescale' is not supported on target 'loihi'"):
        Loihi1Target().map(g)
    g = ir.Graph((1, 4, 4), [ir.Pool2d("mp", ["input"], mode="max"), ir.Flatten("f", ["mp"]),
                             ir.Linear("fc", ["f"], weight=np.ones((2, 4), np.float32)), ir.LIF("n", ["fc"])])
    with pytest.raises(TargetError, match="layer 'mp': max pooling"):
        Loihi1Target().map(g)
    g = ir.Graph((4,), [base["fc"], ir.LI("out", ["fc"])])
    with pytest.raises(TargetError, match="layer 'out': layer type 'li' .* output spike counts"):
        Loihi1Target().map(g)
    g = mlp(beta=np.array([0.5, 0.9, 0.9, 0.9, 0.9, 0.9], np.float32))
    with pytest.raises(TargetError, match="layer 'n': beta differs between neurons"):
        Loihi1Target().map(g)


def test_bad_options():
    with pytest.raises(TargetError, match="unknown option 'chip'"):
        Loihi1Target(options={"chip": 2})
    with pytest.raises(TargetError, match="backend"):
        Loihi1Target(options={"backend": "hw"})
    with pytest.raises(TargetError, match="chips"):
        Loihi1Target(options={"chips": 0})
