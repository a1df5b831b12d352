"""Render a :class:`Report` (from its JSON alone) as Markdown, HTML, PNG figures and a Rich table.

``write_all`` writes ``report.json``, ``report.md``, ``report.html`` and the
figures into a folder atomically; ``render_comparison`` puts several reports
side by side (``deploy report a.json b.json``). All quantities go through
:func:`human` (SI prefixes for J, s, W; binary prefixes, 1 KB = 1024 B, for bytes).
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from deploy.core.errors import DeployError
from deploy.io.atomic import atomic_write, staged_dir
from deploy.report.units import human, spiking_layers

if TYPE_CHECKING:
    from deploy.report.schema import Report

def ratio(value: float | None) -> str:
    """A ratio as ``3.2×`` (``∞×`` when the reference is zero, ``n/a`` when undefined)."""
    return "n/a" if value is None or math.isnan(value) else f"{human(value)}×"


def _divide(a: float, b: float) -> float:
    if b == 0:
        return float("nan") if a == 0 else float("inf")
    return a / b


def _pct(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return "<0.1%" if 0 < x < 0.0005 else f"{100 * x:.1f}%"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _precision(prec: Mapping[str, Any]) -> str:
    """``{"fc1": {"weight": 4}}`` -> ``fc1 (weight 4 b)``; empty -> float32."""
    def one(v: Any) -> str:
        return ", ".join(f"{k} {b} b" for k, b in v.items()) if isinstance(v, Mapping) else str(v)
    return "; ".join(f"{name} ({one(v)})" for name, v in prec.items()) or "float32"


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape) or "scalar"


# -- a small document model rendered both to Markdown and to HTML ---------------------
@dataclass
class _Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, *payload: Any) -> None:
        self.blocks.append((kind, payload))


def _layer_rows(report: Report) -> list[list[str]]:
    spiking = {r.name for r in spiking_layers(report)}
    return [[r.name, r.kind, _shape(r.shape), human(r.energy_j, "J"), human(r.latency_s, "s"),
             human(r.memory_bytes, "B"), human(r.synops), f"{r.spike_rate:.3g}" if r.name in spiking else "-"]
            for r in report.layers]


LAYER_HEADERS = ["layer", "kind", "shape", "energy", "latency", "memory", "synops", "spike rate"]


def _breakdown_rows(values: Mapping[str, float], unit: str) -> list[list[str]]:
    total = sum(values.values())
    return [[k.replace("_", " "), human(v, unit), _pct(_divide(v, total)) if total else "n/a"]
            for k, v in sorted(values.items(), key=lambda kv: -kv[1])]


def spec_path(path: str | None) -> str:
    """A spec file as shown in reports: relative to the installation (``hwmodels/specs/imc.yaml``),
    or as given when it lies elsewhere."""
    if not path:
        return "n/a"
    p, root = Path(path), Path(__file__).resolve().parents[2]
    return str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else str(p)


def summary_items(report: Report) -> list[tuple[str, str]]:
    """The headline figures: accuracy float -> deployed, energy, latency and memory per inference."""
    tot, items = report.totals, []
    if report.accuracy:
        a = report.accuracy
        items.append(("accuracy", f"{_pct(a.reference)} float → {_pct(a.deployed)} deployed"))
    items += [("energy", human(tot.energy_j, "J")), ("latency", human(tot.latency_s, "s")),
              ("memory", human(tot.memory_bytes, "B"))]
    if report.comparison:
        c = report.comparison
        items.append((f"{c.target} ÷ {report.target.name}",
                      ", ".join(f"{k} {ratio(v)}" for k, v in c.ratios.items())))
    return items


def _plain(value: Any) -> str:
    """A resource value as text: numbers formatted, nothing Python-specific (no quotes, braces, None)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{str(k).replace('_', ' ')} {_plain(v)}" for k, v in value.items() if v is not None) or "-"
    if isinstance(value, (list, tuple)):
        return "; ".join(_plain(v) for v in value) or "-"
    return str(value)


def resource_rows(report: Report) -> list[list[str]]:
    """One row per layer and resource (each connection its own row, named source → target)."""
    rows = []
    for r in report.layers:
        for key, value in r.resources.items():
            many = isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value)
            for item in value if many else [value]:
                name = key.replace("_", " ")
                if isinstance(item, Mapping) and "from" in item and "to" in item:
                    name = f"{name}: {item['from']} → {item['to']}"
                    item = {k: v for k, v in item.items() if k not in ("from", "to")}
                rows.append([r.name, name, _plain(item)])
    return rows


