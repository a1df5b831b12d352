"""TinySNN-style precision search over weight bits, neuron bits, rounding and scheme.

Objective: the smallest memory (parameters + neuron state at their precision)
whose accuracy is within ``max_acc_drop`` points of the float model; with
``max_memory`` the best accuracy within that budget; with a ``target``,
``objective="energy"`` / ``"latency"`` / ``"edp"`` the least energy, latency or
energy-delay product per inference within the tolerance.

With a ``target`` every candidate is evaluated on it: accuracy from the
target's own simulation (digital: bit-true fixed point; imc: the crossbar's
sense amplifiers or ADCs; loihi: its fixed-point reference), energy and latency
from its cost model. Constraints (``max_memory``, ``max_cores``,
``max_latency``, ``max_energy``) reject candidates; each evaluated point lists
the constraints that rejected it (``rejected_by``), and one the target cannot
map is rejected with the target's reason.

Pruning rests on monotonicity: more bits never cost less memory and are assumed
never to lose accuracy. For each (rounding, scheme) family the search walks the
feasibility boundary column by column (weight bits ascending): the first
feasible neuron precision of a column is found by bisection below the previous
column's, so a family costs about ``|W| * log2 |N|`` evaluations instead of
``|W| * |N|``. A configuration is skipped when an evaluated one dominates it
(no more memory, at least the accuracy it can reach at most: the accuracy of
an evaluated configuration of its family with at least its bits). The first
(rounding) family maps its whole boundary; the others, and QAT, the expensive
scheme, only run where they could beat the least memory found so far. For the
energy, latency and EDP objectives this memory-based pruning is a heuristic
(fewer bits usually cost less).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deploy.core import ir
from deploy.core.data import Split, fit_to_model
from deploy.core.errors import DataError, TargetError
from deploy.core.progress import bar as progress_bar
from quant import ptq
from quant.evaluate import BATCH_SIZE, Evaluation, evaluate, memory
from quant.neurons import check_neuron_bits
from quant.pareto import pareto_front
from quant.quantizers import ROUNDING, QuantError, check_bits, check_rounding

SCHEMA = "neurodeploy.quant-search/1"
_PREFERENCE = ["nearest", "stochastic", "truncation"]
OBJECTIVES = ("memory", "accuracy", "energy", "latency", "edp")
#: how each objective orders feasible points (smallest first)
_ORDER = {
    "memory": lambda p: (p.memory_bytes, -p.accuracy),
    "accuracy": lambda p: (-p.accuracy, p.memory_bytes),
    "energy": lambda p: (p.energy_j, p.memory_bytes, -p.accuracy),
    "latency": lambda p: (p.latency_s, p.memory_bytes, -p.accuracy),
    "edp": lambda p: (p.edp_js, p.memory_bytes, -p.accuracy),
}


@dataclass
class Point:
    """One evaluated configuration."""

    config: ptq.QConfig
    accuracy: float | None          # None: the target could not map or run it
    memory_bytes: float
    param_bytes: float
    state_bytes: float
    energy_j: float | None
    seconds: float
    phase: str = "network"
    feasible: bool = False
    latency_s: float | None = None
    cores: int | None = None
    rejected_by: list[str] = field(default_factory=list)

    @property
    def edp_js(self) -> float | None:
        """Energy-delay product per inference (J s)."""
        return None if self.energy_j is None or self.latency_s is None else self.energy_j * self.latency_s

    @property
    def constrained(self) -> bool:
        """Rejected by a constraint other than the accuracy tolerance (or unmappable)."""
        return any(not r.startswith("max_acc_drop") for r in self.rejected_by)

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"label": c.label(), "weight_bits": c.weight_bits, "neuron_bits": c.neuron_bits,
                "rounding": c.rounding, "scheme": c.scheme, "per_channel": c.per_channel,
                "layer_bits": dict(c.layer_bits), "accuracy": self.accuracy,
                "memory_bytes": self.memory_bytes, "param_bytes": self.param_bytes,
                "state_bytes": self.state_bytes, "energy_j": self.energy_j, "latency_s": self.latency_s,
                "edp_js": self.edp_js, "cores": self.cores, "seconds": self.seconds,
                "phase": self.phase, "feasible": self.feasible, "rejected_by": list(self.rejected_by)}


@dataclass
class SearchResult:
    """Every evaluated configuration, the chosen one (with its quantized graph) and the front."""

    model: str
    dataset: str
    samples: int
    objective: str
    constraints: dict[str, Any]
    space: dict[str, Any]
    baseline: dict[str, Any]
    evaluated: list[Point]
    chosen: Point
    graph: ir.Graph
    front: list[int]
    met: bool
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0
    target: str | None = None
    seed: int = 0
    batch_size: int = BATCH_SIZE
    #: the data split the configurations were evaluated on (``deploy compile --split-seed``)
    split_seed: int = 0

    @property
    def accuracy_floor(self) -> float:
        return self.baseline["accuracy"] - self.constraints["max_acc_drop_points"] / 100

    def savings(self, point: Point | None = None) -> dict[str, float]:
        p = point or self.chosen
        b = self.baseline
        return {"memory": b["memory_bytes"] / p.memory_bytes, "params": b["param_bytes"] / p.param_bytes,
                "accuracy_drop_points": 100 * (b["accuracy"] - p.accuracy)}

    def to_dict(self) -> dict[str, Any]:
        chosen = {**self.chosen.to_dict(), "index": self.evaluated.index(self.chosen),
                  "savings_vs_float32": self.savings()}
        return {"schema": SCHEMA, "model": self.model, "dataset": self.dataset, "samples": self.samples,
                "objective": self.objective, "constraints": self.constraints, "space": self.space,
                "target": self.target, "accuracy_on": self.accuracy_on, "seed": self.seed,
                "split_seed": self.split_seed, "batch_size": self.batch_size, "baseline": self.baseline,
                "accuracy_floor": self.accuracy_floor,
                "met": self.met, "warnings": self.warnings, "chosen": chosen, "front": self.front,
                "evaluations": len(self.evaluated), "skipped": self.skipped, "seconds": self.seconds,
                "evaluated": [p.to_dict() for p in self.evaluated]}

    @property
    def accuracy_on(self) -> str:
        """Where the accuracies were measured."""
        if self.target is None:
            return "quant's bit-true fixed-point network (= deploy compile --target digital)"
        return f"target {self.target}'s own simulation (= deploy compile --target {self.target})"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, outdir: str | Path, onnx: bool = False, seed: int = 0) -> dict[str, Any]:
        """Write search.json, model.pt (native checkpoint), pareto.png and, with ``onnx``, the
        chosen synapses as QCDQ ONNX files, all at once (nothing appears on failure).
        Returns the search.json document."""
        from deploy.io import native
        from deploy.io.atomic import staged_dir, write_text
        from quant.pareto import plot

        doc = self.to_dict()
        with staged_dir(outdir) as stage:
            if onnx:
                from quant.onnx_export import MAX_QCDQ_BITS, export_onnx

                if max(n.precision.get("weight", 32) for n in self.graph.synapses()) > MAX_QCDQ_BITS:
                    self.warnings.append(f"ONNX export skipped: QCDQ holds at most {MAX_QCDQ_BITS}-bit weights")
                else:
                    doc["onnx"] = [{**e.to_dict(), "path": f"onnx/{Path(e.path).name}"}
                                   for e in export_onnx(self.graph, stage / "onnx", seed=seed)]
            doc["warnings"] = list(self.warnings)
            write_text(stage / "search.json", json.dumps(doc, indent=1))
            native.save(self.graph, stage / "model.pt",
                        meta={"quantized_by": "quant.search", "config": self.chosen.config.label(),
                              "dataset": self.dataset, "test_accuracy": self.chosen.accuracy,
                              "search": {"samples": self.samples, "seed": self.seed, "target": self.target,
                                         "split_seed": self.split_seed, "batch_size": self.batch_size}})
            plot(doc, stage / "pareto.png")
        return doc


def bit_list(bits: Iterable[int] | int, what: str, neuron: bool = False) -> list[int]:
    """Validated, sorted, de-duplicated bit widths; an empty list is an error."""
    items = [bits] if isinstance(bits, int) else list(bits)
    if not items:
        raise QuantError(f"empty search space: no {what} bit widths to try")
    check = check_neuron_bits if neuron else (lambda b: check_bits(b, f"{what} bit width"))
    return sorted({check(b) for b in items})


class _Searcher:
    def __init__(self, graph: ir.Graph, x: torch.Tensor, y: torch.Tensor, split: Split, calib: torch.Tensor,
                 acc_floor: float, max_memory: float | None, objective: str, target, qat_epochs: int,
                 qat_lr: float, seed: int, progress: bool, max_cores: int | None = None,
                 max_latency: float | None = None, max_energy: float | None = None):
        self.graph, self.x, self.y, self.split, self.calib = graph, x, y, split, calib
        self.acc_floor, self.max_memory, self.objective, self.target = acc_floor, max_memory, objective, target
        self.max_cores, self.max_latency, self.max_energy = max_cores, max_latency, max_energy
        self.qat_epochs, self.qat_lr, self.seed = qat_epochs, qat_lr, seed
        self.points: list[Point] = []
        self.graphs: dict[str, ir.Graph] = {}
        self._cache: dict[str, Point] = {}
        self._mem: dict[str, float] = {}
        self._ranges: dict[str, dict[str, float]] = {}
        self.synapses = [n.name for n in graph.synapses()]
        self.neurons = [n.name for n in graph.nodes if n.kind in ir.NEURON_KINDS]
        self.skipped = 0
        self.bar = progress_bar(desc="precision search", unit="candidates", disable=not progress)

    # -- evaluation -----------------------------------------------------------------------
    def _bits_key(self, c: ptq.QConfig) -> str:
        return json.dumps([[c.weight_bits_for(s) for s in self.synapses],
                           [c.neuron_bits_for(n) for n in self.neurons], c.per_channel])

    def memory(self, c: ptq.QConfig) -> float:
        """Memory of a configuration, known before evaluating it (it depends on bits only)."""
        key = self._bits_key(c)
        if key not in self._mem:
            self._mem[key] = memory(ptq.quantize(self.graph, c, None, self.seed, ranges={
                n: 1.0 for n in self.neurons}))["memory_bytes"]
        return self._mem[key]

    def rejections(self, p: Point, error: str | None = None, floor: float | None = None) -> list[str]:
        """The constraints ``p`` breaks: the target's mapping ``error``, the memory, cores, latency and
        energy limits, and (unless maximizing accuracy) the tolerance or ``floor``."""
        out = [f"target: {error}"] if error else []
        if self.max_memory is not None and p.memory_bytes > self.max_memory:
            out.append(f"max_memory: {p.memory_bytes:.0f} > {self.max_memory:.0f} bytes")
        if self.max_cores is not None and p.cores is not None and p.cores > self.max_cores:
            out.append(f"max_cores: {p.cores} > {self.max_cores}")
        if self.max_latency is not None and p.latency_s is not None and p.latency_s > self.max_latency:
            out.append(f"max_latency: {p.latency_s:.4g} > {self.max_latency:.4g} s")
        if self.max_energy is not None and p.energy_j is not None and p.energy_j > self.max_energy:
            out.append(f"max_energy: {p.energy_j:.4g} > {self.max_energy:.4g} J")
        if floor is None:
            floor = None if self.objective == "accuracy" else self.acc_floor
        if floor is not None and p.accuracy is not None and p.accuracy < floor - 1e-9:
            out.append(f"max_acc_drop: {100 * p.accuracy:.2f} % < {100 * floor:.2f} %")
        return out

    def accurate(self, p: Point | None) -> bool:
        """Evaluated, and within the accuracy tolerance (what the boundary walk bisects on)."""
        return p is not None and p.accuracy is not None and p.accuracy >= self.acc_floor - 1e-9

    def _quantize(self, c: ptq.QConfig) -> ir.Graph:
        if c.scheme == "qat":
            from quant.qat import qat

            return qat(self.graph, c, self.split, epochs=self.qat_epochs, lr=self.qat_lr,
                       calib_samples=len(self.calib), seed=self.seed)
        wkey = json.dumps([[c.weight_bits_for(s) for s in self.synapses], c.rounding, c.per_channel])
        if wkey not in self._ranges:
            self._ranges[wkey] = ptq.value_ranges(ptq.quantize_all_weights(self.graph, c, self.seed), self.calib)
        return ptq.quantize(self.graph, c, seed=self.seed, ranges=self._ranges[wkey])

    def eval(self, c: ptq.QConfig, phase: str = "network", floor: float | None = None) -> Point:
        key = c.key()
        if key in self._cache:
            return self._cache[key]
        start = time.perf_counter()
        g = self._quantize(c)
        ev: Evaluation = evaluate(g, self.x, self.y, self.target, seed=self.seed)
        p = Point(c, ev.accuracy, ev.memory["memory_bytes"], ev.memory["param_bytes"], ev.memory["state_bytes"],
                  ev.energy_j, time.perf_counter() - start, phase, latency_s=ev.latency_s, cores=ev.cores)
        p.rejected_by = self.rejections(p, ev.error, floor)
        p.feasible = p.accuracy is not None and not p.rejected_by
        self._cache[key] = p
        self.points.append(p)
        self.graphs[key] = g
        self.bar.update(1)
        best = self.best()
        acc = "n/a" if p.accuracy is None else f"{100 * p.accuracy:.1f}%"
        self.bar.set_postfix_str(f"{c.label()} acc={acc}" +
                                 (f" best={best.config.label()}" if best else ""))
        return p

    # -- pruning ------------------------------------------------------------------------------
    def best(self, points: Sequence[Point] | None = None) -> Point | None:
        feas = [p for p in (self.points if points is None else points) if p.feasible]
        return min(feas, key=_ORDER[self.objective]) if feas else None

    def best_memory(self) -> float:
        """Least memory of a feasible point (the QAT limit; for energy a heuristic: fewer bits cost less)."""
        feas = [p.memory_bytes for p in self.points if p.feasible]
        return min(feas) if feas else math.inf

    def accuracy_bound(self, c: ptq.QConfig) -> float:
        """Highest accuracy ``c`` can reach: that of an evaluated family member with at least its bits."""
        bound = 1.0
        for p in self.points:
            o = p.config
            if p.accuracy is None:
                continue
            if (o.rounding, o.scheme, o.per_channel) != (c.rounding, c.scheme, c.per_channel):
                continue
            if all(o.weight_bits_for(s) >= c.weight_bits_for(s) for s in self.synapses) and \
                    all(o.neuron_bits_for(n) >= c.neuron_bits_for(n) for n in self.neurons):
                bound = min(bound, p.accuracy)
        return bound

    def dominated(self, c: ptq.QConfig) -> bool:
        mem, bound = self.memory(c), self.accuracy_bound(c)
        return any(p.accuracy is not None and p.memory_bytes <= mem and p.accuracy >= bound for p in self.points)

    def try_eval(self, c: ptq.QConfig, phase: str = "network", floor: float | None = None) -> Point | None:
        """Evaluate unless already known to be dominated (then count it as skipped)."""
        if c.key() not in self._cache and self.dominated(c):
            self.skipped += 1
            return None
        return self.eval(c, phase, floor)

    # -- strategies ---------------------------------------------------------------------------
    def boundary(self, ws: list[int], ns: list[int], rounding: str, scheme: str, per_channel: bool,
                 use_limit: bool) -> None:
        """Walk one family's feasibility boundary (see the module docstring)."""
        n_cap = len(ns) - 1
        for w in ws:
            if scheme == "qat" and w < 2:
                continue
            cfg = lambda n, w=w: ptq.QConfig(w, n, rounding, scheme, per_channel)  # noqa: E731
            limit = self.best_memory() if use_limit else math.inf
            cands = [n for n in ns[:n_cap + 1] if self.memory(cfg(n)) < limit]
            if not cands:
                if self.memory(cfg(ns[0])) >= limit:
                    break  # more weight bits only cost more
                continue
            top = self.try_eval(cfg(cands[-1]))
            if not self.accurate(top):
                continue
            lo, hi = 0, len(cands) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if self.accurate(self.try_eval(cfg(cands[mid]))):
                    hi = mid
                else:
                    lo = mid + 1
            n_cap = ns.index(cands[hi])

    def budget_frontier(self, ws: list[int], ns: list[int], rounding: str, scheme: str,
                        per_channel: bool) -> None:
        """For each weight width, the most neuron bits the memory budget allows."""
        for w in ws:
            if scheme == "qat" and w < 2:
                continue
            fits = [n for n in ns if self.memory(ptq.QConfig(w, n, rounding, scheme, per_channel)) <= self.max_memory]
            if not fits:
                break
            self.try_eval(ptq.QConfig(w, fits[-1], rounding, scheme, per_channel))

    def per_layer(self, start: Point, ws: list[int], ns: list[int]) -> None:
        """Greedy per-layer lowering from ``start``: each layer (largest first) gets the fewest bits
        that keep the constraint, found by bisection."""
        floor = self.acc_floor if self.objective != "accuracy" else start.accuracy
        shapes = self.graph.shapes()
        syn = sorted(self.synapses, key=lambda s: -self.graph[s].weight.size)
        neu = sorted(self.neurons, key=lambda n: -math.prod(shapes[n]))
        config = start.config
        for name, space in [(s, ws) for s in syn] + [(n, ns) for n in neu]:
            current = config.weight_bits_for(name) if name in self.synapses else config.neuron_bits_for(name)
            lower = [b for b in space if b < current and not (config.scheme == "qat" and name in self.synapses
                                                               and b < 2)]
            if not lower:
                continue
            cands = lower + [current]
            make = lambda b, name=name, base=config: ptq.QConfig(**{  # noqa: E731
                **base.to_dict(), "layer_bits": {**base.layer_bits, name: b}})
            lo, hi = 0, len(cands) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                p = self.eval(make(cands[mid]), "per-layer", floor)
                if p.feasible:
                    hi = mid
                else:
                    lo = mid + 1
            if cands[hi] != current:
                config = make(cands[hi])


