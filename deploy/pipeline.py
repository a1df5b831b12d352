"""compile = load -> map -> simulate -> cost -> report.

``compile(model, target=...)`` is the Python form of ``deploy compile``; every
option of the command is a keyword here.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy import __version__
from deploy.core import budget, ir
from deploy.core.device import resolve_device
from deploy.core.errors import DataError, DeployError, ModelError
from deploy.core.metrics import (
    Activity,
    assumed_activity,
    layer_memory,
    memory_totals,
    neurobench_footprint,
)
from deploy.report import health
from deploy.report.costs import latency_path, memory_split, split_totals
from deploy.report.schema import (
    Accuracy,
    Breakdown,
    Comparison,
    LayerRow,
    Metrics,
    ModelInfo,
    Report,
    TargetInfo,
    Totals,
)
from hwmodels import get_target, target_class
from hwmodels.base import Cost, Target, simulate_float

ModelLike = str | Path | ir.Graph | torch.nn.Module


def check_model_options(dt: float | None = None, encoding: str | None = None,
                        timesteps: int | None = None) -> None:
    """Raise a one-line DeployError for a bad ``dt`` (> 0 s), ``encoding`` or ``timesteps`` (>= 1)."""
    if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise DeployError(f"--dt must be a positive, finite number of seconds, got {dt}")
    if encoding is not None and encoding not in ir.ENCODINGS:
        raise DeployError(f"--encoding must be one of {', '.join(ir.ENCODINGS)}, got {encoding!r}")
    if timesteps is not None and int(timesteps) < 1:
        raise DeployError(f"--timesteps must be >= 1, got {timesteps}")


def is_nir_source(model: ModelLike) -> bool:
    """True when ``model`` is a path to a NIR file (by suffix or HDF5 signature)."""
    from deploy.io.loader import _HDF5_MAGIC, NIR_SUFFIXES

    if not isinstance(model, (str, Path)):
        return False
    path = Path(model)
    if path.suffix.lower() in NIR_SUFFIXES:
        return True
    if path.is_file():
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_MAGIC
    return False


def resolve_model(model: ModelLike, trust_pickle: bool = False, weights: str | None = None, *,
                  dt: float | None = None, encoding: str | None = None,
                  timesteps: int | None = None) -> ir.Graph:
    """A Graph from a path (any supported format), a Graph, or a SpikingNet.

    ``dt`` (seconds) discretizes a NIR file's time constants; ``encoding`` and
    ``timesteps`` override what the model stores.
    """
    check_model_options(dt, encoding, timesteps)
    if dt is not None and not is_nir_source(model):
        raise ModelError(f"--dt applies to NIR models only; {_label(model)} stores discrete-time parameters")
    if isinstance(model, ir.Graph):
        graph = model.copy()
    elif isinstance(model, torch.nn.Module) and hasattr(model, "to_graph"):
        graph = model.to_graph()
    elif isinstance(model, torch.nn.Module):
        from deploy.io.loader import from_torch

        graph = from_torch(model, timesteps=timesteps, encoding=encoding or "direct")
    else:
        from deploy.io.loader import load_model

        kw = {"dt": dt} if dt is not None else {}
        return load_model(str(model), trust_pickle=trust_pickle, weights=weights, timesteps=timesteps,
                          encoding=encoding, **kw)
    if timesteps is not None:
        graph.timesteps = int(timesteps)
    if encoding is not None:
        graph.encoding = encoding
    return graph.validate()


def _label(model: ModelLike) -> str:
    return str(model) if isinstance(model, (str, Path)) else f"a {type(model).__name__}"


@dataclass
class EvalSet:
    """Test samples shaped for a model, with the dataset's name and, for a file, its name and hash."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    file: str | None = None
    sha256: str | None = None