def _document(report: Report, figures: Sequence[str]) -> _Doc:
    doc, m, t = _Doc(), report.model, report.target
    doc.add("h1", f"{m.name} on {t.name}")
    doc.add("summary", summary_items(report), [(w.code, w.layer) for w in report.warnings])
    doc.add("h2", "Model and target")
    doc.add("kv", [("model", f"{m.name} ({m.source})"), ("parameters", f"{m.params:,}"),
                   ("input", f"{_shape(m.input_shape)}, {m.encoding} encoding, T = {m.timesteps}"),
                   ("precision", _precision(m.precision)),
                   ("sha256", m.sha256[:16] + "…"), ("target", f"{t.name}: {t.description}".rstrip(": ")),
                   ("spec file", spec_path(t.spec_file)),
                   ("options", "; ".join(f"{k}: {_plain(v)}" for k, v in t.options.items()) or "defaults"),
                   ("mode", report.mode)])
    if report.warnings:
        doc.add("h2", "Warnings")
        doc.add("warn", [(w.code, w.layer, w.message) for w in report.warnings])
    if report.accuracy:
        a = report.accuracy
        doc.add("h2", "Accuracy")
        doc.add("kv", [("dataset", f"{a.dataset}, {a.samples} samples"), ("reference (float)", _pct(a.reference)),
                       ("deployed", _pct(a.deployed)),
                       ("change", "n/a" if a.reference is None else f"{100 * (a.deployed - a.reference):+.1f} points")]
                + ([("data file", f"{a.file} (sha256 {(a.sha256 or '')[:16]}…)")] if a.file else []))
    tot = report.totals
    doc.add("h2", "Totals (per inference)")
    doc.add("table", ["energy", "latency", "memory", "synops", "spikes", "area"],
            [[human(tot.energy_j, "J"), human(tot.latency_s, "s"), human(tot.memory_bytes, "B"),
              human(tot.synops), human(tot.spikes),
              "n/a" if tot.area_mm2 is None else f"{human(tot.area_mm2)} mm²"]], "r" * 6)
    mt = report.metrics
    doc.add("h2", "NeuroBench metrics")
    doc.add("kv", [("parameters", f"{mt.params:,}"), ("footprint", _footprint(mt))]
            + ([("footprint, NeuroBench's definition", _footprint_nb(mt))]
               if mt.footprint_neurobench_bytes is not None else [])
            + [("activation sparsity", f"{mt.activation_sparsity:.3f}"),
                   ("synaptic ops, dense", human(mt.synops_dense)),
                   ("synaptic ops, effective MACs", human(mt.synops_effective_macs)),
                   ("synaptic ops, effective ACs", human(mt.synops_effective_acs))])
    doc.add("h2", "Layers")
    keys = [[r.name, r.kind, math.prod(r.shape), r.energy_j, r.latency_s, r.memory_bytes, r.synops,
             r.spike_rate] for r in report.layers]
    doc.add("table", LAYER_HEADERS, _layer_rows(report), "lll" + "r" * 5, keys)
    res = resource_rows(report)
    if res:
        doc.add("h3", "Resources per layer")
        doc.add("table", ["layer", "resource", "value"], res, "lll")
    _memory_section(doc, report)
    doc.add("h2", "Energy breakdown")
    doc.add("table", ["component", "energy", "share"], _breakdown_rows(report.breakdown.energy_j, "J"))
    doc.add("h2", "Latency breakdown")
    doc.add("table", ["component", "latency", "share"], _breakdown_rows(report.breakdown.latency_s, "s"))
    if report.latency is not None:
        doc.add("p", latency_sentence(report))
    if report.comparison:
        _comparison_section(doc, report)
    if figures:
        doc.add("h2", "Figures")
        for name in figures:
            doc.add("img", name, name.removesuffix(".png").replace("_", " "))
    doc.add("h2", "Spec constants used")
    doc.add("table", ["constant", "value", "unit", "source"],
            [[k, _value(c.get("value")), str(c.get("unit", "")), str(c.get("source", ""))]
             for k, c in t.spec.items()], "lrll")
    doc.add("h2", "Assumptions")
    doc.add("list", list(report.assumptions) or ["none stated"])
    if report.run:
        doc.add("h2", "Run")
        doc.add("kv", [(k, _value(v)) for k, v in report.run.items() if v is not None])
    return doc


