"""Exploration results: results.csv / results.parquet, pareto.json, pareto.png, report.html (with the
best point's own compile report under best/) and a terminal table.

Everything here is rendered from the stored trial rows alone (``OUT/trials/*.json``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from deploy.explore.space import OBJECTIVES, point_label
from deploy.io.atomic import atomic_write, write_text

#: the per-point columns of results.csv after the configuration columns
METRIC_COLUMNS = [field for field, _ in OBJECTIVES.values()]
#: the figure's panels: (x objective, y objective)
PANELS = (("energy", "accuracy"), ("latency", "energy"), ("memory", "accuracy"))
UNITS = {"energy": "J", "latency": "s", "memory": "B", "area": "mm²", "cores": "", "accuracy": ""}


def table_rows(rows: list[dict[str, Any]], on_front: set[str]) -> list[dict[str, Any]]:
    """One flat dict per trial: key, label, target, options (JSON), precision, objectives, pareto flag."""
    out = []
    for row in rows:
        p, q = row["point"], row["point"].get("quant") or {}
        out.append({"key": row["key"], "label": point_label(p), "target": p["target"],
                    "options": json.dumps(p["options"], sort_keys=True),
                    "weight_bits": q.get("weight_bits"), "neuron_bits": q.get("neuron_bits"),
                    "scheme": q.get("scheme"), "finetune_epochs": (p.get("finetune") or {}).get("epochs"),
                    **{c: row["metrics"].get(c) for c in METRIC_COLUMNS},
                    "seed": row["seed"], "duration_s": row.get("duration_s"), "pareto": row["key"] in on_front})
    return out


def write_tables(out: Path, flat: list[dict[str, Any]]) -> None:
    """OUT/results.csv and OUT/results.parquet (same columns)."""
    buf = io.StringIO()
    if flat:
        writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    write_text(out / "results.csv", buf.getvalue())
    import pandas as pd

    atomic_write(out / "results.parquet", lambda p: pd.DataFrame(flat).to_parquet(p, index=False))


def pareto_doc(rows: list[dict[str, Any]], front_rows: list[dict[str, Any]], directions: dict[str, str],
               wall_s: float | None, failed: list[str] | None = None) -> dict[str, Any]:
    """The content of pareto.json: objectives, counts, this run's failed trials (one line each)
    and the front's points with their objectives."""
    return {"schema": "neurodeploy.explore.pareto/1", "objectives": directions, "trials": len(rows),
            "wall_time_s": wall_s, "failed": list(failed or []),
            "front": [{"key": r["key"], "label": point_label(r["point"]), "point": r["point"], "seed": r["seed"],
                       "metrics": {o: r["metrics"][OBJECTIVES[o][0]] for o in directions},
                       "report": f"trials/{r['key']}.json"} for r in front_rows]}


def write_pareto(out: Path, doc: dict[str, Any]) -> None:
    write_text(out / "pareto.json", json.dumps(doc, indent=2) + "\n")


def figure(rows: list[dict[str, Any]], on_front: set[str]):
    """Accuracy vs energy, energy vs latency, memory vs accuracy; one colour per target, the
    front over the chosen objectives ringed in black and labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from deploy.report.figures import axis_unit

    fig = Figure(figsize=(5.2 * len(PANELS), 4.2), layout="tight")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PANELS), squeeze=False).ravel()
    targets = list(dict.fromkeys(r["point"]["target"] for r in rows))
    colours = {t: f"C{i}" for i, t in enumerate(targets)}
    for ax, (xo, yo) in zip(axes, PANELS, strict=True):
        xf, yf = OBJECTIVES[xo][0], OBJECTIVES[yo][0]
        pts = [r for r in rows if r["metrics"].get(xf) is not None and r["metrics"].get(yf) is not None]
        xs, xl = axis_unit([r["metrics"][xf] for r in pts], UNITS[xo])
        ys, yl = axis_unit([r["metrics"][yf] for r in pts], UNITS[yo])
        for t in targets:
            sel = [r for r in pts if r["point"]["target"] == t]
            ax.scatter([r["metrics"][xf] / xs for r in sel], [r["metrics"][yf] / ys for r in sel],
                       s=28, color=colours[t], label=t, alpha=0.8)
        best = [r for r in pts if r["key"] in on_front]
        ax.scatter([r["metrics"][xf] / xs for r in best], [r["metrics"][yf] / ys for r in best], s=90,
                   facecolors="none", edgecolors="black", linewidths=1.2, label="Pareto front")
        if ax is axes[0]:   # labels on the first panel only, without the options every point shares
            for r in best:
                ax.annotate(point_label(_varying(r["point"], rows)), (r["metrics"][xf] / xs, r["metrics"][yf] / ys),
                            fontsize=6, xytext=(4, 3), textcoords="offset points")
        vals = [r["metrics"][xf] for r in pts if r["metrics"][xf] > 0]
        if vals and max(vals) / min(vals) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(f"{xo} ({xl})" if xl else xo)
        ax.set_ylabel(f"{yo} ({yl})" if yl else yo)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    return fig


def _varying(point: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``point`` without the options that take one value over all rows of its target."""
    same = [r["point"]["options"] for r in rows if r["point"]["target"] == point["target"]]
    keep = {k: v for k, v in point["options"].items() if len({json.dumps(o.get(k)) for o in same}) > 1}
    return {**point, "options": keep}


