"""Health warnings: findings a reader of a report should not miss, each with a remedy.

:func:`check` is a pure function of a :class:`Report` (plus, optionally, the
activities behind it, for clipping counters, and the graph, for its reset
modes). Codes:

- ``accuracy-collapse``: deployed accuracy more than ``COLLAPSE_POINTS`` below the
  float reference; the message names the remedy that fits the target.
- ``silent-layer``: a spiking layer without a single spike on the test data
  (on this target, and separately on the compared one).
- ``saturated-layer``: a spiking layer firing at >= ``SATURATION_RATE`` of its
  neuron-steps, or a layer whose activity records clipped values (counters
  named ``clipped*`` / ``saturated*`` in ``LayerActivity.extra``).
- ``activity-mismatch``: with a comparison, total spikes of the two targets
  differ by more than ``MISMATCH_FACTOR``.

Spike-based checks need simulated activity; assumed-rate reports get none.
"""

from __future__ import annotations

import math

import numpy as np

from deploy.core import ir
from deploy.core.metrics import Activity
from deploy.report.schema import HealthWarning, Report

COLLAPSE_POINTS = 5.0
SATURATION_RATE = 0.95
MISMATCH_FACTOR = 2.0
IMC_TARGETS = ("imc", "imc-adc")
LOIHI_TARGETS = ("loihi", "loihi2")


def check(report: Report, activity: Activity | None = None, other: Activity | None = None,
          graph: ir.Graph | None = None) -> list[HealthWarning]:
    """All warnings of ``report``, in a fixed order: accuracy, silent, saturated, mismatch."""
    out = _collapse(report, graph)
    if report.mode != "activity":
        return out
    me, comp = report.target.name, report.comparison
    out += _silent(report, _layer_spikes(report), me)
    if comp is not None and comp.layer_spikes:
        out += _silent(report, comp.layer_spikes, comp.target)
    out += _saturated(report, _layer_spikes(report), activity, me)
    if comp is not None and comp.layer_spikes:
        out += _saturated(report, comp.layer_spikes, other, comp.target)
    if comp is not None:
        out += _mismatch(report.totals.spikes, comp.totals.spikes, me, comp.target)
    return out


# -- accuracy ---------------------------------------------------------------------------
def _collapse(report: Report, graph: ir.Graph | None) -> list[HealthWarning]:
    acc = report.accuracy
    if acc is None or acc.reference is None:
        return []
    found = [(report.target.name, acc.deployed)]
    if report.comparison is not None and report.comparison.accuracy_deployed is not None:
        found.append((report.comparison.target, report.comparison.accuracy_deployed))
    out = []
    for target, deployed in found:
        drop = 100 * (acc.reference - deployed)
        if drop > COLLAPSE_POINTS:
            out.append(HealthWarning(
                code="accuracy-collapse", layer=None,
                message=(f"{target}: deployed accuracy {100 * deployed:.1f}% is {drop:.1f} points below the "
                         f"float reference {100 * acc.reference:.1f}%; " + remedy(report, target, graph))))
    return out


def remedy(report: Report, target: str, graph: ir.Graph | None = None) -> str:
    """What to do about an accuracy collapse on ``target``."""
    model = report.model.source
    hints = []
    if target in IMC_TARGETS:
        extra = ("" if model.endswith(".pt") else
                 " (with the --weights/--dt/--timesteps/--encoding options given to this compile)")
        hints.append(f"retrain with the crossbar's partial-sum quantization: "
                     f"`deploy finetune {model} --target {target} -o <retrained.pt>`{extra}")
    elif target in LOIHI_TARGETS:
        subtract = _subtract_layers(report, graph)
        if subtract:
            hints.append(f"Loihi resets the membrane to zero but {', '.join(subtract)} were trained with "
                         "reset 'subtract': retrain with reset zero (e.g. `python examples/train_digits.py "
                         "--reset zero`)")
        spikes = (_layer_spikes(report) if target == report.target.name or report.comparison is None
                  else report.comparison.layer_spikes)
        out_layer = report.layers[-1] if report.layers else None
        if out_layer is not None and out_layer.kind == "lif" and spikes.get(out_layer.name, 1.0) < 1:
            hints.append(f"the readout layer {out_layer.name} emits under one spike per inference on Loihi "
                         "(predictions are output spike counts): lower its threshold or train for more "
                         "output spikes")
    if report.model.precision:
        hints.append(f"the model is quantized ({_bits(report)}): choose wider weights/neurons, e.g. "
                     f"`deploy quantize {model} --max-acc-drop 1 -o <folder>`")
    if not hints:
        hints.append("the target's arithmetic differs from the float reference; see the assumptions")
    return "; ".join(hints)


