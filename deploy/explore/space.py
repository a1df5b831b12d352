"""The design space of ``deploy explore``: a SPACE.yaml parsed, validated and enumerated.

A space file::

    model: examples/models/digits_snn.pt   # relative paths: from the current folder
    data: digits                            # digits | mnist | events | a data file
    samples: 200                            # test samples per point
    seed: 0                                 # mixed into every point's own seed
    split_seed: 0                           # optional: the data split, as in deploy compile
    targets:                                # target -> option -> list of values
      digital: {}
      imc: {rows: [64, 128], bits_per_cell: [1, 2]}
      imc-adc: {adc_bits: [3, 4, 5]}
    quant: {weight_bits: [4, 8], neuron_bits: [8, 16], scheme: ptq}   # optional
    finetune: {epochs: 2}                   # optional, IMC targets only
    objectives: [accuracy, energy]          # accuracy max; energy, latency, memory, area, cores min
    search: grid                            # or {optuna: {trials: 30}}

Every option combination is checked by the target's own option parser (the one
``deploy compile --config`` uses), so a bad space is one line before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError

#: objective -> (report field, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "max"),
    "energy": ("energy_j", "min"),
    "latency": ("latency_s", "min"),
    "memory": ("memory_bytes", "min"),
    "area": ("area_mm2", "min"),
    "cores": ("cores", "min"),
}
#: targets that report each objective (None: every target)
REPORTED_BY: dict[str, tuple[str, ...] | None] = {"area": ("imc", "imc-adc"), "cores": ("loihi", "loihi2")}
FINETUNE_TARGETS = ("imc", "imc-adc")
QUANT_KEYS = ("weight_bits", "neuron_bits", "scheme")
TOP_KEYS = {"model", "data", "samples", "seed", "split_seed", "targets", "quant", "finetune", "objectives",
            "search"}
MAX_SEED = 2**32 - 1


class SpaceError(DeployError):
    """A space file that cannot be explored; the message names the file and the entry."""


@dataclass
class Space:
    """A validated design space (see the module docstring for the file format)."""

    model: str
    data: str
    samples: int
    seed: int
    split_seed: int
    targets: dict[str, dict[str, list[Any]]]
    quant: dict[str, list[Any]] | None
    finetune_epochs: int | None
    objectives: list[str]
    search: str = "grid"
    trials: int = 0
    origin: str = "space"

    def points(self) -> list[dict[str, Any]]:
        """Every point of the grid, in file order: target, its options, quantization, finetune."""
        quant = [None] if self.quant is None else [
            dict(zip(QUANT_KEYS, combo, strict=True)) for combo in itertools.product(
                *(self.quant[k] for k in QUANT_KEYS))]
        out = []
        for name, opts in self.targets.items():
            for combo in itertools.product(*opts.values()):
                options = dict(zip(opts, combo, strict=True))
                for q in quant:
                    out.append({"target": name, "options": options, "quant": q,
                                "finetune": None if self.finetune_epochs is None or name not in FINETUNE_TARGETS
                                else {"epochs": self.finetune_epochs}})
        return out

    def directions(self) -> dict[str, str]:
        """Objective name -> "max" or "min"."""
        return {o: OBJECTIVES[o][1] for o in self.objectives}


def canonical(obj: Any) -> str:
    """The JSON text a hash is taken of: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def point_key(point: dict[str, Any], context: dict[str, Any]) -> str:
    """The 16-hex-digit key of a point in a context (model hash, data, samples, seeds)."""
    return hashlib.sha256(canonical({"point": point, "context": context}).encode()).hexdigest()[:16]


def point_seed(key: str) -> int:
    """The seed of a point, drawn from its key: the same wherever and whenever it runs."""
    return int(key[:8], 16)


def point_label(point: dict[str, Any]) -> str:
    """A short label: ``imc rows=64 bits_per_cell=1 w4/n8 ptq ft2``."""
    parts = [point["target"], *(f"{k}={v}" for k, v in point["options"].items())]
    q = point.get("quant")
    if q:
        parts.append(f"w{q['weight_bits']}/n{q['neuron_bits']} {q['scheme']}")
    if point.get("finetune"):
        parts.append(f"ft{point['finetune']['epochs']}")
    return " ".join(parts)


def _fail(origin: str, where: str, msg: str) -> SpaceError:
    return SpaceError(f"{origin}: {where}: {msg}" if where else f"{origin}: {msg}")


def _values(origin: str, where: str, raw: Any) -> list[Any]:
    """A non-empty list of values (a single value counts as a list of one)."""
    vals = raw if isinstance(raw, list) else [raw]
    if not vals:
        raise _fail(origin, where, "empty list of values")
    if any(v is None for v in vals):
        raise _fail(origin, where, "a value is empty (null)")
    return vals


