"""Readable units and the layer selections shared by the report's text and its figures."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from deploy.core import ir

if TYPE_CHECKING:
    from deploy.report.schema import LayerRow, Report

_SI = [(1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f")]
_SCALES: dict[str, list[tuple[float, str]]] = {
    "B": [(1024.0**4, "TB"), (1024.0**3, "GB"), (1024.0**2, "MB"), (1024.0, "KB"), (1.0, "B")],
    "": [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")],
    **{u: [(s, p + u) for s, p in _SI] for u in ("J", "s", "W")},
}


def unit_scale(value: float, unit: str, digits: int = 3) -> tuple[float, str]:
    """(scale, label) of the largest prefix under which |value|, rounded to ``digits``, is >= 1.

    ``unit_scale(1.5e-9, "J") == (1e-9, "nJ")``; unknown units get (1, unit).
    """
    table = _SCALES.get(unit)
    top = abs(value)
    if not table or top == 0 or not math.isfinite(top):
        return 1.0, unit
    return next(((s, lab) for s, lab in table if float(f"{top / s:.{digits}g}") >= 1), table[-1])


def human(value: float | None, unit: str = "", digits: int = 3) -> str:
    """``value`` in ``unit`` with a readable prefix and ``digits`` significant digits.

    ``human(1.5e-9, "J") == "1.5 nJ"``, ``human(2048, "B") == "2 KB"``, ``human(158414) == "158k"``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return ("-" if value < 0 else "") + "∞"
    scale, label = unit_scale(value, unit, digits)
    scaled = value / scale
    num = f"{scaled:,.0f}" if abs(scaled) >= 10**digits else f"{scaled:.{digits}g}"
    return f"{num}{label}" if unit == "" else f"{num} {label}"


def spiking_layers(report: Report) -> list[LayerRow]:
    """Layers that emit spikes: spiking neuron kinds, or any layer with a non-zero spike rate."""
    kinds = {k for k in ir.NEURON_KINDS if k != "li"}
    return [r for r in report.layers if r.spike_rate > 0 or r.kind in kinds]
