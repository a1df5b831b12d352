"""IMC cost model: a tiny layer hand-computed from the spec, and the DVSNet imc / imc-adc ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deploy.core import data, ir
from deploy.core.net import build
from deploy.training.arch.dvsnet import balance_thresholds, dvsnet
from hwmodels.imc import ImcAdcTarget, ImcTarget
from hwmodels.spec import load_spec

SPEC = {k: c.value for k, c in load_spec("imc").constants.items()}


def _tiny():
    w = np.array([[3, -2, 1, 0]], np.float32)
    lin = ir.Linear("syn", ["input"], weight=w, weight_scale=np.array([1.0], np.float32), precision={"weight": 3})
    return ir.Graph((4,), [lin, ir.LIF("lif", ["syn"])], timesteps=1, encoding="rate").validate()


def _cost(cls, options):
    tgt = cls(options={"weight_bits": 3, "rows": 4, "cols": 4, **options})
    m = tgt.map(_tiny())
    act = tgt.simulate(m, torch.tensor([[1., 1., 0., 1.], [1., 0., 1., 1.]]))
    return tgt.cost(m, act)


@pytest.mark.parametrize("adc", [False, True])
def test_tiny_layer_hand_computed(adc):
    s = SPEC
    cost = _cost(ImcAdcTarget if adc else ImcTarget, {})
    # counters per inference (see test_imc_crossbar): 1 read, 4 conversions, 3 active rows, 12 active
    # cells, 3 conducting (digit) units
    conv, rows, cells, units = 4, 3, 12, 3
    phases, t_conv, levels = (4, s["flash_latency_s"], 32) if adc else (1, s["sa_latency_s"], 2)
    g_on, g_off = 1 / s["r_on_ohm"], 1 / s["r_off_ohm"]
    g_col = units * (g_on - g_off) + cells * g_off
    c_line = 4 * 2 * 105e-9 * 0.2e-15 / 1e-6           # 4 cells of 2F at 0.2 fF/um
    want = {
        "array": (conv + rows * phases) * c_line * 0.5 ** 2,
        "conversion": conv * 8.4147e-6 * (levels - 1) * t_conv + 0.0972 * g_col * t_conv,
        "switch_matrix": rows * phases * 5e-12 / 64,
        "encoder": conv * (50e-12 if adc else 4e-12) / 128,
        "shift_add": conv * (82e-12 if adc else 33e-12) / 128,
        "buffer": (4 + 1) * 10e-12 / 64,
        "lif": 1.2026e-3 * 5e-9,
    }
    comparators = 31 if adc else 4
    area_um2 = 16 * 0.21 ** 2 + comparators * 95.3 + 1448
    want["interconnect"] = 5 * 0.2e-15 / 1e-6 * 1.1 ** 2 * math.sqrt(area_um2 * 1e-12) / 2
    # latency: reads pipelined; bound = max(conversion, 5 ns LIF, 1 ns shift-add, 1 ns fetch)
    stages = [phases * t_conv * 1e9, 5.0, 1.0, 1.0]
    step_ns = max(stages) + sum(stages) - max(stages) + 5.0
    want["leakage"] = 57.64e-9 * step_ns * 1e-9
    got = cost.energy_breakdown()
    assert set(got) == set(want)
    for key, val in want.items():
        assert got[key] == pytest.approx(val, rel=1e-6), key
    assert cost.latency_s == pytest.approx(step_ns * 1e-9, rel=1e-9)
    assert cost.area_mm2 == pytest.approx(area_um2 * 1e-6, rel=1e-9)
    assert cost.layers[0].memory_bytes == 4 * 4 / 8              # 4 rows x 4 columns x 1 bit
    assert any("NeuroSim's convention" in a for a in cost.assumptions)


def test_physical_read_energy_convention():
    neuro, phys = _cost(ImcTarget, {}), _cost(ImcTarget, {"read_energy": "physical"})
    g_on, g_off = 1 / SPEC["r_on_ohm"], 1 / SPEC["r_off_ohm"]
    g_col = 3 * (g_on - g_off) + 12 * g_off
    d_array = phys.energy_breakdown()["array"] - neuro.energy_breakdown()["array"]
    d_conv = neuro.energy_breakdown()["conversion"] - phys.energy_breakdown()["conversion"]
    assert d_array == pytest.approx(0.25 * g_col * 10e-9, rel=1e-9)
    assert d_conv == pytest.approx(0.0972 * g_col * 1e-9, rel=1e-9)
    assert any("physical" in a for a in phys.assumptions)


def test_assumed_rate_mode_uses_expected_counters():
    from deploy.core.metrics import assumed_activity

    tgt = ImcTarget()
    m = tgt.map(_tiny())
    cost = tgt.cost(m, assumed_activity(m.graph, 0.5))
    assert cost.energy_j > 0
    assert any("estimated from the input spike rate" in a for a in cost.assumptions)


@pytest.fixture(scope="module")
def dvs():
    torch.manual_seed(0)
    net = build(dvsnet(timesteps=5))
    x, y = data.synthetic_events(2, 5, 64, 11, activity=0.5, seed=1)
    balance_thresholds(net, x, rate=0.15)
    return net.to_graph(), x, y


def test_dvsnet_ratios_in_published_ranges(dvs):
    graph, x, _ = dvs
    assert len(graph.synapses()) == 12 and graph.shapes()["flatten"] == (128,)
    costs, acts = {}, {}
    for cls, opts in ((ImcTarget, {"calibrate": True}), (ImcAdcTarget, {})):
        tgt = cls(options=opts)
        m = tgt.map(graph)
        acts[tgt.name] = tgt.simulate(m, x, batch_size=2)
        costs[tgt.name] = tgt.cost(m, acts[tgt.name])
    assert acts["imc"].layers["conv1"].input_rate == pytest.approx(0.5, abs=0.02)
    assert acts["imc"].layers["conv6"].input_rate > 0.02          # activity reaches the deep layers
    e = costs["imc-adc"].energy_j / costs["imc"].energy_j
    lat = costs["imc-adc"].latency_s / costs["imc"].latency_s
    assert 2 <= e <= 7, e
    assert 8.9 <= lat <= 24.6, lat
    # the ratios come from conversion energy and conversion time
    bd_sa, bd_adc = costs["imc"].energy_breakdown(), costs["imc-adc"].energy_breakdown()
    assert bd_adc["conversion"] > 20 * bd_sa["conversion"]
    assert costs["imc-adc"].latency_breakdown_s["conversion"] > 0.9 * costs["imc-adc"].latency_s


def test_dvsnet_through_compile(dvs):
    from deploy import pipeline
    graph, _, _ = dvs
    report = pipeline.compile(graph, target="imc", data="events", samples=2, compare="imc-adc", batch_size=2)
    ratios = report.comparison.ratios
    assert 2 <= ratios["energy"] <= 7 and 8.9 <= ratios["latency"] <= 24.6, ratios
