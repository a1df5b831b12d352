"""One memory definition everywhere (inspect, quantize, every target, NeuroBench footprint), the
targets' named overheads, and how each target's total latency follows from its layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.core import ir
from deploy.core.metrics import layer_memory
from deploy.pipeline import compile as run_compile
from deploy.pipeline import inspect
from deploy.report.render import markdown, text_table
from quant.evaluate import memory as quant_memory

# By hand (bits / 8):
# fc1: 24 weights x 4 b + 4 per-output scales x 32 b + 4 biases x 8 b = 256 b = 32 B
# lif1: beta, threshold, alpha x 8 b = 3 B; state: 4 membranes x 16 b = 8 B           -> 11 B
# fc2: 12 weights x 4 b = 6 B
# lif2: 3 B of parameters; state: 3 x (16 b membrane + 16 b current, alpha != 0) = 12 B -> 15 B
HAND = {"fc1": 32.0, "lif1": 11.0, "fc2": 6.0, "lif2": 15.0}
HAND_STATE = {"fc1": 0.0, "lif1": 8.0, "fc2": 0.0, "lif2": 12.0}


def hand_graph() -> ir.Graph:
    rng = np.random.default_rng(1)
    codes1 = rng.integers(1, 8, size=(4, 6)) * rng.choice([-1, 1], size=(4, 6))
    scale1 = np.array([0.05, 0.04, 0.06, 0.05], np.float32)
    codes2 = rng.integers(1, 8, size=(3, 4))
    neuron = {"beta": 8, "threshold": 8, "alpha": 8, "membrane": 16, "current": 16}
    nodes = [
        ir.Linear("fc1", ["input"], weight=(codes1 * scale1[:, None]).astype(np.float32),
                  bias=np.full(4, 0.125, np.float32), weight_scale=scale1, precision={"weight": 4, "bias": 8}),
        ir.LIF("lif1", ["fc1"], beta=0.75, threshold=0.25, reset="zero", precision=dict(neuron)),
        ir.Linear("fc2", ["lif1"], weight=(codes2 * 0.125).astype(np.float32), precision={"weight": 4}),
        ir.LIF("lif2", ["fc2"], beta=0.5, threshold=0.5, alpha=0.5, reset="zero", precision=dict(neuron)),
    ]
    return ir.Graph((6,), nodes, timesteps=4, encoding="rate", name="hand").validate()


def data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 6, generator=gen), torch.randint(0, 3, (n,), generator=gen)


@pytest.fixture(scope="module")
def reports():
    return {t: run_compile(hand_graph(), target=t, data=data()) for t in ("digital", "imc", "loihi")}


def test_one_definition_by_hand():
    g = hand_graph()
    mem = layer_memory(g)
    assert {k: m.total for k, m in mem.items()} == HAND
    assert {k: m.state for k, m in mem.items()} == HAND_STATE
    info = inspect(g)
    assert {r["name"]: r["memory_bytes"] for r in info["layers"]} == HAND
    assert info["memory_bytes"] == sum(HAND.values()) == 64.0
    assert quant_memory(g) == {"param_bytes": 44.0, "state_bytes": 20.0, "memory_bytes": 64.0}
    assert sum(g.memory_bytes().values()) == 44.0             # parameters only


@pytest.mark.parametrize("target", ["digital", "imc", "loihi"])
def test_every_target_starts_from_the_same_memory(reports, target):
    rep = reports[target]
    assert {r.name: r.memory_base_bytes for r in rep.layers} == HAND
    assert rep.totals.memory_base_bytes == 64.0
    assert rep.metrics.footprint_bytes == 64.0
    # NeuroBench's own footprint: the torch module's float32 tensors, no state: 24 + 12 weights
    # (scales folded into them) + 4 biases + 2 x 3 neuron scalars = 46 values x 4 B
    assert rep.metrics.footprint_neurobench_bytes == 184.0
    for row in rep.layers:                                     # overheads add up to the target's figure
        assert row.memory_base_bytes + sum(row.memory_overhead_bytes.values()) == pytest.approx(row.memory_bytes)
    assert sum(r.memory_bytes for r in rep.layers) == pytest.approx(rep.totals.memory_bytes)
    assert (rep.totals.memory_base_bytes + sum(rep.totals.memory_overhead_bytes.values())
            == pytest.approx(rep.totals.memory_bytes))


def test_digital_has_no_overhead(reports):
    rep = reports["digital"]
    assert rep.totals.memory_overhead_bytes == {} and rep.totals.memory_bytes == 64.0


def test_imc_on_target_memory_by_hand(reports):
    rep = reports["imc"]
    rows = {r.name: r for r in rep.layers}
    cells_per_array = 128 * 128
    # 4-bit differential weights at 1 bit per cell: 2 polarities x 3 magnitude slices = 6 columns per output
    cells1, cells2 = 6 * (4 * 6), 4 * (3 * 6)
    # the crossbar stores the codes in cells (used + the rest of the one array each layer takes);
    # the bias stays digital
    assert rows["fc1"].memory_bytes == pytest.approx(4 * 8 / 8 + cells1 / 8 + (cells_per_array - cells1) / 8)
    assert rows["fc2"].memory_bytes == pytest.approx(cells_per_array / 8)
    assert rows["fc1"].memory_overhead_bytes["unused_cells"] == (cells_per_array - cells1) / 8
    assert rows["fc2"].memory_overhead_bytes["unused_cells"] == (cells_per_array - cells2) / 8
    assert rows["lif1"].memory_bytes == HAND["lif1"] and rows["lif1"].memory_overhead_bytes == {}


def test_loihi_on_target_memory_by_hand(reports):
    rep = reports["loihi"]
    rows = {r.name: r for r in rep.layers}
    # all weights are nonzero: 24 and 12 synapses at 8 bits; u and v are 24-bit registers per neuron
    assert rows["fc1"].memory_bytes + rows["lif1"].memory_bytes == pytest.approx(
        4 * 8 / 8 + 24 + 3 + 4 * 2 * 24 / 8)
    assert rows["fc2"].memory_bytes == pytest.approx(12)
    assert rows["lif2"].memory_bytes == pytest.approx(3 + 3 * 2 * 24 / 8)
    assert rows["lif2"].memory_overhead_bytes == {"state_registers": 3 * 2 * 24 / 8 - 12}


def test_memory_rendered_with_its_definition(reports):
    md = markdown(reports["loihi"])
    section = md.split("## Memory\n", 1)[1].split("\n## ", 1)[0]
    assert "1 KB = 1024 B" in section and "neuron state" in section
    # dense weights without zeros: Loihi's synapse format adds nothing, so it gets no column
    assert "| layer | model | requantization | state registers | on loihi |" in section
    assert "| total | 64 B | +2 B | +22 B | 88 B |" in section
    assert "1 KB = 1024 B" in text_table(reports["imc"], width=400)


def test_latency_path_matches_each_cost_model(reports):
    t = 4
    dig = reports["digital"]
    assert not dig.latency.pipelined
    assert dig.totals.latency_s == pytest.approx(sum(r.latency_s for r in dig.layers))
    assert dig.latency.critical_layer == max(dig.layers, key=lambda r: r.latency_s).name

    imc = reports["imc"]
    # hwmodels/imc/cost.py: a layer takes T steps; layers pipelined over timesteps, so the total
    # is one step of every synaptic layer + (T - 1) x the slowest step
    steps = {r.name: r.latency_s / t for r in imc.layers if r.kind in ir.SYNAPSE_KINDS}
    slowest = max(steps, key=steps.get)
    assert imc.latency.pipelined and imc.latency.critical_layer == slowest
    assert imc.totals.latency_s == pytest.approx(sum(steps.values()) + (t - 1) * steps[slowest])
    assert imc.latency.layer_sum_s == pytest.approx(t * sum(steps.values()))
    assert "pipelined" in imc.latency.note

    lo = reports["loihi"]
    assert lo.latency.pipelined and lo.latency.critical_layer in ("lif1", "lif2")
    assert lo.latency.total_s == pytest.approx(lo.totals.latency_s)
    assert lo.latency.layer_sum_s == pytest.approx(sum(r.latency_s for r in lo.layers))
    assert "Critical layer" in markdown(imc)
