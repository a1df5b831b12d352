"""Report rendering: files, round trip, formatted tables, self-contained HTML, figures, comparisons."""

from __future__ import annotations

import base64
import re
from itertools import takewhile

import numpy as np
import pytest
from matplotlib.image import imread

from deploy.report import figures, render
from deploy.report.render import human, markdown, render_comparison, text_table, write_all
from deploy.report.schema import (
    Accuracy,
    Breakdown,
    Comparison,
    LayerRow,
    Metrics,
    ModelInfo,
    Report,
    TargetInfo,
    Totals,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# three layers; totals and breakdowns are the sums of the per-layer numbers
LAYERS = [
    LayerRow(name="fc1", kind="linear", shape=[16], energy_j=1.5e-9, latency_s=2.5e-7, memory_bytes=2048,
             synops=1500, spike_rate=0.0, energy_breakdown_j={"synaptic_ops": 1.0e-9, "weight_reads": 0.5e-9},
             resources={"op_type": "MAC"}),
    LayerRow(name="lif1", kind="lif", shape=[16], energy_j=2.5e-10, latency_s=3.2e-8, memory_bytes=64,
             synops=0, spike_rate=0.125, energy_breakdown_j={"neuron_updates": 2.0e-10, "state_access": 5.0e-11}),
    LayerRow(name="fc2", kind="linear", shape=[2, 5], energy_j=1.2e-11, latency_s=1.5e-6, memory_bytes=1536000,
             synops=2.0e6, spike_rate=0.0, energy_breakdown_j={"synaptic_ops": 3.0e-12, "weight_reads": 9.0e-12}),
]
# one row per layer, formatted by hand: 1536000 B = 1.4648 MB (1 MB = 1024**2 B)
EXPECTED_ROWS = [
    ["fc1", "linear", "16", "1.5 nJ", "250 ns", "2 KB", "1.5k", "-"],
    ["lif1", "lif", "16", "250 pJ", "32 ns", "64 B", "0", "0.125"],
    ["fc2", "linear", "2×5", "12 pJ", "1.5 µs", "1.46 MB", "2M", "-"],
]
E_TOTAL, L_TOTAL, M_TOTAL = 1.762e-9, 1.782e-6, 1538112.0


def make_report(comparison: bool = False, target: str = "imc", energy_scale: float = 1.0,
                latency_scale: float = 1.0, deployed: float = 0.9) -> Report:
    comp = None
    if comparison:
        comp = Comparison(
            target="imc-adc",
            totals=Totals(energy_j=2 * E_TOTAL, latency_s=0.5 * L_TOTAL, memory_bytes=4 * M_TOTAL,
                          synops=2001500, spikes=8),
            breakdown=Breakdown(energy_j={"array": 1.524e-9, "adc": 2.0e-9}, latency_s={"compute": 0.5 * L_TOTAL}),
            accuracy_deployed=0.88, ratios={"energy": 2.0, "latency": 0.5, "memory": 4.0})
    return Report(
        model=ModelInfo(name="tiny", source="tiny.pt", params=306, timesteps=4, input_shape=[1, 4, 4],
                        sha256="ab" * 32, precision={"fc1": {"weight": 4}}),
        target=TargetInfo(name=target, description="test target", spec_file="hwmodels/specs/imc.yaml",
                          options={"array": 64},
                          spec={"e_read_pj": {"value": 0.25, "unit": "pJ",
                                              "source": "Example et al. https://example.org/paper.pdf"}}),
        accuracy=Accuracy(dataset="digits (test split)", samples=32, reference=0.92, deployed=deployed),
        totals=Totals(energy_j=E_TOTAL * energy_scale, latency_s=L_TOTAL * latency_scale, memory_bytes=M_TOTAL,
                      synops=2001500, spikes=8, area_mm2=0.25),
        breakdown=Breakdown(energy_j={"synaptic_ops": 1.003e-9, "weight_reads": 5.09e-10, "neuron_updates": 2.0e-10,
                                      "state_access": 5.0e-11},
                            latency_s={"compute": L_TOTAL}),
        metrics=Metrics(params=306, footprint_bytes=M_TOTAL, activation_sparsity=0.875, synops_dense=2.0e6,
                        synops_effective_macs=1500, synops_effective_acs=2.0e6),
        layers=[row.model_copy() for row in LAYERS], comparison=comp,
        assumptions=["activity-driven: 32 samples", "layers in sequence"], run={"seed": 0, "samples": 32})


def md_table(text: str, heading: str) -> list[list[str]]:
    """Body rows of the first Markdown table after ``heading``."""
    lines = text.split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    table = list(takewhile(lambda ln: ln.startswith("|"), lines[start:]))
    return [[c.strip() for c in ln[1:-1].split(" | ")] for ln in table[2:]]


def test_human_units_hand_checked():
    assert human(1.5e-9, "J") == "1.5 nJ"
    assert human(2.5e-10, "J") == "250 pJ"
    assert human(999.96e-9, "J") == "1 µJ"          # rounds into the next prefix
    assert human(1023.9, "B") == "1 KB" and human(1000, "B") == "1,000 B"
    assert human(2.5e3, "s") == "2,500 s"
    assert human(3.2e-3, "s") == "3.2 ms"
    assert human(2048, "B") == "2 KB"
    assert human(1536000, "B") == "1.46 MB"
    assert human(0.5, "B") == "0.5 B"
    assert human(0, "J") == "0 J"
    assert human(1.5e6) == "1.5M"
    assert human(float("inf")) == "∞" and human(None) == "n/a"


def test_write_all_files_and_json_round_trip(tmp_path):
    for comp in (False, True):
        rep = make_report(comparison=comp)
        out = write_all(rep, tmp_path / f"out{comp}")
        names = {p.name for p in out.iterdir()}
        expected = {"report.json", "report.md", "report.html", "energy_latency.png", "spike_rates.png"}
        assert names == expected | ({"comparison.png"} if comp else set())
        assert Report.load(out / "report.json") == rep
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_save_without_figures(tmp_path):
    out = make_report().save(tmp_path / "r", figures=False)
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.html"}
    assert "data:image/png" not in (out / "report.html").read_text()
    assert ".png)" not in (out / "report.md").read_text()


def test_markdown_layer_table_and_sections():
    md = markdown(make_report(comparison=True))
    assert md_table(md, "## Layers") == EXPECTED_ROWS
    assert md_table(md, "## Energy breakdown")[0] == ["synaptic ops", "1 nJ", "56.9%"]   # 1.003 / 1.762
    comp = {row[0]: row[1:] for row in md_table(md, "## Comparison with imc-adc")}
    assert comp["energy"] == ["1.76 nJ", "3.52 nJ", "2×"]
    assert comp["latency"] == ["1.78 µs", "891 ns", "0.5×"]
    assert comp["memory"][2] == "4×"
    assert comp["accuracy (deployed)"][:2] == ["90.0%", "88.0%"]
    for text in ("## NeuroBench metrics", "activation sparsity**: 0.875", "e_read_pj", "Example et al.",
                 "layers in sequence", "fc1 (weight 4 b)", "-2.0 points"):
        assert text in md, text


def test_html_self_contained_with_embedded_pngs(tmp_path):
    out = write_all(make_report(comparison=True), tmp_path / "r")
    page = (out / "report.html").read_text()
    blobs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(blobs) == 3
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in blobs)
    assert base64.b64decode(blobs[0]) == (out / "energy_latency.png").read_bytes()
    # self-contained: the inline sort script and styles load nothing
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(|@import|<script[^>]*src|<link""", page)
    assert "https://example.org/paper.pdf" in page   # a source URL stays plain text
    assert page.count("<tr>") >= 3 + 1 + 4


def test_pngs_are_real_images(tmp_path):
    out = write_all(make_report(comparison=True), tmp_path / "r")
    for name in ("energy_latency.png", "spike_rates.png", "comparison.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        img = imread(out / name)
        assert img.shape[0] > 300 and img.shape[1] > 400, name
        assert img[..., :3].std() > 0.05, name      # not a blank canvas


def test_figure_contents():
    rep = make_report(comparison=True)
    fig = figures.layer_energy_latency(rep)
    ax_e, ax_l = fig.axes[:2]
    assert ax_e.get_yscale() == "linear" and "(nJ)" in ax_e.get_ylabel()   # stacked bars stay linear
    legend = [t.get_text() for t in ax_e.get_legend().get_texts()]
    assert legend and all(t.endswith("%)") for t in legend)   # every component listed with its share
    heights = np.zeros(3)
    for patch in ax_e.patches:
        heights[round(patch.get_x() + patch.get_width() / 2)] += patch.get_height()
    np.testing.assert_allclose(heights, [1.5, 0.25, 0.012])
    assert "(µs)" in ax_l.get_ylabel()
    assert [t.get_text() for t in figures.spike_rates(rep).axes[0].get_xticklabels()] == ["lif1"]
    assert "2×" in figures.comparison_breakdown(rep).get_suptitle()
    assert figures.comparison_breakdown(make_report()) is None
    assert len(figures.compare_reports([rep, make_report(target="loihi")]).axes) == 4


def test_text_table_plain_and_str():
    rep = make_report(comparison=True)
    text = text_table(rep)
    assert "\x1b[" not in text and str(rep) == text
    for row in EXPECTED_ROWS:
        line = next(ln for ln in text.splitlines() if f" {row[0]} " in ln)
        assert [c for c in row if c not in line] == []
    assert "90.0% deployed" in text and "energy 2×" in text


def test_render_comparison_ratios(tmp_path):
    a = make_report(target="imc")
    b = make_report(target="imc-adc", energy_scale=3.0, latency_scale=0.25, deployed=0.85)
    c = make_report(target="loihi", energy_scale=0.0)
    text = render_comparison([a, b, c], None)
    rows = {r[0]: r[1:] for r in md_table(text, "# Comparison of 3 reports")}
    assert rows["target"] == ["imc", "imc-adc", "loihi"]
    assert rows["energy"] == ["1.76 nJ", "5.29 nJ", "0 J"]
    assert rows["energy ÷ first"] == ["1×", "3×", "0×"]
    assert rows["latency ÷ first"] == ["1×", "0.25×", "1×"]
    assert rows["memory ÷ first"] == ["1×", "1×", "1×"]
    assert rows["accuracy − first"] == ["+0.0 points", "-5.0 points", "+0.0 points"]
    assert "compare_reports.png" not in text

    text = render_comparison([a, b], tmp_path)
    assert "![totals side by side](compare_reports.png)" in text
    png = tmp_path / "compare_reports.png"
    assert png.read_bytes().startswith(PNG_MAGIC) and imread(png).shape[1] > 400


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(report):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(figures, "spike_rates", boom)
    with pytest.raises(RuntimeError, match="figure failed"):
        write_all(make_report(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    # an earlier report in the folder stays as it was
    monkeypatch.undo()
    first = make_report()
    write_all(first, tmp_path / "old", figures=False)
    monkeypatch.setattr(render, "html", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_all(make_report(target="loihi"), tmp_path / "old", figures=False)
    assert Report.load(tmp_path / "old" / "report.json") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_bad_input_is_a_deploy_error():
    from deploy.core.errors import DeployError

    with pytest.raises(DeployError):
        render_comparison([], None)
