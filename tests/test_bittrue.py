"""One number per question: the accuracy the precision search reports for its chosen configuration is
the accuracy ``deploy.compile(<saved model.pt>, target="digital")`` reports, because the digital target
simulates a quantized checkpoint with quant's own fixed-point network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy
from deploy.core import data, ir
from deploy.io import native
from hwmodels import get_target
from hwmodels.base import simulate_float
from quant import search
from quant.neurons import NeuronFormat, formats_of
from quant.ptq import QConfig, finish, quantize_all_weights

torch.set_num_threads(1)
DIGITS = Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn.pt"
N = 96


@pytest.fixture(scope="module")
def digits():
    return native.load(DIGITS), data.load("digits")


def _search_then_compile(tmp_path, graph, split, **space):
    res = search(graph, split, samples=N, seed=0, **{"max_acc_drop": 3.0, **space})
    res.save(tmp_path / "q")
    saved = native.load(tmp_path / "q" / "model.pt")
    assert saved.meta["quant"] == res.graph.meta["quant"]           # the formats survive save/load
    assert formats_of(saved) == formats_of(res.graph) and formats_of(saved)
    report = deploy.compile(tmp_path / "q" / "model.pt", target="digital", data="digits", samples=N)
    return res, report


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_ptq_search_accuracy_is_compile_accuracy(tmp_path, digits, rounding):
    g, split = digits
    res, report = _search_then_compile(tmp_path, g, split, weight_bits=[3, 4], neuron_bits=[4, 5, 6],
                                       rounding=[rounding], schemes=["ptq"])
    assert report.accuracy.samples == res.samples == N
    assert report.accuracy.deployed == res.chosen.accuracy
    assert any("bit-true fixed point" in a for a in report.assumptions)
    if rounding == "stochastic":
        return
    # searching on the digital target evaluates the same network, and costs it as compile does
    res_t = search(g, split, samples=N, target=get_target("digital"), objective="memory", weight_bits=[3, 4],
                   neuron_bits=[4, 5, 6], rounding=[rounding], schemes=["ptq"])
    assert res_t.chosen.config.key() == res.chosen.config.key() and res_t.chosen.accuracy == res.chosen.accuracy
    assert report.totals.energy_j == pytest.approx(res_t.chosen.energy_j, rel=1e-9)


def test_batch_size_does_not_change_stochastic_results(tmp_path, digits):
    g, split = digits
    res = search(g, split, samples=N, weight_bits=[3], neuron_bits=[5], rounding=["stochastic"], schemes=["ptq"])
    res.save(tmp_path / "q")
    a = [deploy.compile(tmp_path / "q" / "model.pt", target="digital", samples=N, batch_size=b).accuracy.deployed
         for b in (32, 96)]
    assert a == [res.chosen.accuracy] * 2


def test_qat_search_accuracy_is_compile_accuracy(tmp_path, digits):
    g, split = digits
    small = data.Split(split.name, split.x_train[:256], split.y_train[:256], split.x_test, split.y_test)
    res, report = _search_then_compile(tmp_path, g, small, weight_bits=[3], neuron_bits=[5], rounding=["nearest"],
                                       schemes=["qat"], qat_epochs=1)
    assert res.chosen.config.scheme == "qat" and "qat" in res.graph.meta["quant"]
    assert report.accuracy.deployed == res.chosen.accuracy


def test_two_bit_neurons_never_fire(tmp_path, digits):
    """A 2-bit register holds [-2, 1] and the threshold code is at least 1, so ``v > thr`` never
    holds: no spike anywhere, all-zero logits, every prediction class 0. The float run of the same
    graph (realized thresholds, float membranes) does fire in its hidden layers."""
    g, split = digits
    res, report = _search_then_compile(tmp_path, g, split, weight_bits=[4], neuron_bits=[2], rounding=["nearest"],
                                       schemes=["ptq"], max_acc_drop=100)
    y = split.y_test[:N]
    assert report.totals.spikes == 0
    assert report.accuracy.deployed == res.chosen.accuracy == pytest.approx(float((y == 0).float().mean()))
    x = data.fit_to_model(split.x_test[:N], g.input_shape, g.encoding)
    assert simulate_float(res.graph, x).total("spikes") > 100


def test_hand_computed_fixed_point_neuron(tmp_path):
    """One IF neuron (threshold 1.0), input 0.3 for 8 steps. Float: 0.3, 0.6, 0.9, 1.2 fires, 0.2, 0.5,
    0.8, 1.1 fires: 2 spikes. 4-bit register, LSB 1/4: input code round(1.2) = 1, threshold code 4;
    v = 1, 2, 3, 4, 5 fires (5 > 4) -> 1, 2, 3, 4: 1 spike."""
    g = ir.Graph((1,), [ir.Linear("fc", ["input"], weight=np.ones((1, 1), np.float32)),
                        ir.LIF("lif", ["fc"], beta=1.0, threshold=1.0)], timesteps=8).validate()
    q = finish(quantize_all_weights(g, QConfig(4, 4)), QConfig(4, 4), {"lif": NeuronFormat(4, 0.25, 4)})
    native.save(q, tmp_path / "m.pt")
    x, y = torch.full((3, 1), 0.3), torch.zeros(3, dtype=torch.long)
    report = deploy.compile(tmp_path / "m.pt", target="digital", data=(x, y))
    assert report.totals.spikes == 1.0
    assert simulate_float(q, x).total("spikes") == 2.0
    assert report.totals.spikes != simulate_float(q, x).total("spikes")


def test_event_data_defaults_match_compile(tmp_path):
    """``--data events`` without ``--samples``: the search and compile both draw the 64 synthetic
    test samples of seed 0 and report the same accuracy for the written model."""
    from deploy.cli import main

    rng = np.random.default_rng(0)
    g = ir.Graph((2, 8, 8), [
        ir.Conv2d("conv", ["input"], weight=(rng.normal(size=(4, 2, 3, 3)) * 0.5).astype(np.float32), padding=1),
        ir.LIF("lif1", ["conv"], beta=0.9), ir.Flatten("flat", ["lif1"]),
        ir.Linear("fc", ["flat"], weight=(rng.normal(size=(4, 256)) * 0.2).astype(np.float32)),
        ir.LIF("lif2", ["fc"], beta=0.9)], timesteps=4, encoding="events").validate()
    native.save(g, tmp_path / "ev.pt")
    assert main(["quantize", str(tmp_path / "ev.pt"), "--data", "events", "--scheme", "ptq", "--weight-bits", "4",
                 "--neuron-bits", "8", "--rounding", "nearest", "--max-acc-drop", "100", "-o", str(tmp_path / "q")]) == 0
    doc = json.loads((tmp_path / "q" / "search.json").read_text())
    report = deploy.compile(tmp_path / "q" / "model.pt", target="digital", data="events")
    assert doc["samples"] == report.accuracy.samples == 64
    assert report.accuracy.deployed == doc["chosen"]["accuracy"]
