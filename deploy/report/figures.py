"""Report figures (matplotlib, drawn off-screen on the Agg canvas; no display needed).

Every function takes a :class:`~deploy.report.schema.Report` (rendered from the
JSON alone) and returns a :class:`matplotlib.figure.Figure`; save it with
``fig.savefig(path, dpi=...)`` or :func:`png_bytes`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deploy.report.units import spiking_layers, unit_scale

if TYPE_CHECKING:
    from deploy.report.schema import Report

#: decades a set of positive values must span before an axis turns logarithmic
LOG_DECADES = 2.0


def _figure(ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def axis_unit(values: Sequence[float], unit: str) -> tuple[float, str]:
    """(scale, label) for an axis: the prefix of the largest finite |value|, e.g. (1e-9, "nJ")."""
    return unit_scale(max((abs(v) for v in values if math.isfinite(v)), default=0.0), unit)


def _spans_decades(values: Sequence[float]) -> bool:
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return len(pos) > 1 and math.log10(max(pos) / min(pos)) >= LOG_DECADES


def _label_layers(ax, names: Sequence[str], rotate: bool = False) -> None:
    rotate = rotate or len(names) > 4
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                       rotation_mode="anchor")


def _stacked(ax, labels: Sequence[str], parts: dict[str, np.ndarray], scale: float) -> None:
    """Bars stacked by component on a linear axis (a log axis hides the small ones);
    ``parts[component][i]`` belongs to ``labels[i]``. Every component keeps its colour across
    reports (:func:`component_color`), and the legend gives each one's share of the total, so
    components too small to see in the bars are still listed."""
    parts = {c: v for c, v in parts.items() if np.any(v > 0)}
    total = float(sum(v.sum() for v in parts.values())) or 1.0
    bottom = np.zeros(len(labels))
    for comp, vals in sorted(parts.items(), key=lambda kv: -kv[1].sum()):
        share = 100 * float(vals.sum()) / total
        ax.bar(range(len(labels)), vals / scale, bottom=bottom, color=component_color(comp),
               label=f"{comp.replace('_', ' ')} ({share:.2g} %)" if share < 10 else
               f"{comp.replace('_', ' ')} ({share:.0f} %)")
        bottom = bottom + vals / scale
    ax.set_ylim(0, max(float(bottom.max(initial=0.0)) * 1.1, 1e-30))
    if parts:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def component_color(name: str) -> tuple[float, float, float, float]:
    """The colour of a cost component, the same in every report: its name's CRC-32 picks one of
    tab20's colours."""
    import zlib

    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return cmap(zlib.crc32(name.encode("utf-8")) % cmap.N)


