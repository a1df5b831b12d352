"""The memory-vs-accuracy Pareto front of a precision search, and its figure (from search.json alone)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.io.atomic import atomic_write

MARKERS = {"nearest": "o", "stochastic": "^", "truncation": "s"}
COLORS = {"nearest": "tab:blue", "stochastic": "tab:green", "truncation": "tab:red"}


def pareto_front(memory: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (less or equal memory and higher or equal
    accuracy, one of them strictly), ordered by memory. Exact duplicates keep the first."""
    order = sorted(range(len(memory)), key=lambda i: (memory[i], -accuracy[i], i))
    front, best = [], float("-inf")
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def _constrained(p: dict[str, Any]) -> bool:
    return any(not r.startswith("max_acc_drop") for r in p.get("rejected_by", []))


def plot(doc: dict[str, Any], path: str | Path) -> Path:
    """Draw ``pareto.png``: every evaluated configuration (marker = rounding, hollow = QAT),
    the front as a highlighted staircase, the chosen point and the float32 reference. Points a
    constraint other than the accuracy tolerance rejected are grey crosses; points the target
    could not run (no accuracy) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    pts = [p for p in doc["evaluated"] if p["accuracy"] is not None]
    base = doc["baseline"]
    accs = [100 * p["accuracy"] for p in pts] + [100 * base["accuracy"]]
    top = max(accs)
    bottom = max(min(accs) - 2, top - 30)  # points below are drawn on the lower edge
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for rounding, marker in MARKERS.items():
        for scheme in ("ptq", "qat"):
            sel = [p for p in pts if p["rounding"] == rounding and p["scheme"] == scheme and not _constrained(p)]
            if not sel:
                continue
            color = COLORS[rounding]
            ys = [max(100 * p["accuracy"], bottom + 0.3) for p in sel]
            ax.scatter([p["memory_bytes"] / 1024 for p in sel], ys,
                       marker=marker, s=28, alpha=0.75, label=f"{rounding} ({scheme.upper()})",
                       facecolors=color if scheme == "ptq" else "none", edgecolors=color)
    rejected = [p for p in pts if _constrained(p)]
    if rejected:
        ax.scatter([p["memory_bytes"] / 1024 for p in rejected],
                   [max(100 * p["accuracy"], bottom + 0.3) for p in rejected], marker="x", s=28, color="gray",
                   label="rejected by a constraint")
    clipped = sum(100 * p["accuracy"] < bottom for p in pts)
    if clipped:
        ax.text(0.01, 0.02, f"{clipped} configuration(s) below {bottom:.0f}% drawn on the lower edge",
                transform=ax.transAxes, fontsize=7, color="dimgray")
    front = [doc["evaluated"][i] for i in doc["front"]]
    if front:
        xs = [p["memory_bytes"] / 1024 for p in front]
        ys = [100 * p["accuracy"] for p in front]
        ax.step(xs, ys, where="post", color="black", lw=1.6, zorder=3, label="Pareto front")
        ax.scatter(xs, ys, s=60, facecolors="none", edgecolors="black", lw=1.2, zorder=4)
    ax.scatter([base["memory_bytes"] / 1024], [100 * base["accuracy"]], marker="D", color="gray", s=50,
               zorder=4, label="float32")
    if doc.get("accuracy_floor") is not None:
        ax.axhline(100 * doc["accuracy_floor"], color="gray", ls="--", lw=1,
                   label=f"tolerance ({doc['constraints']['max_acc_drop_points']:g} pt)")
    if doc["constraints"].get("max_memory_bytes"):
        ax.axvline(doc["constraints"]["max_memory_bytes"] / 1024, color="gray", ls=":", lw=1, label="memory budget")
    ch = doc.get("chosen")
    if ch:
        ax.scatter([ch["memory_bytes"] / 1024], [100 * ch["accuracy"]], marker="*", s=240, color="gold",
                   edgecolors="black", zorder=5, label="chosen")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "1235" else ""))
    ax.set_xlabel("memory (KB, parameters + neuron state at their precision)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom, top + 1.5)
    ax.set_title(f"{doc['model']} on {doc['dataset']}: precision search ({len(doc['evaluated'])} configurations)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
