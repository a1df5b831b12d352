"""From a target's :class:`~hwmodels.base.Cost` to the report's memory columns and latency path.

Memory has one definition (:func:`deploy.core.metrics.layer_memory`: weights at
stored precision + neuron parameters + neuron state, bytes) applied to the
model as the user gave it; every target reports, per layer, what it stores on
top of that as named overheads, so that ``base + sum(overheads)`` is the
target's own figure. A target that re-quantizes the graph it runs (IMC, a
bit-true digital mapping) gets a ``requantization`` column for the difference.
"""

from __future__ import annotations

from deploy.core import ir
from deploy.core.metrics import layer_memory
from deploy.report.schema import LatencyPath
from hwmodels.base import Cost

#: a difference below this many bytes is float round-off, not a column
_EPS = 1e-6


def memory_split(graph: ir.Graph, cost: Cost) -> dict[str, tuple[float, dict[str, float]]]:
    """Per cost layer: (the model's memory in bytes, the target's named overheads); the two add
    up to the layer's ``memory_bytes`` on the target."""
    base = {name: m.total for name, m in layer_memory(graph).items()}
    out = {}
    for lc in cost.layers:
        mine = base.get(lc.name, 0.0)
        if lc.memory_base_bytes is None:            # a target that does not split its figure
            over = {"target": lc.memory_bytes - mine}
        else:
            requant = lc.memory_base_bytes - mine    # the target runs a re-quantized copy of the layer
            over = {"requantization": requant} if abs(requant) > _EPS else {}
            for key, v in lc.memory_overhead_bytes.items():
                over[key] = over.get(key, 0.0) + v
        out[lc.name] = (mine, {k: v for k, v in over.items() if abs(v) > _EPS})
    return out


def split_totals(split: dict[str, tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
    """(model memory, overheads by name) summed over the layers of :func:`memory_split`."""
    base, over = 0.0, {}
    for b, o in split.values():
        base += b
        for k, v in o.items():
            over[k] = over.get(k, 0.0) + v
    return base, over


def latency_path(cost: Cost) -> LatencyPath:
    """Whether layers overlap, which layer bounds the total, and the layer sum vs the total.

    Targets that state nothing are taken as sequential when the total equals
    the layer sum (the largest layer is then named as the critical one).
    """
    layer_sum = float(sum(lc.latency_s for lc in cost.layers))
    total = float(cost.latency_s)
    critical, note = cost.critical_layer, cost.latency_note
    if not note:
        biggest = max(cost.layers, key=lambda lc: lc.latency_s, default=None)
        critical = critical or (biggest.name if biggest is not None and biggest.latency_s > 0 else None)
        if abs(layer_sum - total) <= 1e-9 * max(total, 1e-30) or not cost.layers:
            note = "layers run one after another: the total is the sum of the layer latencies"
            if critical:
                note += f"; the largest is {critical} ({biggest.latency_s * 1e9:.4g} ns)"
        else:
            note = (f"the total ({total * 1e9:.4g} ns) differs from the sum of the layer latencies "
                    f"({layer_sum * 1e9:.4g} ns); the target does not state its schedule")
    return LatencyPath(pipelined=cost.pipelined, critical_layer=critical, layer_sum_s=layer_sum,
                       total_s=total, note=note)
