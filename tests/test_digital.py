import numpy as np
import pytest
import torch

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels import get_target
from hwmodels.spec import load_spec


def tiny_graph(bits=None):
    g = ir.Graph(input_shape=(2,), timesteps=2, encoding="rate", nodes=[
        ir.Linear("fc", ["input"], weight=np.array([[1.5, 0.0], [0.0, 1.5]], np.float32)),
        ir.LIF("n", ["fc"], beta=1.0, threshold=1.0)])
    if bits:
        g["fc"].precision = {"weight": bits}
    return g


def test_cost_matches_hand_computation_from_the_spec():
    tgt = get_target("digital")
    g = tgt.map(tiny_graph(bits=8))
    x = torch.tensor([[1.0, 0.0]])                       # rate-coded: input 1 always spikes
    act = tgt.simulate(g, x, generator=torch.Generator().manual_seed(0))
    cost = tgt.cost(g, act)
    s = load_spec("digital")
    add8 = s.constants["e_add_int8_pj"].value
    mult32, add32 = s.constants["e_mult_fp32_pj"].value, s.constants["e_add_fp32_pj"].value
    sram = s.constants["e_sram_read_pj_per_bit"].value
    fc, n = cost.layers
    # one input spike per step x 2 outputs x 2 steps = 4 ACs, each an 8-bit add + 8-bit weight read
    assert fc.energy_j["synaptic_ops"] == pytest.approx(4 * add8 * 1e-12)
    assert fc.energy_j["weight_reads"] == pytest.approx(4 * 8 * sram * 1e-12)
    # 2 neurons x 2 steps updates at fp32: multiply + 2 adds, and 2 x 32-bit state accesses
    assert n.energy_j["neuron_updates"] == pytest.approx(4 * (mult32 + 2 * add32) * 1e-12)
    assert n.energy_j["state_access"] == pytest.approx(4 * 64 * sram * 1e-12)
    # latency: ceil(4 / 64) cycles per layer at the clock
    clock = s.constants["clock_hz"].value
    assert cost.latency_s == pytest.approx(2 / clock)
    assert fc.memory_bytes == 4 * 8 / 8
    used = tgt.describe()["spec"]
    assert "e_add_int8_pj" in used and used["e_add_int8_pj"]["source"].startswith("Horowitz")


def test_spec_without_a_constant_fails_clearly(tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: digital\nconstants:\n  clock_hz: {value: 1.0e9, unit: Hz, source: x}\n")
    from hwmodels.digital import DigitalTarget

    tgt = DigitalTarget(spec=load_spec(spec))
    g = tgt.map(tiny_graph())
    act = tgt.simulate(g, torch.ones(1, 2))
    with pytest.raises(TargetError, match="missing constant 'e_"):
        tgt.cost(g, act)


def test_constant_without_source_is_rejected(tmp_path):
    spec = tmp_path / "nosource.yaml"
    spec.write_text("constants:\n  clock_hz: {value: 1.0e9, unit: Hz}\n")
    with pytest.raises(TargetError, match="needs a value and a source"):
        load_spec(spec)


def test_config_overrides_constants_and_records_origin(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("constants:\n  pe_count: 1\n")
    tgt = get_target("digital", str(cfg))
    g = tgt.map(tiny_graph())
    cost = tgt.cost(g, tgt.simulate(g, torch.ones(1, 2)))
    assert tgt.describe()["spec"]["pe_count"]["source"] == f"override from {cfg}"
    assert cost.latency_s > get_target("digital").cost(g, tgt.simulate(g, torch.ones(1, 2))).latency_s


def test_unknown_target_is_one_line():
    with pytest.raises(TargetError, match="unknown target 'tpu'"):
        get_target("tpu")
