"""The precision search: pruning against brute force, the Pareto front, outputs and bad input."""

from __future__ import annotations

import importlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.cli import main
from deploy.core import data, ir
from deploy.core.errors import DataError
from deploy.io import native
from hwmodels import get_target
from quant import QuantError, evaluate, search
from quant.evaluate import Evaluation, memory
from quant.pareto import pareto_front
from quant.ptq import QConfig

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "models" / "digits_snn.pt"
search_mod = importlib.import_module("quant.search")   # the module (quant.search is the function)


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    mem = rng.integers(1, 30, 200).astype(float)
    acc = rng.random(200).round(2)
    front = set(pareto_front(mem, acc))
    for i in range(200):
        dominated = any(mem[j] <= mem[i] and acc[j] >= acc[i] and (mem[j] < mem[i] or acc[j] > acc[i])
                        for j in range(200))
        if dominated:
            assert i not in front
        else:  # not dominated: on the front unless an exact duplicate is
            assert i in front or any(mem[j] == mem[i] and acc[j] == acc[i] for j in front)


def synthetic_accuracy(c: QConfig) -> float:
    """Monotone in both bit widths; truncation costs a little, stochastic a bit less."""
    penalty = 0.04 * max(0, 6 - c.weight_bits) + 0.015 * max(0, 9 - c.neuron_bits)
    penalty += {"nearest": 0.0, "stochastic": 0.004, "truncation": 0.012}[c.rounding]
    return 0.95 - penalty


def test_pruned_search_finds_the_brute_force_optimum(monkeypatch):
    """With a known monotone accuracy surface the boundary walk must find the exact optimum."""
    rng = np.random.default_rng(1)
    g = ir.Graph((16,), [ir.Linear("fc1", ["input"], weight=rng.normal(size=(32, 16)).astype(np.float32)),
                         ir.LIF("lif1", ["fc1"]),
                         ir.Linear("fc2", ["lif1"], weight=rng.normal(size=(4, 32)).astype(np.float32)),
                         ir.LIF("lif2", ["fc2"])], timesteps=2).validate()
    split = data.Split("toy", torch.rand(8, 16), torch.zeros(8, dtype=torch.long),
                       torch.rand(8, 16), torch.zeros(8, dtype=torch.long))

    def fake_evaluate(graph, x, y, target=None, batch_size=256, seed=0):
        cfg = graph.meta.get("quant", {}).get("config")
        acc = 0.95 if cfg is None else synthetic_accuracy(QConfig.from_dict(cfg))
        return Evaluation(acc, memory(graph))

    monkeypatch.setattr(search_mod, "evaluate", fake_evaluate)
    ws, ns = list(range(2, 13)), list(range(4, 17))
    roundings = ["nearest", "stochastic", "truncation"]
    for drop in (0.5, 1.0, 3.0, 8.0):
        res = search(g, split, max_acc_drop=drop, weight_bits=ws, neuron_bits=ns, rounding=roundings,
                     schemes=["ptq"])
        probe = search_mod._Searcher(g, split.x_test, split.y_test, split, split.x_train, 0, None, "memory",
                                     None, 1, 1e-3, 0, False)
        feasible = [probe.memory(QConfig(w, n, r)) for w, n, r in itertools.product(ws, ns, roundings)
                    if synthetic_accuracy(QConfig(w, n, r)) >= 0.95 - drop / 100 - 1e-9]
        assert res.met and res.chosen.memory_bytes == min(feasible)
        assert len(res.evaluated) < len(ws) * len(ns) * len(roundings) / 4
        assert all(p.accuracy == synthetic_accuracy(p.config) for p in res.evaluated)


@pytest.fixture(scope="module")
def digits():
    return native.load(DIGITS), data.load("digits")


def test_digits_search_with_energy(digits):
    g, split = digits
    res = search(g, split, weight_bits=range(2, 7), neuron_bits=range(4, 9), rounding=["nearest", "truncation"],
                 schemes=["ptq"], target=get_target("digital"), objective="memory", samples=180)
    feas = [p for p in res.evaluated if p.feasible]
    assert res.met and res.chosen in feas
    assert res.chosen.memory_bytes == min(p.memory_bytes for p in feas)
    assert res.chosen.accuracy >= res.baseline["accuracy"] - 0.01 - 1e-9
    assert res.savings()["memory"] > 4                      # vs float32, parameters + state
    assert res.chosen.energy_j < res.baseline["energy_j"]
    # the chosen graph is what was evaluated
    assert evaluate(res.graph, split.x_test[:180], split.y_test[:180]).accuracy == res.chosen.accuracy
    # every evaluated point's front membership is consistent with dominance
    pts = res.evaluated
    for i in res.front:
        assert not any(q.memory_bytes < pts[i].memory_bytes and q.accuracy > pts[i].accuracy for q in pts)
    doc = json.loads(res.to_json())
    assert doc["evaluations"] == len(pts) < doc["space"]["size"] and doc["chosen"]["index"] in doc["front"]