def load_test_set(graph: ir.Graph, data: str | Path | tuple[torch.Tensor, torch.Tensor],
                  samples: int | None = None, seed: int = 0, fixed_encoding: bool = False) -> EvalSet:
    """The test samples of ``data`` (a dataset name, a data file, or an (x, y) tuple) shaped for
    ``graph``. Event frames on a direct-encoded model whose encoding was not fixed switch
    ``graph.encoding`` to ``events``, so the report states the encoding used."""
    from deploy import userdata

    file = digest = None
    if samples is not None and samples < 1:
        raise DataError(f"--samples must be >= 1, got {samples}")
    if isinstance(data, tuple):
        if len(data) != 2:
            raise DataError(f"data must be a dataset name, a file or an (x, y) tuple, got {len(data)} items")
        name, (x, y) = "user data", (torch.as_tensor(data[0]).float(), torch.as_tensor(data[1]).long())
    elif userdata.is_data_file(data):
        ud = userdata.read(data, graph.timesteps, graph.input_shape)
        name, x, y, file, digest = ud.file, ud.x, ud.y, str(data), ud.sha256
    else:
        split = userdata.split_for(graph, str(data), seed, n_train=0, n_test=samples or 64,
                                   fixed_encoding=fixed_encoding)
        name = "events (synthetic, 50% activity)" if data == "events" else f"{data} (test split)"
        x, y = split.x_test, split.y_test
    x, graph.encoding = userdata.fit(x, graph.input_shape, graph.timesteps, graph.encoding, fixed_encoding,
                                     graph.name)
    if samples is not None:
        x, y = x[:samples], y[:samples]
    out_classes = int(np.prod(graph.shapes()[graph.output.name]))
    if int(y.max()) >= out_classes:
        raise DataError(f"dataset has {int(y.max()) + 1} classes, model outputs {out_classes}")
    return EvalSet(name, x, y, file, digest)


def _sha256(model: ModelLike, graph: ir.Graph) -> str:
    if isinstance(model, (str, Path)):
        path = Path(str(model).split(":")[0]) if not Path(str(model)).exists() else Path(model)
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    # an in-memory graph: its architecture as JSON, then every tensor's name, dtype, shape and bytes
    arch, tensors = graph.to_dict()
    h = hashlib.sha256(json.dumps(arch, sort_keys=True, default=str).encode())
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _run_target(tgt: Target, graph: ir.Graph, x: torch.Tensor | None, rate: float, seed: int,
                batch_size: int, progress: bool, max_memory: int | str | None = None,
                device: str | torch.device = "cpu") -> tuple[Any, Activity, Cost]:
    """map -> calibrate (an explicit step, on the first batch) -> simulate (on ``device``) -> cost."""
    with budget.limit(max_memory):   # the target's own checks (e.g. in map) see the same limit
        mapping = tgt.map(graph)
    if x is None:
        activity = assumed_activity(mapping.graph, rate)
    else:
        mapping = tgt.calibrate(mapping, x, batch_size)
        gen = torch.Generator().manual_seed(seed)
        on = {"device": device} if tgt.runs_on_device else {}    # the others run on the CPU only
        activity = tgt.simulate(mapping, x, batch_size=batch_size, generator=gen, progress=progress, **on)
    return mapping, activity, tgt.cost(mapping, activity)


#: memory the recorded activations of one simulated batch may take when no batch size is given
SIM_BATCH_BYTES = 256 * 1024 ** 2
#: the largest batch chosen automatically (the former fixed default; larger batches barely speed up a CPU run)
MAX_AUTO_BATCH = 128