#: what each named memory overhead of a target stands for
MEMORY_OVERHEADS = {
    "requantization": "the target's copy of the weights at its own precision, minus the model's",
    "crossbar_cells": "crossbar cells holding the weight codes (polarities, bit-slices, bits per cell), "
                      "minus the weights and per-output scales they replace",
    "unused_cells": "cells of the allocated arrays that hold no weight",
    "synapse_format": "Loihi synaptic memory (nonzero synapses, convolutions unrolled over output "
                      "positions, pooling folded in) minus the dense weights",
    "state_registers": "Loihi's 24-bit u and v registers per neuron, minus the model's neuron state",
    "target": "the target's figure minus the model's (the target names no overheads)",
}
MEMORY_DEFINITION = ("memory = weights at their stored precision + neuron parameters + neuron state, "
                     "in bytes (1 KB = 1024 B)")


def _footprint(mt) -> str:
    return f"{human(mt.footprint_bytes, 'B')} ({MEMORY_DEFINITION})"


def _footprint_nb(mt) -> str:
    nb = mt.footprint_neurobench_bytes
    return (f"{human(nb, 'B')} (float32 parameters and buffers of the PyTorch module, no neuron state; "
            f"{'+' if nb >= mt.footprint_bytes else '-'}{human(abs(nb - mt.footprint_bytes), 'B')} vs the footprint above)")


def memory_columns(report: Report) -> list[str]:
    """Names of the target's memory overheads, in order of first appearance."""
    return list(dict.fromkeys(k for r in report.layers for k in r.memory_overhead_bytes))


def memory_sentence(report: Report, units: bool = True) -> str:
    """One sentence: the model's memory, the target's, and what makes the difference."""
    tot, name = report.totals, report.target.name
    if tot.memory_base_bytes is None:
        return f"{human(tot.memory_bytes, 'B')} on {name}" + (" (1 KB = 1024 B)" if units else "")
    over = tot.memory_overhead_bytes
    text = f"model {human(tot.memory_base_bytes, 'B')}"
    if over:
        text += "".join(f" {'+' if v >= 0 else '−'} {k.replace('_', ' ')} {human(abs(v), 'B')}"
                        for k, v in over.items())
        text += f" = {human(tot.memory_bytes, 'B')} on {name}"
    else:
        text += f", stored as is on {name}"
    return text + (" (1 KB = 1024 B)" if units else "")


def latency_sentence(report: Report) -> str:
    """How the total latency follows from the layer latencies, and which layer bounds it."""
    lat = report.latency
    head = f"Critical layer: {lat.critical_layer}; s" if lat.critical_layer else "S"
    return (f"{head}um of the layer latencies {human(lat.layer_sum_s, 's')} vs total "
            f"{human(lat.total_s, 's')}. {lat.note[:1].upper() + lat.note[1:]}.")


def _memory_section(doc: _Doc, report: Report) -> None:
    if not report.layers or any(r.memory_base_bytes is None for r in report.layers):
        return
    cols = memory_columns(report)
    doc.add("h2", "Memory")
    doc.add("p", f"Memory is defined once: {MEMORY_DEFINITION.removeprefix('memory = ')}. The model's figure "
                 "is the same on every target and in `deploy inspect` and `deploy quantize`; "
                 f"{report.target.name}'s own overheads are the named columns: "
                 f"{memory_sentence(report, units=False)}.")
    if cols:
        doc.add("list", [f"{k.replace('_', ' ')}: {MEMORY_OVERHEADS.get(k, 'named by the target')}" for k in cols])
    rows = [[r.name, human(r.memory_base_bytes, "B"),
             *(_signed_bytes(r.memory_overhead_bytes.get(k, 0.0)) for k in cols), human(r.memory_bytes, "B")]
            for r in report.layers]
    tot = report.totals
    rows.append(["total", human(tot.memory_base_bytes, "B"),
                 *(_signed_bytes(tot.memory_overhead_bytes.get(k, 0.0)) for k in cols),
                 human(tot.memory_bytes, "B")])
    doc.add("table", ["layer", "model", *(k.replace("_", " ") for k in cols), f"on {report.target.name}"],
            rows, "l" + "r" * (len(cols) + 2))