def test_per_layer_refinement_saves_memory(digits):
    g, split = digits
    net = search(g, split, weight_bits=range(3, 6), neuron_bits=range(5, 8), rounding=["nearest"],
                 schemes=["ptq"], samples=180)
    layered = search(g, split, weight_bits=range(3, 6), neuron_bits=range(5, 8), rounding=["nearest"],
                     schemes=["ptq"], samples=180, per_layer=True, max_acc_drop=1.0)
    assert layered.chosen.memory_bytes <= net.chosen.memory_bytes
    assert any(p.phase == "per-layer" for p in layered.evaluated)
    if layered.chosen.config.layer_bits:
        node = layered.graph[next(iter(layered.chosen.config.layer_bits))]
        assert node.precision.get("weight", node.precision.get("membrane")) == \
            next(iter(layered.chosen.config.layer_bits.values()))


def test_unreachable_constraints_report_the_best_found(digits):
    g, split = digits
    res = search(g, split, max_acc_drop=0.0, weight_bits=[2], neuron_bits=[4], rounding=["truncation"],
                 schemes=["ptq"], samples=60)
    assert not res.met and "best found" in res.warnings[0] and res.chosen is res.evaluated[0]
    res = search(g, split, max_memory=100, weight_bits=[2, 3], neuron_bits=[4], schemes=["ptq"], samples=60)
    assert not res.met and "memory budget" in res.warnings[0]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weight_bits": []}, QuantError, "empty search space"),
    ({"weight_bits": [0, 4]}, QuantError, "must lie in 1..32"),
    ({"neuron_bits": [33]}, QuantError, "must lie in 1..32"),
    ({"rounding": []}, QuantError, "empty search space"),
    ({"rounding": ["up"]}, QuantError, "unknown rounding"),
    ({"schemes": ["ptq", "magic"]}, QuantError, "unknown scheme"),
    ({"max_acc_drop": -1}, QuantError, "tolerance"),
])
def test_bad_search_input(digits, kwargs, error, match):
    g, split = digits
    with pytest.raises(error, match=match):
        search(g, split, **kwargs)


def test_no_data_is_one_clear_error(digits):
    g, _ = digits
    with pytest.raises(DataError, match="no data"):
        search(g, None)


def test_cli_writes_outputs_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "q"
    args = ["quantize", str(DIGITS), "--scheme", "ptq", "--weight-bits", "3..5", "--neuron-bits", "5..7",
            "--rounding", "nearest", "--samples", "120", "--split-seed", "2", "--onnx", "-o", str(out)]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} == {"search.json", "model.pt", "pareto.png", "onnx"}
    doc = json.loads((out / "search.json").read_text())
    assert [e["path"] for e in doc["onnx"]] == [f"onnx/{n}.onnx" for n in ("conv2d0", "conv2d2", "conv2d4",
                                                                           "linear7")]
    assert all((out / e["path"]).is_file() and e["max_abs_err_graph"] < 1e-5 for e in doc["onnx"])
    q = native.load(out / "model.pt")
    assert doc["split_seed"] == 2 and q.meta["search"]["split_seed"] == 2
    assert q["conv2d0"].precision["weight"] == doc["chosen"]["weight_bits"]
    assert q.meta["quant"]["config"]["neuron_bits"] == doc["chosen"]["neuron_bits"]

    bad = tmp_path / "bad"
    for extra, msg in ((["--weight-bits", "0..4"], "must lie in 1..32, got 0"), (["--weight-bits", "5..3"], "empty"),
                       (["--data", "none"], "no data"), (["--rounding", "up"], "unknown mode")):
        capsys.readouterr()
        assert main(["quantize", str(DIGITS), "-o", str(bad), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and msg in err[0]
        assert not bad.exists()

    capsys.readouterr()
    assert main(["quantize", str(DIGITS), "--scheme", "ptq", "--weight-bits", "2", "--neuron-bits", "4", "--rounding",
                 "truncation", "--max-acc-drop", "0", "--samples", "60", "-o", str(bad)]) == 0
    err = capsys.readouterr().err
    assert "warning: no configuration reaches the accuracy tolerance" in err and (bad / "model.pt").exists()
