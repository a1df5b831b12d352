"""Health warnings in reports: accuracy collapse with the remedy that fits, silent and saturated
layers, activity mismatch between compared targets; schema round trip and rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.core import ir
from deploy.core.metrics import Activity, LayerActivity
from deploy.pipeline import compile as run_compile
from deploy.report import health
from deploy.report.render import html, markdown, text_table
from deploy.report.schema import HealthWarning, Report

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "models" / "digits_snn.pt")


def two_layer(threshold1: float, threshold2: float = 1.0) -> ir.Graph:
    """Positive weights and biases on inputs in [0, 1): every current is positive."""
    nodes = [ir.Linear("fc1", ["input"], weight=np.full((6, 4), 0.5, np.float32), bias=np.full(6, 0.1, np.float32)),
             ir.LIF("lif1", ["fc1"], beta=0.9, threshold=threshold1),
             ir.Linear("fc2", ["lif1"], weight=np.full((3, 6), 0.2, np.float32)),
             ir.LIF("lif2", ["fc2"], beta=0.9, threshold=threshold2)]
    return ir.Graph((4,), nodes, timesteps=4, encoding="direct", name="toy").validate()


def toy_data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def codes(report: Report) -> list[tuple[str, str | None]]:
    return [(w.code, w.layer) for w in report.warnings]


@pytest.fixture(scope="module")
def imc_vs_digital() -> Report:
    torch.set_num_threads(1)
    return run_compile(DIGITS, target="imc", samples=32, compare="digital")


def test_collapse_on_imc_names_finetune(imc_vs_digital):
    rep = imc_vs_digital
    drop = rep.accuracy.reference - rep.accuracy.deployed
    assert drop > 0.05                                   # the naive mapping loses the network
    collapse = [w for w in rep.warnings if w.code == "accuracy-collapse"]
    assert len(collapse) == 1 and collapse[0].layer is None
    assert f"deploy finetune {DIGITS} --target imc" in collapse[0].message
    assert f"{100 * drop:.1f} points" in collapse[0].message
    # the compared digital run is the float network: no collapse there, but 2x more spikes
    assert rep.comparison.accuracy_deployed == rep.accuracy.reference
    ratio = rep.comparison.totals.spikes / rep.totals.spikes
    assert ratio > 2 and ("activity-mismatch", None) in codes(rep)
    # silent layers: exactly the spiking layers without a spike on imc
    silent = {r.name for r in rep.layers if r.kind == "lif" and r.spike_rate == 0}
    assert {layer for code, layer in codes(rep) if code == "silent-layer"} == silent


def test_comparison_shows_both_targets(imc_vs_digital):
    rep = imc_vs_digital
    c = rep.comparison
    assert (c.this_target, c.target) == ("imc", "digital")
    assert c.this_accuracy_deployed == rep.accuracy.deployed and c.this_spikes == rep.totals.spikes
    assert c.spikes == c.totals.spikes and set(c.layer_spikes) == {"lif1", "lif3", "lif5", "lif8"}
    assert sum(c.layer_spikes.values()) == pytest.approx(c.spikes)
    text = " ".join(text_table(rep, width=200).split())
    assert f"imc: {100 * rep.accuracy.deployed:.1f}% deployed" in text
    assert f"digital: {100 * c.accuracy_deployed:.1f}% deployed" in text
    md = markdown(rep)
    comp = md.split("## Comparison with digital", 1)[1]
    assert "| accuracy (deployed) |" in comp and "| spikes |" in comp and "Spikes per layer" in comp
    assert "Caution" in comp


def test_huge_threshold_gives_silent_layers():
    # |v| <= T * (4 inputs * 0.5 + 0.1) = 8.4 < 1e6: lif1 never fires, so lif2 gets no input
    rep = run_compile(two_layer(1e6), target="digital", data=toy_data())
    assert [c for c in codes(rep) if c[0] == "silent-layer"] == [("silent-layer", "lif1"), ("silent-layer", "lif2")]
    assert "tie" in rep.warnings[-1].message and "digital" in rep.warnings[0].message


def test_tiny_threshold_gives_saturated_layer():
    # current >= 0.1 > 1e-6 every step and the subtract reset keeps v above threshold: lif1 fires at
    # every step; lif2 (threshold 100, v <= 4 * 6 * 0.2) stays silent
    rep = run_compile(two_layer(1e-6, 100.0), target="digital", data=toy_data())
    assert ("saturated-layer", "lif1") in codes(rep)
    assert ("saturated-layer", "lif2") not in codes(rep)
    assert "100.0% of its neuron-steps" in next(w.message for w in rep.warnings if w.layer == "lif1")


def test_healthy_network_has_no_warnings():
    rep = run_compile(DIGITS, target="digital", samples=64)
    assert rep.warnings == []
    assert "## Warnings" not in markdown(rep) and "⚠" not in text_table(rep)


def test_assumed_rate_reports_get_no_spike_warnings():
    rep = run_compile(two_layer(1e6), target="digital", data=None, rate=1.0)
    assert rep.warnings == []


def test_pure_function_mismatch_clipping_and_remedies():
    rep = run_compile(two_layer(2.0, 0.5), target="digital", data=toy_data(), compare="digital")
    assert health.check(rep) == rep.warnings == []
    changed = rep.model_copy(deep=True)
    changed.comparison.totals.spikes = 2.5 * rep.totals.spikes
    changed.comparison.layer_spikes["lif2"] = 0.0
    found = health.check(changed)
    assert [(w.code, w.layer) for w in found] == [("silent-layer", "lif2"), ("activity-mismatch", None)]
    assert found[0].message.startswith("digital:")
    # a clipping counter recorded by a simulator marks the layer as saturated
    act = Activity(4, 1, {"lif1": LayerActivity("lif1", "lif", extra={"clipped_values": 3.0})})
    clipped = health.check(rep, act)
    assert [(w.code, w.layer) for w in clipped] == [("saturated-layer", "lif1")] and "clips" in clipped[0].message
    # remedies by target: Loihi reset / readout, quantized precision
    graph = two_layer(2.0, 0.5)
    assert "reset zero" in health.remedy(rep, "loihi", graph)
    quant = rep.model_copy(deep=True)
    quant.model.precision = {"fc1": {"weight": 3}}
    assert "deploy quantize" in health.remedy(quant, "digital") and "weights 3 b" in health.remedy(quant, "digital")


def test_schema_round_trip_and_old_reports(imc_vs_digital, tmp_path):
    rep = imc_vs_digital
    assert Report.from_json(rep.to_json()) == rep
    assert all(isinstance(w, HealthWarning) for w in Report.from_json(rep.to_json()).warnings)
    doc = json.loads(rep.to_json())
    for key in ("warnings", "latency"):
        doc.pop(key)
    for key in ("memory_base_bytes", "memory_overhead_bytes"):
        doc["totals"].pop(key)
        for row in doc["layers"]:
            row.pop(key)
    for key in ("this_target", "this_accuracy_deployed", "this_spikes", "spikes", "layer_spikes"):
        doc["comparison"].pop(key)
    doc["metrics"].pop("footprint_neurobench_bytes")
    old = Report.from_json(json.dumps(doc))
    assert old.warnings == [] and old.latency is None
    assert "## Memory" not in markdown(old)             # no split to show; the rest renders
    old.save(tmp_path / "old", figures=False)


def test_warnings_first_in_markdown_and_html(imc_vs_digital):
    md = markdown(imc_vs_digital)
    assert md.index("## Warnings") < md.index("## Accuracy")
    assert "**accuracy-collapse**" in md and "**silent-layer** (lif8)" in md
    page = html(imc_vs_digital, figures={})
    assert page.index('class="warn"') < page.index(">Accuracy<")