def _subtract_layers(report: Report, graph: ir.Graph | None) -> list[str]:
    if graph is not None:
        return [n.name for n in graph.nodes if isinstance(n, ir.LIF) and n.reset == "subtract"]
    note = next((a for a in report.assumptions if "reset 'subtract'" in a and "layers " in a), "")
    return [note.split("layers ", 1)[1].split(" were", 1)[0]] if note else []


def _bits(report: Report) -> str:
    widths = sorted({int(b) for p in report.model.precision.values() if isinstance(p, dict)
                     for k, b in p.items() if k == "weight"})
    return f"weights {'/'.join(map(str, widths))} b" if widths else "neuron parameters"


# -- spikes -------------------------------------------------------------------------------
def _layer_spikes(report: Report) -> dict[str, float]:
    """Spikes per inference of every spiking layer of this report."""
    t = report.model.timesteps
    return {r.name: r.spike_rate * _neurons(r) * t for r in report.layers if r.kind == "lif"}


def _neurons(row) -> int:
    return int(np.prod(row.shape)) if row.shape else 1


def _silent(report: Report, spikes: dict[str, float], target: str) -> list[HealthWarning]:
    out = []
    samples = f" ({report.accuracy.samples} samples)" if report.accuracy else ""
    last = report.layers[-1].name if report.layers else None
    for row in report.layers:
        if row.kind == "lif" and row.name in spikes and spikes[row.name] == 0:
            effect = ("the readout sees no spike, so every prediction is a tie" if row.name == last
                      else "the layers it feeds get no spike from it")
            out.append(HealthWarning(
                code="silent-layer", layer=row.name,
                message=f"{target}: {row.name} emits no spike on the test data{samples}; {effect}"))
    return out


def _saturated(report: Report, spikes: dict[str, float], activity: Activity | None,
               target: str) -> list[HealthWarning]:
    out = []
    t = report.model.timesteps
    for row in report.layers:
        if row.kind == "lif" and row.name in spikes:
            rate = spikes[row.name] / (_neurons(row) * t)
            if rate >= SATURATION_RATE:
                out.append(HealthWarning(
                    code="saturated-layer", layer=row.name,
                    message=(f"{target}: {row.name} fires at {100 * rate:.1f}% of its neuron-steps; "
                             "it carries almost no information (threshold too low or input too strong)")))
        la = activity.layers.get(row.name) if activity is not None else None
        clipped = {k: v for k, v in (la.extra.items() if la is not None else ())
                   if k.startswith(("clipped", "saturated")) and v > 0}
        if clipped:
            what = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in sorted(clipped.items()))
            out.append(HealthWarning(code="saturated-layer", layer=row.name,
                                     message=f"{target}: {row.name} clips values ({what} per inference)"))
    return out


def _count(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _mismatch(mine: float, theirs: float, me: str, other: str) -> list[HealthWarning]:
    lo, hi = sorted((mine, theirs))
    factor = hi / lo if lo > 0 else (math.inf if hi > 0 else 1.0)
    if factor <= MISMATCH_FACTOR:
        return []
    how = "∞" if math.isinf(factor) else f"{factor:.3g}"
    return [HealthWarning(
        code="activity-mismatch", layer=None,
        message=(f"{me} emits {_count(mine)} spikes per inference, {other} {_count(theirs)} ({how}x apart): the two "
                 "targets run the network in different regimes, so their cost ratios do not compare "
                 "like with like"))]