def print_front(front_rows: list[dict[str, Any]], directions: dict[str, str], total: int, console=None) -> None:
    """The front as a Rich table, one row per point."""
    from rich.console import Console
    from rich.table import Table

    from deploy.report.render import human

    console = console or Console()
    goal = ", ".join(f"{o} {d}" for o, d in directions.items())
    table = Table(title=f"Pareto front: {len(front_rows)} of {total} points ({goal})")
    table.add_column("point")
    names = list(dict.fromkeys([*directions, "accuracy", "energy", "latency", "memory"]))
    for name in names:
        table.add_column(name, justify="right")
    for r in front_rows:
        cells = []
        for name in names:
            v = r["metrics"].get(OBJECTIVES[name][0])
            cells.append("n/a" if v is None else f"{v:.4f}" if name == "accuracy" else human(v, UNITS[name]))
        table.add_row(point_label(r["point"]), *cells)
    console.print(table)


def best_row(front_rows: list[dict[str, Any]], directions: dict[str, str]) -> dict[str, Any] | None:
    """The front point that is best on the first objective (ties: the first such point)."""
    if not front_rows:
        return None
    objective, direction = next(iter(directions.items()))
    field = OBJECTIVES[objective][0]
    sign = -1.0 if direction == "max" else 1.0
    scored = [r for r in front_rows if r["metrics"].get(field) is not None]
    return min(scored, key=lambda r: sign * r["metrics"][field]) if scored else front_rows[0]


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if name == "accuracy":
        return f"{100 * value:.2f} %"
    if name in UNITS:
        from deploy.report.render import human

        return human(value, UNITS[name])
    return str(value)


def _html_rows(rows: list[dict[str, Any]], names: list[str], on_front: set[str]) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["point", *names])
    body = []
    for r in rows:
        cls = ' class="front"' if r["key"] in on_front else ""
        cells = "".join(f"<td>{html.escape(_cell(n, r['metrics'].get(OBJECTIVES[n][0])))}</td>" for n in names)
        body.append(f"<tr{cls}><td>{html.escape(point_label(r['point']))}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def report_html(rows: list[dict[str, Any]], front_rows: list[dict[str, Any]], directions: dict[str, str],
                doc: dict[str, Any], png: bytes | None, best: dict[str, Any] | None) -> str:
    """One self-contained page: what was swept, the figure, the front, every point, the failures."""
    on_front = {r["key"] for r in front_rows}
    names = list(dict.fromkeys([*directions, "accuracy", "energy", "latency", "memory"]))
    goal = ", ".join(f"{o} ({'maximised' if d == 'max' else 'minimised'})" for o, d in directions.items())
    wall = doc.get("wall_time_s")
    parts = [f"<h1>Design-space exploration</h1><p>{len(rows)} points, {len(front_rows)} on the Pareto front "
             f"over {html.escape(goal)}" + (f"; this run took {wall:.0f} s" if wall else "") + ".</p>"]
    if best is not None:
        parts.append(f"<p>Best on {html.escape(next(iter(directions)))}: <b>{html.escape(point_label(best['point']))}"
                     f"</b> &mdash; its own compile report: <a href=\"best/report.html\">best/report.html</a>.</p>")
    if png:
        parts.append(f'<img alt="Pareto front" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    parts.append("<h2>Pareto front</h2>" + _html_rows(front_rows, names, set()))
    parts.append("<h2>Every point</h2><p>Front points are highlighted.</p>" + _html_rows(rows, names, on_front))
    if doc.get("failed"):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in doc["failed"])
        parts.append(f"<h2>Failed points</h2><ul>{items}</ul>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "white-space:nowrap;text-align:right}td:first-child,th:first-child{text-align:left}"
             "tr.front{background:#fff3c4}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Design-space exploration</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_all(out: Path, rows: list[dict[str, Any]], front_rows: list[dict[str, Any]],
              directions: dict[str, str], wall_s: float | None = None,
              failed: list[str] | None = None) -> dict[str, Any]:
    """Write results.csv, results.parquet, pareto.json, pareto.png, report.html and the best
    point's own compile report (best/) into ``out``; returns pareto.json's doc."""
    from deploy.report import render
    from deploy.report.schema import Report

    on_front = {r["key"] for r in front_rows}
    write_tables(out, table_rows(rows, on_front))
    doc = pareto_doc(rows, front_rows, directions, wall_s, failed)
    write_pareto(out, doc)
    png = None
    if rows:
        buf = io.BytesIO()
        figure(rows, on_front).savefig(buf, dpi=130, format="png")
        png = buf.getvalue()
        atomic_write(out / "pareto.png", lambda p: Path(p).write_bytes(png))
    best = best_row(front_rows, directions)
    if best is not None:
        render.write_all(Report.model_validate(best["report"]), out / "best")
    write_text(out / "report.html", report_html(rows, front_rows, directions, doc, png, best))
    return doc