def _signed_bytes(v: float) -> str:
    if v == 0:
        return "-"
    return ("+" if v > 0 else "−") + human(abs(v), "B")


def _comparison_section(doc: _Doc, report: Report) -> None:
    c, me, other = report.comparison, report.target.name, report.comparison.target
    doc.add("h2", f"Comparison with {other}")
    doc.add("p", f"Ratios are {other} ÷ {me}: above 1 means {me} uses less.")
    rows = []
    for key, unit, what in (("energy_j", "J", "energy"), ("latency_s", "s", "latency"),
                            ("memory_bytes", "B", "memory"), ("synops", "", "synops"), ("spikes", "", "spikes")):
        mine, theirs = getattr(report.totals, key), getattr(c.totals, key)
        r = c.ratios.get(what, _divide(theirs, mine))
        rows.append([what, human(mine, unit), human(theirs, unit), ratio(r)])
    if report.totals.area_mm2 is not None or c.totals.area_mm2 is not None:
        a, b = report.totals.area_mm2, c.totals.area_mm2
        rows.append(["area", f"{human(a)} mm²", f"{human(b)} mm²",
                     ratio(c.ratios.get("area", _divide(b, a)) if a is not None and b is not None else None)])
    if report.accuracy is not None or c.accuracy_deployed is not None:
        rows.append(["accuracy (deployed)", _pct(report.accuracy.deployed if report.accuracy else None),
                     _pct(c.accuracy_deployed), ""])
    doc.add("table", ["", me, other, f"{other} ÷ {me}"], rows)
    caution = sorted({w.code for w in report.warnings if w.code in ("activity-mismatch", "silent-layer",
                                                                    "accuracy-collapse")})
    if caution:
        doc.add("p", f"Caution ({', '.join(caution)}, see Warnings): the ratios compare networks that do not "
                     "behave alike on the two targets; quote them only for a network that is accurate and "
                     "spikes in every layer on both.")
    if c.layer_spikes:
        mine = {r.name: r.spike_rate * math.prod(r.shape) * report.model.timesteps
                for r in report.layers if r.kind == "lif"}
        doc.add("h3", "Spikes per layer (per inference)")
        doc.add("table", ["layer", me, other],
                [[name, human(mine.get(name)), human(c.layer_spikes.get(name))]
                 for name in dict.fromkeys([*mine, *c.layer_spikes])])
    for key, unit, what in (("energy_j", "J", "Energy"), ("latency_s", "s", "Latency")):
        mine, theirs = getattr(report.breakdown, key), getattr(c.breakdown, key)
        comps = list(dict.fromkeys([*mine, *theirs]))
        doc.add("h3", f"{what} by component")
        doc.add("table", ["component", me, other],
                [[k.replace("_", " "), human(mine.get(k, 0.0), unit), human(theirs.get(k, 0.0), unit)]
                 for k in comps])


# -- Markdown ------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """``align`` has one letter per column, l or r (default: first column left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _to_markdown(doc: _Doc) -> str:
    out = []
    for kind, p in doc.blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + p[0])
        elif kind == "p":
            out.append(p[0])
        elif kind == "kv":
            out.append("\n".join(f"- **{k}**: {v}" for k, v in p[0]))
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in p[0]))
        elif kind == "warn":
            out.append("\n".join(f"- ⚠ **{code}**{f' ({layer})' if layer else ''}: {msg}" for code, layer, msg in p[0]))
        elif kind == "summary":
            warn = ", ".join(code + (f" ({layer})" if layer else "") for code, layer in p[1]) or "none"
            out.append(" · ".join(f"**{k}** {v}" for k, v in p[0]) + f" · **warnings** {warn}")
        elif kind == "table":
            out.append(_md_table(*p[:3]))
        elif kind == "img":
            out.append(f"![{p[1]}]({p[0]})")
    return "\n\n".join(out) + "\n"


def markdown(report: Report, figures: Sequence[str] = ()) -> str:
    """The report as Markdown; ``figures`` are PNG file names to link (relative to the .md)."""
    return _to_markdown(_document(report, figures))


