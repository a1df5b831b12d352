"""Crossbar functional simulation against independent references: a naive per-array
loop, the float layer, hand-checked sense-amplifier outputs, seeded non-idealities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.core import ir
from hwmodels.imc import ImcAdcTarget, ImcTarget
from hwmodels.imc.config import NonIdeal
from hwmodels.imc.cost import expected_counters
from hwmodels.imc.nonideal import program


def _quantized_graph(kind: str, codes: np.ndarray, scale: float, bits: int, hw: int = 5, bias=None) -> ir.Graph:
    w = (codes * scale).astype(np.float32)
    prec = {"weight": bits}
    sc = np.array([scale], np.float32)
    if kind == "conv2d":
        syn = ir.Conv2d("syn", ["input"], weight=w, bias=bias, padding=(1, 1), weight_scale=sc, precision=prec)
        shape = (codes.shape[1], hw, hw)
    else:
        syn = ir.Linear("syn", ["input"], weight=w, bias=bias, weight_scale=sc, precision=prec)
        shape = (codes.shape[1],)
    return ir.Graph(shape, [syn, ir.LIF("lif", ["syn"])], timesteps=1, encoding="rate").validate()


def _columns(bits: int, bpc: int, signed: str):
    """(sign, slice, digit function) per column group, from the integer definition."""
    levels, mask = 2 ** bpc, 2 ** bpc - 1
    if signed == "differential":
        n = math.ceil((bits - 1) / bpc)
        return ([(1, k, lambda q, k=k: (max(q, 0) >> (k * bpc)) & mask) for k in range(n)]
                + [(-1, k, lambda q, k=k: (max(-q, 0) >> (k * bpc)) & mask) for k in range(n)]), levels
    n, off = math.ceil(bits / bpc), 2 ** (bits - 1)
    return [(1, k, lambda q, k=k: ((q + off) >> (k * bpc)) & mask) for k in range(n)], levels


def _convert(p: torch.Tensor, step: float, adc_bits: int) -> torch.Tensor:
    if adc_bits == 1:
        return (p > step / 2).double()
    return torch.clamp(torch.ceil(p / step - 0.5), 0, 2 ** adc_bits - 1)


def naive_layer(x, codes, scale, bias, bits, bpc, signed, rows, adc_bits, steps, conv):
    """Loop over row tiles (arrays), columns and outputs: one partial sum at a time."""
    if conv:
        kk = codes.shape[2] * codes.shape[3]
        unf = F.unfold(x.double(), codes.shape[2:], padding=1)            # (N, C*kk, P)
        n_tiles = math.ceil(codes.shape[1] / (rows // kk))             # whole kernel windows per array,
        unit = math.ceil(codes.shape[1] / n_tiles)                      # channels spread evenly
        tiles = [list(range(c * kk, min(c + unit, codes.shape[1]) * kk)) for c in range(0, codes.shape[1], unit)]
    else:
        unf = x.double().unsqueeze(-1)
        unit = math.ceil(codes.shape[1] / math.ceil(codes.shape[1] / rows))
        tiles = [list(range(r, min(r + unit, codes.shape[1]))) for r in range(0, codes.shape[1], unit)]
    flat = codes.reshape(codes.shape[0], -1).astype(int)
    cols, levels = _columns(bits, bpc, signed)
    y = torch.zeros(x.shape[0], codes.shape[0], unf.shape[-1], dtype=torch.float64)
    for idx in tiles:
        xt = unf[:, idx, :]
        for j, (sign, k, digit) in enumerate(cols):
            for o in range(codes.shape[0]):
                d = torch.tensor([digit(int(q)) for q in flat[o, idx]], dtype=torch.float64)
                p = (xt * d[None, :, None]).sum(1)
                y[:, o] += sign * levels ** k * steps[j] * _convert(p, steps[j], adc_bits)
        if signed == "offset":
            off = 2 ** (bits - 1)
            for k in range(len(cols)):
                dig = (off >> (k * bpc)) & (levels - 1)
                if dig:
                    p = xt.sum(1) * dig
                    y -= (levels ** k * steps[k] * _convert(p, steps[k], adc_bits))[:, None, :]
    y = y * scale
    if bias is not None:
        y = y + torch.as_tensor(bias, dtype=torch.float64)[None, :, None]
    return y.reshape(x.shape[0], codes.shape[0], *([x.shape[2], x.shape[3]] if conv else []))


CASES = [
    ("conv2d", ImcTarget, {"rows": 18, "cols": 8}, 4),
    ("conv2d", ImcAdcTarget, {"rows": 20, "cols": 5, "adc_bits": 3, "adc_share": 2}, 4),
    ("conv2d", ImcAdcTarget, {"rows": 27, "cols": 7, "adc_bits": 2, "signed": "offset", "bits_per_cell": 2}, 5),
    ("linear", ImcTarget, {"rows": 4, "cols": 3, "bits_per_cell": 2}, 6),
    ("linear", ImcAdcTarget, {"rows": 3, "cols": 4, "adc_bits": 4, "signed": "offset"}, 4),
    ("conv2d-1ch", ImcTarget, {"rows": 16, "cols": 8}, 4),     # one input channel: channels-first psums
]


@pytest.mark.parametrize("kind, cls, options, bits", CASES)
def test_vectorized_equals_naive_array_loop(kind, cls, options, bits):
    rng = np.random.default_rng(1)
    qmax = 2 ** (bits - 1) - 1
    single = kind == "conv2d-1ch"
    kind = "conv2d" if single else kind
    shape = (3, 1 if single else 5, 3, 3) if kind == "conv2d" else (3, 10)
    codes = rng.integers(-qmax, qmax + 1, size=shape).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    graph = _quantized_graph(kind, codes, 0.25, bits, bias=bias)
    tgt = cls(options={**options, "weight_bits": bits})
    mapping = tgt.map(graph)
    lm = mapping.layers["syn"]
    lm.steps[:] = 0.5 + rng.random(lm.slicing.groups) * 2            # distinct step per column group
    x = (torch.rand(7, *graph.input_shape, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with torch.no_grad():
        got = tgt.network(mapping).layers["syn"](x).double()
    want = naive_layer(x, codes, 0.25, bias, bits, tgt.config.bits_per_cell, tgt.config.signed,
                       tgt.config.rows, tgt.config.adc_bits, lm.steps.astype(np.float64), kind == "conv2d")
    assert lm.row_tiles == 1 if single else lm.row_tiles > 1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("stride, channels", [(1, 8), (2, 8), (1, 1)])
def test_int8_sense_amplifier_equals_float_compare(stride, channels):
    """The int8 convolutions (the SA folded into the requantization, then a count over row
    tiles) give the same firing counts as the float partial sums compared with fractional
    references (learned trims), and the layer the same output."""
    rng = np.random.default_rng(4)
    codes = rng.integers(-7, 8, size=(6, channels, 3, 3)).astype(np.float32)
    conv = ir.Conv2d("syn", ["input"], weight=codes * 0.1, bias=None, stride=(stride, stride), padding=(1, 1),
                     weight_scale=np.full(6, 0.1, np.float32), precision={"weight": 4})
    graph = ir.Graph((channels, 7, 7), [conv, ir.LIF("lif", ["syn"])], timesteps=1, encoding="rate").validate()
    tgt = ImcTarget(options={"rows": 36})
    mapping = tgt.map(graph)
    lm = mapping.layers["syn"]
    lm.steps[:] = 0.5 + rng.random(lm.slicing.groups) * 4
    lm.trims = rng.normal(scale=1.5, size=lm.column_count).astype(np.float32)
    lm.trims[:3] = np.round(lm.trims[:3]) + (lm.steps[0] / 2 % 1)    # references on integers: acc == ref
    layer = tgt.network(mapping).layers["syn"]
    assert layer.w_int8 is not None
    x = (torch.rand(5, channels, 7, 7, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    xt = layer._tile_input(x)
    def float_compare():
        fired = layer._psums(xt, layer.w, layer._thresholds()).gt(0).float()     # (N, tiles*cols, P)
        return fired.view(fired.shape[0], layer.n_tiles, -1, fired.shape[-1]).sum(1), fired

    with torch.no_grad():
        want, fired = float_compare()
        assert torch.equal(layer._sense_int8(xt), want) and 0 < float(fired.mean()) < 1
        assert (layer.n_tiles > 1) == (channels > 4)
        before = layer(x)
        layer.step.mul_(1.7)                  # new references (as calibration sets them): packed weights follow
        want, _ = float_compare()
        assert torch.equal(layer._sense_int8(xt), want)
        int8 = layer(x)                       # and so does the cached shift-add matrix
        assert not torch.equal(int8, before)
        layer.w_int8 = None                                     # the float path
        torch.testing.assert_close(int8, layer(x))             # same up to the summation order
    noisy = ImcTarget(options={"rows": 36, "read_noise": 0.01})
    assert noisy.network(noisy.map(graph)).layers["syn"].w_int8 is None


def test_ideal_high_resolution_adc_equals_float_layer():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)
    conv = ir.Conv2d("syn", ["input"], weight=w, bias=None, padding=(1, 1))
    graph = ir.Graph((6, 6, 6), [conv, ir.LIF("lif", ["syn"])], timesteps=1, encoding="rate").validate()
    tgt = ImcAdcTarget(options={"adc_bits": 8, "adc_share": 1, "rows": 32, "weight_bits": 5})
    mapping = tgt.map(graph)
    x = (torch.rand(5, 6, 6, 6, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        got = tgt.network(mapping).layers["syn"](x)
    wq = torch.from_numpy(mapping.graph["syn"].weight)
    torch.testing.assert_close(got, F.conv2d(x, wq, padding=1), atol=1e-5, rtol=1e-5)   # exact to float
    scale = torch.from_numpy(mapping.layers["syn"].scale).view(1, -1, 1, 1)
    bound = F.conv2d(x, torch.ones(1, 6, 3, 3), padding=1) * scale / 2                    # |w - wq| <= scale/2
    assert torch.all((got - F.conv2d(x, torch.from_numpy(w), padding=1)).abs() <= bound + 1e-5)


def test_sense_amplifier_hand_checked():
    # 3-bit differential codes [3, -2, 1, 0]: + magnitudes 3,0,1,0 / - magnitudes 0,2,0,0 (2 slices each)
    graph = _quantized_graph("linear", np.array([[3, -2, 1, 0]], np.float32), 1.0, 3)
    x = torch.tensor([[1., 1., 0., 1.], [1., 0., 1., 1.], [0., 0., 0., 0.]])
    # column partial sums, x1: +s0 = 1, +s1 = 1, -s0 = 0, -s1 = 1 -> (1 + 2) - (0 + 2) = 1
    #                      x2: +s0 = 2, +s1 = 1, -s0 = 0, -s1 = 0 -> 1 + 2 = 3 (float: 4)
    tgt = ImcTarget(options={"weight_bits": 3, "rows": 4})
    with torch.no_grad():
        y = tgt.network(tgt.map(graph)).layers["syn"](x)
    assert y[:, 0].tolist() == [1.0, 3.0, 0.0]
    # reference 1.5 (step 3): only +s0 of x2 (= 2) fires -> 3 * 1; x1: nothing fires
    tgt = ImcTarget(options={"weight_bits": 3, "rows": 4, "sa_reference": 1.5})
    with torch.no_grad():
        y = tgt.network(tgt.map(graph)).layers["syn"](x)
    assert y[:, 0].tolist() == [0.0, 3.0, 0.0]


def _conv_graph(seed=3) -> ir.Graph:
    rng = np.random.default_rng(seed)
    conv = ir.Conv2d("syn", ["input"], weight=rng.normal(size=(4, 8, 3, 3)).astype(np.float32),
                     bias=np.full(4, 0.5, np.float32), padding=(1, 1))
    return ir.Graph((8, 6, 6), [conv, ir.LIF("lif", ["syn"])], timesteps=1, encoding="rate").validate()


def _run(options) -> torch.Tensor:
    tgt = ImcAdcTarget(options=options)
    x = (torch.rand(4, 8, 6, 6, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    with torch.no_grad():
        return tgt.network(tgt.map(_conv_graph())).layers["syn"](x)


def test_seeded_nonidealities_reproducible_and_zero_sigma_ideal():
    noisy = {"variation": 0.2, "read_noise": 0.05, "stuck_on": 0.01, "stuck_off": 0.01, "seed": 7}
    a, b = _run(noisy), _run(noisy)
    assert torch.equal(a, b)
    assert not torch.equal(a, _run({**noisy, "seed": 8}))
    ideal = _run({})
    assert not torch.equal(a, ideal)
    for model in ("lognormal", "gaussian"):
        assert torch.equal(_run({"variation": 0.0, "variation_model": model, "read_noise": 0.0}), ideal)
        g = torch.randint(0, 2, (2, 3, 5)).float()
        assert torch.equal(program(g, NonIdeal(variation=0.0, variation_model=model), 2, 0.0, None), g)
    # every cell stuck off: no column current, only the bias remains
    assert torch.allclose(_run({"stuck_off": 1.0}), torch.full_like(ideal, 0.5))


def test_programming_statistics():
    gen = torch.Generator().manual_seed(0)
    g = torch.ones(200_000)
    ln = program(g, NonIdeal(variation=0.1), 2, 0.0, gen)
    assert abs(float(ln.log().std()) - 0.1) < 0.002 and abs(float(ln.log().mean())) < 0.002
    st = program(torch.zeros(200_000), NonIdeal(stuck_on=0.05), 2, 0.0, gen)
    assert abs(float((st == 1).float().mean()) - 0.05) < 0.003
    lv = program(torch.arange(16.0), NonIdeal(levels=4), 16, 0.0, gen)        # 4 of 16 levels: 0, 5, 10, 15
    assert sorted(set(lv.tolist())) == [0.0, 5.0, 10.0, 15.0]


def test_counters_hand_count_and_expectation():
    graph = _quantized_graph("linear", np.array([[3, -2, 1, 0]], np.float32), 1.0, 3)
    tgt = ImcTarget(options={"weight_bits": 3, "rows": 4})
    m = tgt.map(graph)
    net = tgt.network(m)
    x = torch.tensor([[1., 1., 0., 1.], [1., 0., 1., 1.]])
    net.run(x)
    c = net.pop_counters()["syn"]
    # 2 samples, 1 read each, 1 array of 4 columns; active rows 3 and 3; cell digits on active rows:
    # row digit sums over the 4 columns = [2, 1, 1, 0] -> x1: 2 + 1 + 0 = 3, x2: 2 + 1 + 0 = 3
    assert c == {"reads": 1.0, "array_reads": 1.0, "conversions": 4.0, "row_activations": 3.0,
                 "active_cells": 12.0, "cell_current_units": 3.0}
    # Bernoulli inputs: simulated counters match the rate-based expectation of the cost model
    g = _conv_graph()
    g.encoding = "rate"
    tgt = ImcTarget(options={"rows": 36})
    m = tgt.map(g)
    net = tgt.network(m)
    x = (torch.rand(400, 8, 6, 6, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    net.run(x)
    sim, exp = net.pop_counters()["syn"], expected_counters(m.layers["syn"], 0.3, 1)
    for key in sim:
        assert sim[key] == pytest.approx(exp[key], rel=0.02), key


def test_residual_and_pooled_inputs_are_exact_bit_planes():
    from deploy.core.net import SpikingNet

    rng = np.random.default_rng(4)

    def conv(name, src, c_in, c_out):
        return ir.Conv2d(name, [src], weight=rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32) * 0.5,
                         bias=np.full(c_out, 0.2, np.float32), padding=(1, 1))

    nodes = [conv("ca", "input", 2, 4), ir.LIF("la", ["ca"]), conv("cb", "la", 4, 4), ir.LIF("lb", ["cb"]),
             ir.Add("res", ["la", "lb"]), ir.Pool2d("pool", ["res"], mode="avg"), conv("cc", "pool", 4, 3),
             ir.LIF("lc", ["cc"])]
    graph = ir.Graph((2, 8, 8), nodes, timesteps=3, encoding="rate").validate()
    tgt = ImcAdcTarget(options={"adc_bits": 8})
    m = tgt.map(graph)
    cc = m.layers["cc"]
    # spikes summed (0..2) then averaged over 2x2: multiples of 1/4 up to 2 -> 4 exact planes
    assert cc.analog and cc.planes == 4 and cc.input_step == 0.25
    x = (torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    ref = SpikingNet(m.graph)
    enc = ref.encode(x, torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, want = ref.run(enc, record=True, encoded=True)
        _, got = tgt.network(m, floor=True).run(enc, record=True, encoded=True)
    torch.testing.assert_close(got["cc"], want["cc"], atol=1e-5, rtol=1e-5)
    cost = tgt.cost(m, tgt.simulate(m, x))
    digital = {lc.name: lc.energy_j.get("digital", 0.0) for lc in cost.layers}
    assert digital["res"] == pytest.approx(4 * 8 * 8 * 3 * 3e-14) and digital["pool"] > 0