def search(graph: ir.Graph, split: Split | None, max_acc_drop: float = 1.0, max_memory: float | None = None,
           weight_bits: Iterable[int] = range(2, 17), neuron_bits: Iterable[int] = range(4, 25),
           rounding: Iterable[str] = ROUNDING, schemes: Iterable[str] = ("ptq", "qat"), per_layer: bool = False,
           per_channel: bool = True, target: Any | None = None, objective: str | None = None,
           samples: int | None = None, calib_samples: int = 256, qat_epochs: int = 3, qat_lr: float = 5e-4,
           qat_candidates: int = 3, seed: int = 0, progress: bool = False, max_cores: int | None = None,
           max_latency: float | None = None, max_energy: float | None = None) -> SearchResult:
    """Search quantization configurations of ``graph``, evaluated on ``split``'s test set (its
    first ``samples``), on ``target`` when given (see the module docstring).

    ``max_acc_drop`` is in percentage points of accuracy, ``max_memory`` in bytes,
    ``max_cores`` in cores of the target's mapping (Loihi), ``max_latency`` in
    seconds and ``max_energy`` in joules per inference on the target.
    ``objective`` (memory | accuracy | energy | latency | edp) defaults to
    "accuracy" with a memory budget, "energy" with a target, "memory" otherwise.
    When no configuration meets the constraints the result holds the most
    accurate one found, ``met=False`` and a warning.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    ws = bit_list(weight_bits, "weight")
    ns = bit_list(neuron_bits, "neuron", neuron=True)
    # nearest first: it usually sets the best memory early, which prunes the other families
    roundings = sorted((check_rounding(r) for r in dict.fromkeys(rounding)), key=_PREFERENCE.index)
    schemes = list(dict.fromkeys(schemes))
    if not roundings or not schemes:
        raise QuantError(f"empty search space: no {'rounding modes' if not roundings else 'schemes'} to try")
    for s in schemes:
        if s not in ptq.SCHEMES:
            raise QuantError(f"unknown scheme {s!r} (choose from {', '.join(ptq.SCHEMES)})")
    if "qat" in schemes and schemes == ["qat"] and max(ws) < 2:
        raise QuantError("empty search space: QAT needs weight bit widths of at least 2")
    if not max_acc_drop >= 0:
        raise QuantError(f"accuracy tolerance must be >= 0 points, got {max_acc_drop}")
    if max_memory is not None and not max_memory > 0:
        raise QuantError(f"memory budget must be positive, got {max_memory}")
    if split is None or len(split.x_test) == 0:
        raise DataError(f"model '{graph.name}': no data to evaluate the quantized model on")
    graph = graph.copy().validate()
    x = fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    y = split.y_test
    if samples is not None:
        if samples < 1:
            raise DataError(f"samples must be >= 1, got {samples}")
        x, y = x[:samples], y[:samples]
    out_classes = math.prod(graph.shapes()[graph.output.name])
    if int(y.max()) >= out_classes:
        raise DataError(f"dataset '{split.name}' has {int(y.max()) + 1} classes, model '{graph.name}' "
                        f"outputs {out_classes}")
    if "qat" in schemes and len(split.x_train) == 0:
        raise DataError(f"dataset '{split.name}' has no training split for QAT")
    calib_src = split.x_train if len(split.x_train) else split.x_test
    calib = fit_to_model(calib_src[:calib_samples], graph.input_shape, graph.encoding)

    tgt = target
    if isinstance(target, str):
        raise QuantError(f"target must be a Target object (hwmodels.get_target({target!r})), not its name")
    objective = objective or ("accuracy" if max_memory is not None else "energy" if tgt is not None else "memory")
    if objective not in OBJECTIVES:
        raise QuantError(f"unknown objective {objective!r} ({', '.join(OBJECTIVES)})")
    if objective in ("energy", "latency", "edp") and tgt is None:
        raise QuantError(f"the {objective} objective needs a target")
    if objective == "accuracy" and max_memory is None:
        raise QuantError("the accuracy objective needs a memory budget")
    _check_limits(tgt, max_cores, max_latency, max_energy)

    float_graph = graph.copy()
    for n in float_graph.nodes:
        n.precision = {}
    base = evaluate(graph, x, y, tgt, seed=seed)
    if base.accuracy is None:
        raise TargetError(f"target '{tgt.name}' cannot run the float model: {base.error}")
    if max_cores is not None and base.cores is None:
        raise QuantError(f"max_cores: target '{tgt.name}' does not report cores (loihi and loihi2 do)")
    base_mem = memory(float_graph)
    baseline = {"accuracy": base.accuracy, **base_mem, "energy_j": base.energy_j, "latency_s": base.latency_s,
                "cores": base.cores, "precision": "float32"}
    floor = base.accuracy - max_acc_drop / 100

    s = _Searcher(graph, x, y, split, calib, floor, max_memory, objective, tgt, qat_epochs, qat_lr, seed, progress,
                  max_cores=max_cores, max_latency=max_latency, max_energy=max_energy)
    families = [(r, "ptq") for r in roundings] if "ptq" in schemes else []
    warnings: list[str] = []
    try:
        if max_memory is None:
            for i, (r, _) in enumerate(families):  # the first family maps its whole boundary (the front)
                s.boundary(ws, ns, r, "ptq", per_channel, use_limit=i > 0)
            if "qat" in schemes:
                for r in roundings:
                    s.boundary(ws, ns, r, "qat", per_channel, use_limit=True)
        else:
            for r, _ in families:
                s.budget_frontier(ws, ns, r, "ptq", per_channel)
            if "qat" in schemes:
                if families:  # refine the most promising PTQ points
                    top = sorted((p for p in s.points if p.feasible), key=lambda p: -p.accuracy)[:qat_candidates]
                    for p in top:
                        s.try_eval(ptq.QConfig(**{**p.config.to_dict(), "scheme": "qat"}))
                else:
                    for r in roundings:
                        s.budget_frontier(ws, ns, r, "qat", per_channel)
            if not s.points:  # nothing fits: evaluate the smallest configuration to report it
                sch = "ptq" if "ptq" in schemes else "qat"
                s.eval(ptq.QConfig(max(ws[0], 2) if sch == "qat" else ws[0], ns[0], roundings[0], sch, per_channel))
        if not s.points:  # every family skipped (e.g. all columns dominated)
            s.eval(ptq.QConfig(ws[-1], ns[-1], roundings[0], schemes[0], per_channel))
        chosen = s.best()
        if per_layer and chosen is not None:
            s.per_layer(chosen, ws, ns)
            chosen = s.best() or chosen
    finally:
        s.bar.close()
    met = chosen is not None
    if chosen is None:
        ran = [p for p in s.points if p.accuracy is not None]
        if not ran:
            raise TargetError(f"target '{tgt.name}' runs none of the {len(s.points)} configurations evaluated: "
                              f"{s.points[0].rejected_by[0].removeprefix('target: ')}")
        within = [p for p in ran if not p.constrained]     # the most accurate within the hard limits
        chosen = max(within or ran, key=lambda p: (p.accuracy, -p.memory_bytes))
        if max_memory is not None and min(p.memory_bytes for p in s.points) > max_memory:
            warnings.append(f"no configuration fits the memory budget of {max_memory / 1024:g} KB; "
                            f"best found: {chosen.config.label()} with {chosen.memory_bytes / 1024:.2f} KB")
        elif not within:
            warnings.append(f"no configuration meets the constraints ({rejection_counts(s.points)}); "
                            f"best found: {chosen.config.label()} at {100 * chosen.accuracy:.2f}%")
        else:
            limits = f" within the constraints ({rejection_counts(s.points)})" if len(within) < len(ran) else ""
            warnings.append(f"no configuration reaches the accuracy tolerance ({max_acc_drop:g} points below "
                            f"{100 * base.accuracy:.2f}%){limits}; best found: {chosen.config.label()} at "
                            f"{100 * chosen.accuracy:.2f}%")
    elif objective == "accuracy" and chosen.accuracy < floor - 1e-9:
        warnings.append(f"the best configuration within {max_memory / 1024:g} KB, {chosen.config.label()}, "
                        f"loses {100 * (base.accuracy - chosen.accuracy):.2f} points (tolerance {max_acc_drop:g})")
    # the front trades memory for accuracy among the points no other constraint removed
    kept = [i for i, p in enumerate(s.points) if p.accuracy is not None and not p.constrained]
    front = [kept[j] for j in pareto_front([s.points[i].memory_bytes for i in kept],
                                           [s.points[i].accuracy for i in kept])]
    space_size = len(ws) * len(ns) * len(roundings) * len(schemes)
    return SearchResult(
        model=graph.name, dataset=split.name, samples=len(x), objective=objective,
        constraints={"max_acc_drop_points": max_acc_drop, "max_memory_bytes": max_memory, "max_cores": max_cores,
                     "max_latency_s": max_latency, "max_energy_j": max_energy},
        space={"weight_bits": ws, "neuron_bits": ns, "rounding": roundings, "schemes": schemes,
               "per_layer": per_layer, "per_channel": per_channel, "size": space_size,
               "qat_epochs": qat_epochs if "qat" in schemes else None},
        baseline=baseline, evaluated=s.points, chosen=chosen, graph=s.graphs[chosen.config.key()],
        front=front, met=met, warnings=warnings, skipped=s.skipped,
        seconds=time.perf_counter() - start, target=getattr(tgt, "name", None), seed=seed)


def rejection_counts(points: Sequence[Point]) -> str:
    """``"max_cores: 4, max_acc_drop: 2"``: how many points each constraint rejected."""
    counts: dict[str, int] = {}
    for p in points:
        for r in p.rejected_by:
            name = r.split(":", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def _check_limits(tgt, max_cores: int | None, max_latency: float | None, max_energy: float | None) -> None:
    """One clear line for a limit that is not positive or needs a target that was not given."""
    for name, value in (("max_cores", max_cores), ("max_latency", max_latency), ("max_energy", max_energy)):
        if value is None:
            continue
        if tgt is None:
            raise QuantError(f"{name} needs a target (e.g. target='loihi')")
        if not value > 0 or (name == "max_cores" and int(value) != value):
            raise QuantError(f"{name} must be a positive {'integer' if name == 'max_cores' else 'number'}, "
                             f"got {value}")
