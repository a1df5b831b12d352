"""Hardware constants from YAML specs, each with its unit and source.

A spec file::

    name: digital
    description: ...
    constants:
      e_add_fp32_pj: {value: 0.9, unit: pJ, source: "Horowitz, ISSCC 2014, Fig. 1.1.9 (45 nm)"}

Targets read constants with ``spec["key"]``; every read is remembered so the
report can list exactly the constants a result used.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.core.errors import TargetError
from deploy.io.yamlfile import read_yaml

SPEC_DIR = Path(__file__).resolve().parent / "specs"

#: units of constants that may be 0 but not negative (energies, powers, areas, times, delays);
#: a unitless constant (an exponent) may take any finite value; every other unit (frequencies,
#: sizes, counts, voltages, resistances) must be > 0, since the models divide by or count with them
NON_NEGATIVE_UNITS = frozenset({"J", "pJ", "J/bit", "pJ/bit", "W", "W/KB", "W/S", "um^2", "s", "ns", "steps"})
#: units of whole-number constants
INTEGER_UNITS = frozenset({"B", "axons", "bit", "bits", "bits/cycle", "chips", "compartments", "cores",
                           "tiles", "units", "steps"})


def check_constant(key: str, value: Any, unit: str, origin: str) -> int | float:
    """``value`` as a number, or one TargetError line unless it is a finite number allowed for
    ``unit`` (see :data:`NON_NEGATIVE_UNITS` and :data:`INTEGER_UNITS`). Text that YAML 1.1 does
    not read as a number but Python does (``1e9``) counts as that number."""
    shown = f" ({unit})" if unit else ""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TargetError(f"{origin}: constant '{key}'{shown} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise TargetError(f"{origin}: constant '{key}'{shown} must be a finite number, got {value!r}")
    if unit in INTEGER_UNITS and value != int(value):
        raise TargetError(f"{origin}: constant '{key}'{shown} must be a whole number, got {value!r}")
    if unit in NON_NEGATIVE_UNITS and value < 0:
        raise TargetError(f"{origin}: constant '{key}'{shown} must be >= 0, got {value!r}")
    if unit and unit not in NON_NEGATIVE_UNITS and value <= 0:
        raise TargetError(f"{origin}: constant '{key}'{shown} must be > 0, got {value!r}")
    return value


@dataclass
class Constant:
    value: Any
    unit: str
    source: str


@dataclass
class Spec:
    name: str
    path: str
    constants: dict[str, Constant]
    description: str = ""
    used: set[str] = field(default_factory=set)

    def __getitem__(self, key: str) -> Any:
        if key not in self.constants:
            raise TargetError(f"spec '{self.path}' is missing constant '{key}'")
        self.used.add(key)
        return self.constants[key].value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.constants else default

    def require(self, keys: list[str] | tuple[str, ...]) -> None:
        """Fail with one line naming the first constant the spec lacks."""
        for key in keys:
            if key not in self.constants:
                raise TargetError(f"spec '{self.path}' is missing constant '{key}'")

    def override(self, values: dict[str, Any], origin: str) -> Spec:
        """A copy with some values replaced; their source becomes ``origin``."""
        new = copy.deepcopy(self)
        for key, val in values.items():
            if key not in new.constants:
                raise TargetError(f"{origin}: unknown constant '{key}' for spec '{self.name}'")
            if isinstance(val, dict):
                val = val.get("value")
            old = new.constants[key]
            if isinstance(old.value, (int, float)):
                val = check_constant(key, val, old.unit, origin)
            new.constants[key] = Constant(val, old.unit, f"override from {origin}")
        return new

    def used_constants(self) -> dict[str, dict[str, Any]]:
        """The constants read so far, as ``{key: {value, unit, source}}``."""
        return {k: {"value": self.constants[k].value, "unit": self.constants[k].unit,
                    "source": self.constants[k].source} for k in sorted(self.used)}


def load_spec(name_or_path: str | Path) -> Spec:
    """Load ``hwmodels/specs/<name>.yaml`` or a YAML file path; validate every entry."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SPEC_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise TargetError(f"spec file not found: {path}")
    doc = read_yaml(path, TargetError)
    if not isinstance(doc, dict) or not isinstance(doc.get("constants"), dict):
        raise TargetError(f"{path}: a spec needs a 'constants' mapping")
    constants = {}
    for key, entry in doc["constants"].items():
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
            raise TargetError(f"{path}: constant '{key}' needs a value and a source")
        value = check_constant(str(key), entry["value"], str(entry.get("unit", "")), str(path))
        constants[key] = Constant(value, str(entry.get("unit", "")), str(entry["source"]))
    return Spec(name=str(doc.get("name", path.stem)), path=str(path), constants=constants,
                description=str(doc.get("description", "")))


def load_config(path: str | Path) -> dict[str, Any]:
    """A user's ``--config`` YAML: ``{constants: {...}, options: {...}}`` (either part optional)."""
    path = Path(path)
    if not path.is_file():
        raise TargetError(f"config file not found: {path}")
    doc = read_yaml(path, TargetError) or {}
    if not isinstance(doc, dict) or set(doc) - {"constants", "options"}:
        raise TargetError(f"{path}: a config has only 'constants' and 'options' sections")
    for part in ("constants", "options"):
        if not isinstance(doc.get(part) or {}, dict):
            raise TargetError(f"{path}: '{part}' must be a mapping of names to values, "
                              f"got {type(doc[part]).__name__}")
    return {"constants": dict(doc.get("constants") or {}), "options": dict(doc.get("options") or {}),
            "origin": str(path)}