def auto_batch_size(graph: ir.Graph, targets: list[str], samples: int | None = None,
                    max_memory: int | str | None = None) -> int:
    """The batch size whose simulation fits :data:`SIM_BATCH_BYTES` (and a quarter of the memory
    limit), by :func:`deploy.core.budget.estimate_bytes` per sample on the most demanding of
    ``targets``; at most ``samples`` and :data:`MAX_AUTO_BATCH`, at least 1. Peak memory then
    depends on the network and this budget, not on the number of samples."""
    per_sample = max(budget.estimate_bytes(graph, 1, graph.timesteps, t).parts.get("simulation", 0.0)
                     for t in targets)
    limit = budget.current_limit() if max_memory is None else budget.parse_size(max_memory)
    room = min(SIM_BATCH_BYTES, limit // 4)
    fits = int(room // per_sample) if per_sample > 0 else MAX_AUTO_BATCH
    return max(1, min(MAX_AUTO_BATCH, samples or MAX_AUTO_BATCH, fits))


def _check_device(device: torch.device, targets: list[Target | type[Target]]) -> None:
    """Refuse ``device`` (not the CPU) for a target that simulates on the CPU only."""
    for t in targets:
        if not t.runs_on_device:
            raise DeployError(f"--device {device}: target '{t.name}' simulates on the CPU only; "
                              "run it without --device")


def _totals(cost: Cost, activity: Activity, graph: ir.Graph) -> Totals:
    base, overheads = split_totals(memory_split(graph, cost))
    return Totals(energy_j=cost.energy_j, latency_s=cost.latency_s, memory_bytes=cost.memory_bytes,
                  synops=activity.total("synops_effective"), spikes=activity.total("spikes"),
                  area_mm2=cost.area_mm2, memory_base_bytes=base, memory_overhead_bytes=overheads)


def _breakdown(cost: Cost) -> Breakdown:
    return Breakdown(energy_j=cost.energy_breakdown(), latency_s=dict(cost.latency_breakdown_s))


def compile(model: ModelLike, target: str | Target = "digital",
            data: str | tuple[torch.Tensor, torch.Tensor] | None = "digits", samples: int | None = None,
            timesteps: int | None = None, config: str | None = None, compare: str | None = None,
            seed: int = 0, rate: float = 0.1, batch_size: int | None = None, progress: bool = False,
            trust_pickle: bool = False, weights: str | None = None, dt: float | None = None,
            encoding: str | None = None, split_seed: int = 0, max_memory: int | str | None = None,
            reference: bool = True, device: str | torch.device = "cpu") -> Report:
    """Map ``model`` onto ``target``, simulate it on ``data`` and report its costs.

    ``data``: a dataset name (digits | mnist | events), a data file (.npz, .pt,
    .h5; see :mod:`deploy.userdata`) or an ``(x, y)`` tuple. ``dt`` (seconds)
    discretizes a NIR model; ``encoding`` and ``timesteps`` override the model's.

    ``data=None`` switches to assumed-rate mode: every spiking layer fires at
    ``rate`` (1.0 is the worst case) and no accuracy is reported.
    ``compare`` costs the same model and inputs on a second target and fills
    ``report.comparison`` (ratios = compared / this).

    ``seed`` seeds the simulation (device noise, stochastic rounding, rate/latency input
    spikes); ``split_seed`` the data: the digits/MNIST test split (README: 0) and the
    synthetic event streams, so another ``seed`` tests on the same samples.

    ``batch_size`` samples are simulated at a time (None: chosen by :func:`auto_batch_size` from
    a memory budget); only per-layer statistics are kept between batches. ``reference=False``
    skips the float reference run (``accuracy.reference`` is then None); otherwise it runs once,
    or not at all when this or the compared target simulates in float anyway (its run is reused).

    ``device`` (a torch device: cpu, cuda, cuda:1, ...) runs the simulations of the targets that
    can (:attr:`~hwmodels.base.Target.runs_on_device`: digital, imc, imc-adc) and the float
    reference there; a device that is not present, or a target that runs on the CPU only
    (loihi, loihi2), is refused before any work. Activity and predictions come back to the CPU.
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    if dev.type != "cpu":
        _check_device(dev, [target_class(target) if isinstance(target, str) else target]
                      + ([target_class(compare)] if compare else []))
    torch.manual_seed(seed)
    graph = resolve_model(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    if not 0 <= rate <= 1:
        raise DeployError(f"--rate must lie in [0, 1], got {rate}")
    tgt = get_target(target, config) if isinstance(target, str) else target
    targets = [tgt.name] + ([compare] if compare else [])
    if batch_size is None:
        batch_size = auto_batch_size(graph, targets, samples if data is not None else 1, max_memory)
    _check_memory(graph, targets, data, samples, batch_size, max_memory)

    x = y = None
    accuracy = None
    if data is not None:
        ts = load_test_set(graph, data, samples, split_seed, fixed_encoding=encoding is not None)
        data_name, x, y = ts.name, ts.x, ts.y
    mapping, activity, cost = _run_target(tgt, graph, x, rate, seed, batch_size, progress, max_memory, dev)
    ref = activity if x is not None and tgt.simulates_float(mapping) else None

    comparison = o_act = None
    if compare:
        other = get_target(compare, config if _shares_spec(tgt, compare) else None)
        o_map, o_act, o_cost = _run_target(other, graph, x, rate, seed, batch_size, progress, max_memory, dev)
        if ref is None and x is not None and other.simulates_float(o_map):
            ref = o_act
        ratios = {"energy": _ratio(o_cost.energy_j, cost.energy_j),
                  "latency": _ratio(o_cost.latency_s, cost.latency_s),
                  "memory": _ratio(o_cost.memory_bytes, cost.memory_bytes)}
        comparison = Comparison(target=other.name, totals=_totals(o_cost, o_act, graph), breakdown=_breakdown(o_cost),
                                accuracy_deployed=o_act.accuracy(y) if y is not None else None,
                                ratios=ratios, this_target=tgt.name,
                                this_accuracy_deployed=activity.accuracy(y) if y is not None else None,
                                this_spikes=activity.total("spikes"), spikes=o_act.total("spikes"),
                                layer_spikes={k: la.spikes for k, la in o_act.layers.items() if la.kind == "lif"})
    if x is not None:
        if reference and ref is None:
            # the reference is the float model: float32 neurons on the stored weights, whatever
            # precision the graph records (the target's run above is the bit-true one)
            ref = simulate_float(graph, x, batch_size, torch.Generator().manual_seed(seed), device=dev)
        accuracy = Accuracy(dataset=data_name, samples=len(x), reference=ref.accuracy(y) if reference else None,
                            deployed=activity.accuracy(y), file=ts.file, sha256=ts.sha256)

    mode = "activity" if x is not None else "assumed-rate"
    assumptions = list(cost.assumptions)
    if x is None:
        assumptions.insert(0, f"no data: every spiking layer fires at an assumed rate of {rate:g} per step"
                              + (" (worst case)" if rate == 1 else "")
                              + ("; analog inputs count as dense" if graph.encoding == "direct" else ""))
    else:
        assumptions.insert(0, f"activity-driven: simulated spikes of {len(x)} samples of {data_name}, "
                              "energies and latencies are per inference")
    report = Report(
        model=_model_info(model, graph),
        target=TargetInfo(description=tgt.description, spec_file=tgt.spec.path, **{
            k: v for k, v in tgt.describe().items() if k in ("name", "options", "spec")}),
        mode=mode, accuracy=accuracy, totals=_totals(cost, activity, graph), breakdown=_breakdown(cost),
        metrics=_metrics(graph, activity), layers=_layer_rows(mapping.graph, cost, activity, graph),
        comparison=comparison, assumptions=assumptions, latency=latency_path(cost),
        run={"seed": seed, "samples": len(x) if x is not None else 0, "duration_s": time.perf_counter() - start,
             "version": __version__, "rate": rate if x is None else None, "split_seed": split_seed,
             **({"device": str(dev)} if dev.type != "cpu" else {})})
    report.warnings = health.check(report, activity, o_act, graph)
    return report


def _check_memory(graph: ir.Graph, targets: list[str], data: Any, samples: int | None, batch_size: int,
                  max_memory: int | str | None) -> None:
    """Refuse a run whose estimated memory (:func:`deploy.core.budget.estimate_bytes`) exceeds the limit."""
    if batch_size < 1:
        raise DeployError(f"--batch-size must be >= 1, got {batch_size}")
    batch = 0 if data is None else min(batch_size, samples or batch_size)
    events = (samples or 64) if isinstance(data, str) and data == "events" else 0
    est = budget.Estimate()
    for name in targets:
        est = est + budget.estimate_bytes(graph, batch, graph.timesteps, name, events)
    budget.check_budget(est, f"model '{graph.name}' on {' and '.join(targets)}",
                        None if max_memory is None else budget.parse_size(max_memory))


def _shares_spec(tgt: Target, other: str) -> bool:
    from hwmodels import target_class

    return getattr(target_class(other), "spec_name", None) == tgt.spec_name


def _ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is zero (JSON has no infinity)."""
    return float(a / b) if b else None


def _model_info(model: ModelLike, graph: ir.Graph) -> ModelInfo:
    source = str(model) if isinstance(model, (str, Path)) else graph.meta.get("source", type(model).__name__)
    precision = {n.name: dict(n.precision) for n in graph.nodes if n.precision}
    return ModelInfo(name=graph.name, source=source, params=graph.params(), timesteps=graph.timesteps,
                     input_shape=list(graph.input_shape), encoding=graph.encoding,
                     sha256=_sha256(model, graph), precision=precision)


def _metrics(graph: ir.Graph, activity: Activity) -> Metrics:
    syn = [la for la in activity.layers.values() if la.kind in ir.SYNAPSE_KINDS]
    return Metrics(params=graph.params(), footprint_bytes=memory_totals(graph)["memory_bytes"],
                   footprint_neurobench_bytes=neurobench_footprint(graph),
                   activation_sparsity=activity.sparsity(),
                   synops_dense=float(sum(la.synops_dense for la in syn)),
                   synops_effective_macs=float(sum(la.synops_effective for la in syn if not la.binary_input)),
                   synops_effective_acs=float(sum(la.synops_effective for la in syn if la.binary_input)))


def _layer_rows(graph: ir.Graph, cost: Cost, activity: Activity, model: ir.Graph) -> list[LayerRow]:
    """One row per cost layer; memory split into the model's (``model``, the graph as given) and
    the target's named overheads."""
    shapes, memory = graph.shapes(), memory_split(model, cost)
    rows = []
    for lc in cost.layers:
        la = activity.layers.get(lc.name)
        rows.append(LayerRow(
            name=lc.name, kind=lc.kind, shape=list(shapes.get(lc.name, ())), energy_j=lc.energy_total_j,
            latency_s=lc.latency_s, memory_bytes=lc.memory_bytes,
            synops=la.synops_effective if la else 0.0, spike_rate=la.spike_rate if la else 0.0,
            energy_breakdown_j=dict(lc.energy_j), resources=_jsonable(lc.resources),
            memory_base_bytes=memory[lc.name][0], memory_overhead_bytes=memory[lc.name][1]))
    return rows


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def inspect(model: ModelLike, trust_pickle: bool = False, weights: str | None = None, *,
            dt: float | None = None, encoding: str | None = None,
            timesteps: int | None = None) -> dict[str, Any]:
    """Graph summary without simulating: rows per layer and totals at the stored precision.

    ``memory_bytes`` per row is the one memory definition (weights at stored precision
    + neuron parameters + neuron state, :func:`deploy.core.metrics.layer_memory`), split
    into ``weight_bytes``, ``neuron_param_bytes`` and ``state_bytes``.
    """
    graph = resolve_model(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    rows, memory = graph.summary_rows(), layer_memory(graph)
    for r in rows:
        m = memory[r["name"]]
        r.update(memory_bytes=m.total, weight_bytes=m.weights, neuron_param_bytes=m.neuron_params,
                 state_bytes=m.state)
    return {"name": graph.name, "input_shape": graph.input_shape, "timesteps": graph.timesteps,
            "encoding": graph.encoding, "layers": rows, "params": graph.params(),
            "memory_bytes": float(sum(r["memory_bytes"] for r in rows)), "graph": graph}