def _scale_axis(ax, values: Sequence[float]) -> None:
    """Logarithmic y axis with some headroom when the positive values span decades."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if _spans_decades(pos):
        ax.set_yscale("log")
        ax.set_ylim(min(pos) / 2, max(pos) * 2)
    elif pos:
        ax.set_ylim(0, max(pos) * 1.1)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def layer_energy_latency(report: Report) -> Figure:
    """Per-layer energy stacked by component (top) and per-layer latency (bottom)."""
    rows = report.layers
    names = [r.name for r in rows]
    shares = [r.energy_breakdown_j or ({"total": r.energy_j} if r.energy_j else {}) for r in rows]
    comps = list(dict.fromkeys(c for share in shares for c in share))
    parts = {c: np.array([share.get(c, 0.0) for share in shares]) for c in comps}
    fig, (ax_e, ax_l) = _figure(1, nrows=2, width=max(6.0, 0.55 * len(rows) + 3.0), height=3.0)
    e_scale, e_unit = axis_unit([r.energy_j for r in rows], "J")
    _stacked(ax_e, names, parts, e_scale)
    ax_e.set_ylabel(f"energy / inference ({e_unit})")
    ax_e.set_title("energy per layer, by component")
    _label_layers(ax_e, names)

    lat = [r.latency_s for r in rows]
    l_scale, l_unit = axis_unit(lat, "s")
    ax_l.bar(range(len(rows)), [v / l_scale for v in lat], color=_palette(1)[0])
    _scale_axis(ax_l, [v / l_scale for v in lat])
    ax_l.set_ylabel(f"latency / inference ({l_unit})")
    ax_l.set_title("latency per layer")
    _label_layers(ax_l, names)
    fig.suptitle(f"{report.model.name} on {report.target.name}")
    return fig


def spike_rates(report: Report) -> Figure:
    """Spike rate (spikes per neuron per timestep) of each spiking layer."""
    rows = spiking_layers(report)
    fig, (ax,) = _figure(1, width=max(5.0, 0.6 * len(rows) + 2))
    ax.bar(range(len(rows)), [r.spike_rate for r in rows], color=_palette(2)[1])
    for i, r in enumerate(rows):
        ax.annotate(f"{r.spike_rate:.3g}", (i, r.spike_rate), ha="center", va="bottom", fontsize=8)
    _label_layers(ax, [r.name for r in rows])
    ax.set_ylabel("spike rate (spikes / neuron / step)")
    ax.set_ylim(0, max([r.spike_rate for r in rows], default=0.0) * 1.15 or 1.0)
    ax.set_title(f"spike rates, {report.model.name} (T={report.model.timesteps})")
    return fig


def comparison_breakdown(report: Report) -> Figure | None:
    """Energy and latency of this target vs ``report.comparison``, stacked by component."""
    comp = report.comparison
    if comp is None:
        return None
    labels = [report.target.name, comp.target]
    fig, (ax_e, ax_l) = _figure(2, width=4.5)
    for ax, key, unit, what in ((ax_e, "energy_j", "J", "energy"), (ax_l, "latency_s", "s", "latency")):
        mine, other = getattr(report.breakdown, key), getattr(comp.breakdown, key)
        names = list(dict.fromkeys([*mine, *other]))
        parts = {c: np.array([mine.get(c, 0.0), other.get(c, 0.0)]) for c in names}
        totals = [getattr(report.totals, key), getattr(comp.totals, key)]
        scale, ulabel = axis_unit(totals, unit)
        _stacked(ax, labels, parts, scale)
        ax.set_xticks(range(2))
        ax.set_xticklabels(labels)
        ax.set_ylabel(f"{what} per inference ({ulabel})")
        ax.set_title(f"{what} by component")
    ratio = {k: comp.ratios.get(k, float("nan")) for k in ("energy", "latency")}
    fig.suptitle(f"{comp.target} ÷ {report.target.name}: energy {ratio['energy']:.3g}×, "
                 f"latency {ratio['latency']:.3g}×")
    return fig


def report_labels(reports: Sequence[Report]) -> list[str]:
    """Short unique labels 'model@target' (numbered when two reports would share one)."""
    base = [f"{r.model.name}@{r.target.name}" for r in reports]
    return [f"{b} #{i + 1}" if base.count(b) > 1 else b for i, b in enumerate(base)]


def compare_reports(reports: Sequence[Report]) -> Figure:
    """Totals of several reports side by side: energy, latency, memory and accuracy."""
    labels = report_labels(reports)
    fig, axes = _figure(4, width=max(3.2, 0.9 * len(reports) + 1.2))
    colors = _palette(len(reports))
    x = range(len(reports))
    for ax, key, unit, what in ((axes[0], "energy_j", "J", "energy"), (axes[1], "latency_s", "s", "latency"),
                                (axes[2], "memory_bytes", "B", "memory")):
        vals = [getattr(r.totals, key) for r in reports]
        scale, ulabel = axis_unit(vals, unit)
        ax.bar(x, [v / scale for v in vals], color=colors)
        _scale_axis(ax, [v / scale for v in vals])
        ax.set_ylabel(f"{what}{' per inference' if unit != 'B' else ''} ({ulabel})")
        ax.set_title(what)
    acc = [r.accuracy.deployed * 100 if r.accuracy else float("nan") for r in reports]
    axes[3].bar(x, [0 if math.isnan(a) else a for a in acc], color=colors)
    for i, a in enumerate(acc):
        axes[3].annotate("n/a" if math.isnan(a) else f"{a:.1f}", (i, 0 if math.isnan(a) else a),
                         ha="center", va="bottom", fontsize=8)
    axes[3].set_ylim(0, 105)
    axes[3].set_ylabel("deployed accuracy (%)")
    axes[3].set_title("accuracy")
    for ax in axes:
        _label_layers(ax, labels, rotate=True)
    return fig


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
