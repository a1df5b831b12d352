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

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import TargetError
from deploy.io.yamlfile import read_yaml

SPEC_DIR = Path(__file__).resolve().parent / "specs"


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
            if isinstance(old.value, (int, float)) and not isinstance(val, (int, float)):
                raise TargetError(f"{origin}: constant '{key}' must be a number, got {val!r}")
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
        constants[key] = Constant(entry["value"], str(entry.get("unit", "")), str(entry["source"]))
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
    return {"constants": dict(doc.get("constants") or {}), "options": dict(doc.get("options") or {}),
            "origin": str(path)}
