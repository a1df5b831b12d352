"""The HTML report a new user opens: a summary card first, tables instead of Python reprs, a
relative spec path, side navigation, a sortable layer table, one self-contained file that a real
headless browser (Chromium, when installed) renders without console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy.report import figures
from deploy.report.render import fitted_layer_table, html, resource_rows, spec_path, text_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def imc_report():
    import deploy

    return deploy.compile("examples/models/digits_snn.pt", target="imc", compare="imc-adc", samples=32)


@pytest.fixture(scope="module")
def loihi_report():
    import deploy

    return deploy.compile("examples/models/digits_snn_zero.pt", target="loihi", samples=16)


def test_page_has_summary_navigation_and_no_python_reprs(imc_report, loihi_report):
    for rep in (imc_report, loihi_report):
        page = html(rep, figures={})
        body = page[page.index("<main>"):page.index("</main>")]
        assert body.index('id="summary"') < body.index("<h2"), "summary card first"
        for item in ("accuracy", "energy", "latency", "memory", "warnings"):
            assert f"<b>{item}</b>" in body
        assert not re.search(r"\{'|\[\{|': |=None|\bNone\b|\bTrue\b|\bFalse\b", body), re.findall(
            r".{40}(?:\{'|\[\{|': |=None|\bNone\b|\bTrue\b|\bFalse\b).{40}", body)[:3]
        assert "/work/" not in page and f">{spec_path(rep.target.spec_file)}<" in page
        assert spec_path(rep.target.spec_file).startswith("hwmodels/specs/")
        nav = re.findall(r'<a href="#([\w-]+)">', page[page.index("<nav>"):])
        assert {"summary", "layers", "energy-breakdown"} <= set(nav)
        for anchor in nav:
            assert f'id="{anchor}"' in page, anchor
        assert '<table class="sortable">' in page
    # the Loihi connections become rows named source -> target, as many as the report has
    rows = resource_rows(loihi_report)
    n_conn = sum(len(r.resources.get("connections", [])) for r in loihi_report.layers)
    assert sum(" → " in r[1] for r in rows) == n_conn > 0


def test_layer_table_sort_keys_are_the_report_values(imc_report):
    page = html(imc_report, figures={})
    table = page[page.index('<table class="sortable">'):]
    table = table[:table.index("</table>")]
    energies = [float(v) for v in re.findall(r"<td data-v=\"([^\"]+)\">", table)[0::5]]  # 5 numeric columns
    assert energies == [r.energy_j for r in imc_report.layers]


def test_component_colours_are_stable_and_bars_linear(imc_report):
    assert figures.component_color("adc") == figures.component_color("adc")
    fig = figures.comparison_breakdown(imc_report)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    names = {c.replace("_", " "): c for c in [*imc_report.breakdown.energy_j, *imc_report.comparison.breakdown.energy_j]}
    assert ax.containers
    for bars in ax.containers:
        comp = names[bars.get_label().split(" (")[0]]
        assert np.allclose(bars.patches[0].get_facecolor(), figures.component_color(comp)), comp


def test_terminal_table_fits_80_columns(imc_report):
    text = text_table(imc_report, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for row in imc_report.layers:  # shapes whole, never cut
        assert "×".join(map(str, row.shape)) in text
    from rich.console import Console

    narrow = fitted_layer_table(imc_report, Console(width=60))
    assert [c.header for c in narrow.columns][:2] == ["layer", "shape"]  # kind and synops left out


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_headless_browser_renders_without_console_errors(imc_report, tmp_path):
    def render(page: Path) -> tuple[Path, str]:
        shot = page.with_suffix(".png")
        proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                               "--v=0", "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()],
                              capture_output=True, text=True, timeout=120)
        return shot, proc.stderr

    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    _, log = render(broken)
    assert "Uncaught" in log  # the check below can fail

    page = tmp_path / "report.html"
    page.write_text(html(imc_report))
    shot, log = render(page)
    assert "Uncaught" not in log and "CONSOLE" not in log, log[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (1600, 1280) and img[..., :3].std() > 0.05
