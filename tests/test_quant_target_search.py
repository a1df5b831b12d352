"""Target-aware precision search: candidates evaluated on the target (accuracy from its own
simulation, energy and latency from its cost model), constraints that reject candidates and say so,
latency / EDP objectives, and candidates a target cannot map recorded as rejected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy
from deploy.cli import main
from deploy.core import data, ir
from deploy.core.net import SpikingNet
from deploy.io import native
from hwmodels import get_target
from hwmodels.imc import ImcTarget
from quant import QuantError, search

torch.set_num_threads(1)
ZERO = Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn_zero.pt"
N = 48


@pytest.fixture(scope="module")
def digits():
    return native.load(ZERO), data.load("digits")


def test_loihi_search_accuracy_is_compile_accuracy(tmp_path, digits):
    g, split = digits
    res = search(g, split, target=get_target("loihi"), objective="memory", weight_bits=[3, 4], neuron_bits=[6, 8],
                 rounding=["nearest"], schemes=["ptq"], samples=N, max_acc_drop=5)
    assert res.met and res.chosen.cores is not None and res.baseline["cores"] is not None
    res.save(tmp_path / "q")
    report = deploy.compile(tmp_path / "q" / "model.pt", target="loihi", samples=N)
    assert report.accuracy.samples == N
    assert report.accuracy.deployed == res.chosen.accuracy
    assert report.totals.energy_j == pytest.approx(res.chosen.energy_j, rel=1e-9)
    assert report.totals.latency_s == pytest.approx(res.chosen.latency_s, rel=1e-9)
    doc = json.loads((tmp_path / "q" / "search.json").read_text())
    assert doc["target"] == "loihi" and "loihi" in doc["accuracy_on"]
    assert doc["chosen"]["edp_js"] == pytest.approx(res.chosen.energy_j * res.chosen.latency_s)


def _wide_mlp() -> tuple[ir.Graph, data.Split]:
    """256 -> 1000 -> 10: the hidden layer's synaptic memory needs one Loihi core at 2-bit weights and
    two from 3 bits on (128 KB per core), plus one core for the output layer. Labels are the float
    model's own predictions."""
    rng = np.random.default_rng(0)
    g = ir.Graph((256,), [
        ir.Linear("fc1", ["input"], weight=(rng.normal(size=(1000, 256)) * 0.1).astype(np.float32)),
        ir.LIF("lif1", ["fc1"], reset="zero"),
        ir.Linear("fc2", ["lif1"], weight=(rng.normal(size=(10, 1000)) * 0.1).astype(np.float32)),
        ir.LIF("lif2", ["fc2"], reset="zero")], timesteps=4).validate()
    x = torch.rand(32, 256, generator=torch.Generator().manual_seed(0))
    y = SpikingNet(g).predict(x)
    return g, data.Split("random", x, y, x, y)


def test_max_cores_rejections_are_reported(tmp_path):
    g, split = _wide_mlp()
    res = search(g, split, target=get_target("loihi"), max_cores=2, weight_bits=[2, 3, 4], neuron_bits=[8],
                 rounding=["nearest"], schemes=["ptq"], max_acc_drop=100)
    res.save(tmp_path / "q")
    doc = json.loads((tmp_path / "q" / "search.json").read_text())
    assert doc["constraints"]["max_cores"] == 2
    pts = doc["evaluated"]
    assert {p["weight_bits"]: p["cores"] for p in pts} == {2: 2, 3: 3, 4: 3}
    for p in pts:
        assert (f"max_cores: {p['cores']} > 2" in p["rejected_by"]) == (p["cores"] > 2)
        assert p["feasible"] == (p["cores"] <= 2)
    assert res.met and doc["chosen"]["cores"] <= 2 and doc["chosen"]["weight_bits"] == 2
    assert all(pts[i]["cores"] <= 2 for i in doc["front"])


def test_cli_max_cores_reports_every_rejection(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", str(ZERO), "--target", "loihi", "--max-cores", "3", "--scheme", "ptq",
                 "--weight-bits", "3", "--neuron-bits", "6", "--rounding", "nearest", "--samples", "24", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: no configuration meets the constraints (max_cores: 1)" in captured.err
    assert "max_cores: 4 > 3" in captured.out                           # the table's rejected row
    doc = json.loads((out / "search.json").read_text())
    assert [p["rejected_by"] for p in doc["evaluated"]] == [["max_cores: 4 > 3"]] and not doc["met"]
    capsys.readouterr()
    assert main(["quantize", str(ZERO), "--max-cores", "2", "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_cores needs a target" in err[0] and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("objective", ["latency", "edp"])
def test_latency_and_edp_objectives_choose_by_their_value(digits, objective):
    g, split = digits
    res = search(g, split, target=get_target("loihi"), objective=objective, weight_bits=[3, 4], neuron_bits=[4, 6, 8],
                 rounding=["nearest"], schemes=["ptq"], samples=N, max_acc_drop=5)
    pts = res.to_dict()["evaluated"]
    value = (lambda p: p["latency_s"]) if objective == "latency" else (lambda p: p["energy_j"] * p["latency_s"])
    feasible = [p for p in pts if 100 * p["accuracy"] >= 100 * res.baseline["accuracy"] - 5 - 1e-7]
    assert feasible and res.met
    best = min(value(p) for p in feasible)
    assert value(res.chosen.to_dict()) == best
    assert res.to_dict()["chosen"]["label"] in {p["label"] for p in feasible if value(p) == best}


def test_unmappable_candidates_are_rejected_with_the_reason(tmp_path, digits):
    g, split = digits
    imc = ImcTarget(options={"weight_bits": 4})
    res = search(g, split, target=imc, objective="memory", weight_bits=[3, 6], neuron_bits=[8],
                 rounding=["nearest"], schemes=["ptq"], samples=24, max_acc_drop=100)
    by_bits = {p.config.weight_bits: p for p in res.evaluated}
    assert by_bits[6].accuracy is None and not by_bits[6].feasible
    assert by_bits[6].rejected_by == ["target: layer 'conv2d0': 6-bit weights do not fit the configured "
                                      "weight_bits = 4"]
    assert by_bits[3].accuracy is not None and res.chosen is by_bits[3]
    res.save(tmp_path / "q")                                            # search.json and the figure cope
    report = deploy.compile(tmp_path / "q" / "model.pt", target=imc, samples=24)
    assert report.accuracy.deployed == res.chosen.accuracy


def test_constraints_need_a_target_and_positive_values(digits):
    g, split = digits
    with pytest.raises(QuantError, match="max_latency needs a target"):
        search(g, split, max_latency=1e-3, samples=8)
    with pytest.raises(QuantError, match="max_cores must be a positive integer"):
        search(g, split, target=get_target("loihi"), max_cores=0, samples=8)
    with pytest.raises(QuantError, match="the edp objective needs a target"):
        search(g, split, objective="edp", samples=8)
    with pytest.raises(QuantError, match="does not report cores"):
        search(g, split, target=get_target("digital"), max_cores=4, samples=8, weight_bits=[4], neuron_bits=[8])