def _count(origin: str, key: str, raw: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < lo or (hi is not None and raw > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise _fail(origin, key, f"must be an integer {rng}, got {raw!r}")
    return raw


def _targets(origin: str, raw: Any) -> dict[str, dict[str, list[Any]]]:
    from hwmodels import TARGETS, target_class

    if not isinstance(raw, dict) or not raw:
        raise _fail(origin, "targets", "needs a mapping of target names to option lists, e.g. "
                                       "{digital: {}, imc: {rows: [64, 128]}}")
    out: dict[str, dict[str, list[Any]]] = {}
    for name, opts in raw.items():
        if name not in TARGETS:
            raise _fail(origin, "targets", f"unknown target {name!r} (choose from {', '.join(TARGETS)})")
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise _fail(origin, f"targets.{name}", "needs a mapping of option names to lists of values")
        lists = {str(k): _values(origin, f"targets.{name}.{k}", v) for k, v in opts.items()}
        cls = target_class(name)
        for combo in itertools.product(*lists.values()):
            options = dict(zip(lists, combo, strict=True))
            try:
                cls(options=options)
            except DeployError as exc:
                raise _fail(origin, f"targets.{name}", str(exc)) from None
        out[str(name)] = lists
    return out


def _quant(origin: str, raw: Any) -> dict[str, list[Any]] | None:
    from quant.ptq import QConfig

    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(origin, "quant", "needs a mapping {weight_bits: [...], neuron_bits: [...], scheme: ptq|qat}")
    unknown = sorted(set(raw) - set(QUANT_KEYS))
    if unknown:
        raise _fail(origin, "quant", f"unknown key {unknown[0]!r} (known: {', '.join(QUANT_KEYS)})")
    out = {"weight_bits": _values(origin, "quant.weight_bits", raw.get("weight_bits", 8)),
           "neuron_bits": _values(origin, "quant.neuron_bits", raw.get("neuron_bits", 16)),
           "scheme": _values(origin, "quant.scheme", raw.get("scheme", "ptq"))}
    for key in ("weight_bits", "neuron_bits"):
        for v in out[key]:
            if isinstance(v, bool) or not isinstance(v, int):
                raise _fail(origin, f"quant.{key}", f"must be integers, got {v!r}")
    for w, n, s in itertools.product(*out.values()):
        try:
            QConfig(weight_bits=w, neuron_bits=n, scheme=s)
        except DeployError as exc:
            raise _fail(origin, "quant", str(exc)) from None
    return out


def _objectives(origin: str, raw: Any, targets: dict[str, Any]) -> list[str]:
    names = raw if isinstance(raw, list) else [raw]
    if not names or raw is None:
        raise _fail(origin, "objectives", f"give at least one of {', '.join(OBJECTIVES)}")
    for name in names:
        if name not in OBJECTIVES:
            raise _fail(origin, "objectives", f"unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})")
        allowed = REPORTED_BY.get(name)
        lacking = [t for t in targets if allowed is not None and t not in allowed]
        if lacking:
            raise _fail(origin, "objectives", f"target {lacking[0]!r} does not report {name} "
                                              f"(only {', '.join(allowed or ())} do)")
    if len(set(names)) != len(names):
        raise _fail(origin, "objectives", "an objective is listed twice")
    return [str(n) for n in names]


def _search(origin: str, raw: Any, targets: dict[str, dict[str, list[Any]]],
            quant: dict[str, list[Any]] | None) -> tuple[str, int]:
    if raw is None or raw == "grid":
        return "grid", 0
    if isinstance(raw, dict) and set(raw) == {"optuna"} and isinstance(raw["optuna"], dict) \
            and set(raw["optuna"]) <= {"trials"}:
        trials = _count(origin, "search.optuna.trials", raw["optuna"].get("trials", 20), 1, 100_000)
        values = [v for opts in targets.values() for vals in opts.values() for v in vals]
        values += [v for vals in (quant or {}).values() for v in vals]
        bad = [v for v in values if not isinstance(v, (bool, int, float, str))]
        if bad:
            raise _fail(origin, "search", f"optuna searches over numbers and strings only, got {bad[0]!r}")
        return "optuna", trials
    raise _fail(origin, "search", f"must be 'grid' or {{optuna: {{trials: N}}}}, got {raw!r}")


def parse(doc: Any, origin: str = "space") -> Space:
    """A :class:`Space` from a parsed YAML document; a bad entry raises one :class:`SpaceError` line."""
    if not isinstance(doc, dict):
        raise _fail(origin, "", "a space file is a mapping (model, data, targets, objectives, ...)")
    unknown = sorted(set(map(str, doc)) - TOP_KEYS)
    if unknown:
        raise _fail(origin, "", f"unknown key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    model = doc.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail(origin, "model", "needs the path of a model file")
    data = doc.get("data", "digits")
    if not isinstance(data, str) or data == "none":
        raise _fail(origin, "data", f"needs a dataset name (digits, mnist, events) or a data file, got {data!r}")
    samples = _count(origin, "samples", doc.get("samples", 64), 1)
    seed = _count(origin, "seed", doc.get("seed", 0), 0, MAX_SEED)
    split_seed = _count(origin, "split_seed", doc.get("split_seed", 0), 0, MAX_SEED)
    targets = _targets(origin, doc.get("targets"))
    quant = _quant(origin, doc.get("quant"))
    epochs = None
    if doc.get("finetune") is not None:
        ft = doc["finetune"]
        if not isinstance(ft, dict) or set(ft) != {"epochs"}:
            raise _fail(origin, "finetune", "must be {epochs: N}")
        epochs = _count(origin, "finetune.epochs", ft["epochs"], 1, 1000)
        others = [t for t in targets if t not in FINETUNE_TARGETS]
        if others:
            raise _fail(origin, "finetune", f"hardware-aware retraining runs on the IMC targets "
                                            f"({', '.join(FINETUNE_TARGETS)}), not on {others[0]!r}")
    objectives = _objectives(origin, doc.get("objectives", ["accuracy", "energy"]), targets)
    search, trials = _search(origin, doc.get("search", "grid"), targets, quant)
    return Space(model=model, data=data, samples=samples, seed=seed, split_seed=split_seed, targets=targets,
                 quant=quant, finetune_epochs=epochs, objectives=objectives, search=search, trials=trials,
                 origin=origin)


def load(path: str | Path) -> Space:
    """Read and validate a SPACE.yaml file."""
    from deploy.io.yamlfile import read_yaml

    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such space file")
    return parse(read_yaml(path, SpaceError), str(path))