# -- HTML ----------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;line-height:1.45}
nav{position:fixed;top:0;left:0;width:13em;height:100vh;overflow-y:auto;padding:1em;box-sizing:border-box;
background:#f7f7f7;border-right:1px solid #ddd;font-size:.9em}nav a{display:block;color:#245;text-decoration:none;
padding:.15em 0}nav a:hover{text-decoration:underline}main{margin-left:13em;padding:0 2em 2em;max-width:1100px}
h1{border-bottom:2px solid #ddd;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}th{background:#f4f4f4}
td.l,th.l{text-align:left;white-space:normal}table.kv td{text-align:left;white-space:normal}
table.kv td:first-child{font-weight:600;white-space:nowrap}table.sortable th{cursor:pointer}
table.sortable th:after{content:" ⇅";color:#999}.card{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card div{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;background:#fafafa}
.card b{display:block;font-size:.8em;color:#666;font-weight:600}.card span{white-space:nowrap;font-size:1.15em}
.card .warn{background:#fff8d6;border-color:#e6c200}.card .ok{background:#eef8ee;border-color:#9c9}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}ul{padding-left:1.3em}
ul.warn{background:#fff8d6;border:1px solid #e6c200;padding:.5em .5em .5em 2em}"""

#: click a header of a sortable table to sort by that column (numbers by their raw value)
_JS = """document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),up=th.dataset.dir!=='up';
th.dataset.dir=up?'up':'down';rows.sort(function(a,b){var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
return up?c:-c;});rows.forEach(function(r){body.appendChild(r);});});});});"""


def _h(text: Any) -> str:
    return html_lib.escape(str(text))


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def _html_table(p: tuple) -> str:
    headers, rows = p[0], p[1]
    align = p[2] if len(p) > 2 else "l" + "r" * (len(headers) - 1)
    keys = p[3] if len(p) > 3 else None
    cls = ['' if a == "r" else ' class="l"' for a in align]
    head = "".join(f"<th{a}>{_h(c)}</th>" for c, a in zip(headers, cls, strict=True))
    body = []
    for i, row in enumerate(rows):
        vals = keys[i] if keys else [None] * len(row)
        cells = []
        for c, a, v in zip(row, cls, vals, strict=True):
            data = "" if v is None else f' data-v="{_h(v)}"'
            cells.append(f"<td{a}{data}>{_h(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    sortable = ' class="sortable"' if keys else ""
    return f"<table{sortable}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_summary(items: Sequence[tuple[str, str]], warnings: Sequence[tuple[str, str | None]]) -> str:
    cells = "".join(f"<div><b>{_h(k)}</b><span>{_h(v)}</span></div>" for k, v in items)
    if warnings:
        text = ", ".join(code + (f" ({layer})" if layer else "") for code, layer in warnings)
        cells += f'<div class="warn"><b>warnings</b><span><a href="#warnings">{_h(text)}</a></span></div>'
    else:
        cells += '<div class="ok"><b>warnings</b><span>none</span></div>'
    return f'<div class="card" id="summary">{cells}</div>'


def _to_html(doc: _Doc, title: str, images: Mapping[str, bytes]) -> str:
    parts, nav = [], ['<a href="#summary">Summary</a>']
    for kind, p in doc.blocks:
        if kind == "h2":
            nav.append(f'<a href="#{_anchor(p[0])}">{_h(p[0])}</a>')
            parts.append(f'<h2 id="{_anchor(p[0])}">{_h(p[0])}</h2>')
        elif kind in ("h1", "h3"):
            parts.append(f"<{kind}>{_h(p[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_h(p[0])}</p>")
        elif kind == "summary":
            parts.append(_html_summary(*p))
        elif kind == "kv":
            rows = "".join(f"<tr><td>{_h(k)}</td><td>{_h(v)}</td></tr>" for k, v in p[0])
            parts.append(f'<table class="kv">{rows}</table>')
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_h(i)}</li>" for i in p[0]) + "</ul>")
        elif kind == "warn":
            parts.append('<ul class="warn">' + "".join(
                f"<li><b>{_h(code)}</b>{_h(f' ({layer})' if layer else '')}: {_h(msg)}</li>"
                for code, layer, msg in p[0]) + "</ul>")
        elif kind == "table":
            parts.append(_html_table(p))
        elif kind == "img" and p[0] in images:
            data = base64.b64encode(images[p[0]]).decode("ascii")
            parts.append(f'<figure><img alt="{_h(p[1])}" src="data:image/png;base64,{data}"></figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>\n"
            "<main>\n" + "\n".join(parts) + f"\n</main>\n<nav>{''.join(nav)}</nav>\n"
            f"<script>{_JS}</script>\n</body></html>\n")


def html(report: Report, figures: Mapping[str, bytes] | None = None) -> str:
    """A self-contained HTML page: inline CSS, figures embedded as base64 PNG, no external assets.

    ``figures`` maps PNG names to bytes; ``None`` renders them now, ``{}`` leaves them out.
    """
    if figures is None:
        figures = figure_pngs(report)
    return _to_html(_document(report, list(figures)), f"{report.model.name} on {report.target.name}", figures)


# -- figures and files ----------------------------------------------------------------
def figure_pngs(report: Report) -> dict[str, bytes]:
    """The report's figures as ``{file name: PNG bytes}``."""
    from deploy.report import figures as figs

    out = {"energy_latency.png": figs.png_bytes(figs.layer_energy_latency(report)),
           "spike_rates.png": figs.png_bytes(figs.spike_rates(report))}
    comp = figs.comparison_breakdown(report)
    if comp is not None:
        out["comparison.png"] = figs.png_bytes(comp)
    return out


def write_all(report: Report, outdir: str | Path, figures: bool = True) -> Path:
    """Write report.json, report.md, report.html (and the PNGs) into ``outdir``; all or nothing."""
    outdir = Path(outdir)
    with staged_dir(outdir) as stage:
        (stage / "report.json").write_text(report.to_json(), encoding="utf-8")
        pngs = figure_pngs(report) if figures else {}
        for name, data in pngs.items():
            (stage / name).write_bytes(data)
        (stage / "report.md").write_text(markdown(report, list(pngs)), encoding="utf-8")
        (stage / "report.html").write_text(html(report, pngs), encoding="utf-8")
    return outdir


# -- Rich summary ----------------------------------------------------------------------
#: layer-table columns left out, in this order, when the table is wider than the terminal
DROPPABLE = ("synops", "kind", "spike rate")


def _layer_table(report: Report, drop: Sequence[str] = ()) -> Table:
    """The per-layer table without the columns named in ``drop``; values never wrap mid-number."""
    keep = [i for i, col in enumerate(LAYER_HEADERS) if col not in drop]
    title = f"{report.model.name} on {report.target.name} ({report.mode})"
    if drop:
        title += f"; {', '.join(drop)} left out (narrow terminal)"
    table = Table(title=title, title_style="bold")
    for i in keep:
        col = LAYER_HEADERS[i]
        table.add_column(col.replace(" ", "\n"), justify="left" if col in ("layer", "kind", "shape") else "right",
                         no_wrap=True, overflow="fold")
    tot = report.totals
    totals = ["total", "", "", human(tot.energy_j, "J"), human(tot.latency_s, "s"), human(tot.memory_bytes, "B"),
              human(tot.synops), ""]
    for row in _layer_rows(report):
        table.add_row(*(row[i] for i in keep))
    table.add_section()
    table.add_row(*(totals[i] for i in keep), style="bold")
    return table


def fitted_layer_table(report: Report, console: Console) -> Table:
    """The per-layer table, with the least telling columns left out until every value fits
    ``console``'s width unbroken (cell widths plus borders and padding, 3 characters per column)."""
    rows = [LAYER_HEADERS, *_layer_rows(report)]
    need = {col: max(max(len(w) for w in col.split()), *(len(r[i]) for r in rows[1:]))
            for i, col in enumerate(LAYER_HEADERS)}
    for n in range(len(DROPPABLE) + 1):
        drop = DROPPABLE[:n]
        if sum(w + 3 for c, w in need.items() if c not in drop) + 1 <= console.width:
            break
    return _layer_table(report, drop)


def _summary(report: Report, console: Console) -> Group:
    table = fitted_layer_table(report, console)
    tot = report.totals
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if report.accuracy:
        a = report.accuracy
        grid.add_row("accuracy", f"{_pct(a.deployed)} deployed, {_pct(a.reference)} float reference "
                                 f"({a.samples} samples of {a.dataset})")
    grid.add_row("energy", human(tot.energy_j, "J") + " per inference")
    lat = report.latency
    grid.add_row("latency", human(tot.latency_s, "s") + " per inference" + (
        "" if lat is None else f" ({'layers pipelined' if lat.pipelined else 'layers in sequence'}"
        + (f", {'bound by' if lat.pipelined else 'largest'} {lat.critical_layer}" if lat.critical_layer else "")
        + f"; layer latencies sum to {human(lat.layer_sum_s, 's')})"))
    grid.add_row("memory", memory_sentence(report))
    grid.add_row("synops", f"{human(tot.synops)} effective, {human(report.metrics.synops_dense)} dense")
    grid.add_row("spikes", f"{human(tot.spikes)} (activation sparsity {report.metrics.activation_sparsity:.3f})")
    if tot.area_mm2 is not None:
        grid.add_row("area", f"{human(tot.area_mm2)} mm²")
    if report.comparison:
        c = report.comparison
        grid.add_row(f"vs {c.target}", ", ".join(f"{k} {ratio(v)}" for k, v in c.ratios.items())
                     + f"  ({c.target} ÷ {report.target.name})")
        acc_me = report.accuracy.deployed if report.accuracy else None
        grid.add_row("both", f"{report.target.name}: {_pct(acc_me)} deployed, {human(tot.spikes)} spikes; "
                             f"{c.target}: {_pct(c.accuracy_deployed)} deployed, {human(c.totals.spikes)} spikes")
    parts: list[Any] = [table, Panel(grid, title="totals", expand=False)]
    parts += [Text(f"⚠ {w.code}" + (f" ({w.layer})" if w.layer else "") + f": {w.message}", style="yellow")
              for w in report.warnings]
    return Group(*parts)


def print_summary(report: Report, console: Console | None = None) -> None:
    """Print the per-layer table and a totals panel (torchinfo / Keras style)."""
    console = console or Console()
    console.print(_summary(report, console))


def text_table(report: Report, width: int = 120) -> str:
    """The Rich summary as plain text (no color codes)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, color_system=None, force_terminal=False,
                      highlight=False, emoji=False)
    print_summary(report, console)
    return buf.getvalue()


# -- several reports ---------------------------------------------------------------------
def render_comparison(reports: Sequence[Report], outdir: Path | None = None) -> str:
    """Markdown table of several reports side by side, ratios vs the first (each ÷ first).

    With ``outdir`` the totals figure is written there as ``compare_reports.png`` and linked.
    """
    if not reports:
        raise DeployError("no reports to compare")
    from deploy.report.figures import report_labels

    labels = report_labels(reports)
    rows = [["model", *(r.model.name for r in reports)], ["target", *(r.target.name for r in reports)],
            ["mode", *(r.mode for r in reports)]]
    for key, unit, what in (("energy_j", "J", "energy"), ("latency_s", "s", "latency"),
                            ("memory_bytes", "B", "memory"), ("synops", "", "synops"), ("spikes", "", "spikes")):
        vals = [getattr(r.totals, key) for r in reports]
        rows.append([what, *(human(v, unit) for v in vals)])
        rows.append([f"{what} ÷ first", *(ratio(_divide(v, vals[0])) for v in vals)])
    acc = [r.accuracy.deployed if r.accuracy else None for r in reports]
    rows.append(["accuracy (deployed)", *(_pct(a) for a in acc)])
    rows.append(["accuracy − first", *("n/a" if a is None or acc[0] is None else f"{100 * (a - acc[0]):+.1f} points"
                                       for a in acc)])
    rows.append(["dataset", *(f"{r.accuracy.dataset}, {r.accuracy.samples}" if r.accuracy else "none"
                              for r in reports)])
    rows.append(["warnings", *(", ".join(sorted({w.code for w in r.warnings})) or "none" for r in reports)])
    text = (f"# Comparison of {len(reports)} reports\n\nRatios are each report ÷ the first ({labels[0]}): "
            f"above 1 means {labels[0]} uses less.\n\n" + _md_table(["", *labels], rows) + "\n")
    if outdir is not None:
        from deploy.report.figures import compare_reports, png_bytes

        data = png_bytes(compare_reports(reports))
        atomic_write(Path(outdir) / "compare_reports.png", lambda p: p.write_bytes(data))
        text += "\n![totals side by side](compare_reports.png)\n"
    return text
