"""NIR (Neuromorphic Intermediate Representation) import and export.

NIR neurons are continuous-time ODEs; the IR is discrete-time (see
:mod:`deploy.core.ir`). We discretize with forward Euler and a step ``dt`` (default
1, the IR's unit step), as snnTorch and Norse do::

    NIR LIF      tau dv/dt = (v_leak - v) + r I        IR:  beta = 1 - dt/tau
                                                            input gain  g = r dt / tau
                                                            constant    c = dt v_leak / tau
    NIR IF           dv/dt = r I                            beta = 1, g = r dt
    NIR LI / I   as LIF / IF without spikes                 LI node
    NIR CubaLIF  tau_syn dI/dt = -I + w_in S                alpha = 1 - dt/tau_syn
                 tau_mem dv/dt = (v_leak - v) + r I         beta  = 1 - dt/tau_mem
                                                            g = (w_in dt/tau_syn) (r dt/tau_mem)

The current is updated before the membrane in the same step (snnTorch's
``Synaptic`` order, and the IR's). The IR neuron has no input gain and no
constant drive, so ``g`` scales the weights and bias of the linear/conv layer
that feeds the neuron, and ``c`` is added to that bias; this needs a
linear/conv input used by nothing else (for conv, ``g`` and ``c`` constant
per channel), and for CubaLIF ``v_leak = 0`` unless ``alpha = 0``. Spikes
are ``v > v_threshold`` with reset to ``v_reset``, which must be 0 (the IR's
reset "zero"). Export writes ``tau = dt/(1 - beta)``, ``r = tau/dt`` (so
``g = 1``), ``v_leak = 0``, ``v_reset = 0``; ``beta = 1`` becomes ``IF``
(or ``I`` for a readout). NIR has no reset by subtraction: export stores
``metadata["reset"] = "subtract"`` on those nodes (and ``metadata["reset_delay"]
= True`` for snnTorch's delayed subtraction), which import reads back,
while other NIR tools reset to ``v_reset``; export warns about it.

Multiple edges into a NIR node are summed (an IR ``Add`` node); export writes
an ``Add`` as ``Scale(1)``. A feedback loop (e.g. a LIF whose spikes return to
its input through an Affine, the NIR paper's Braille RNN) must pass through a
neuron: the edge leaving the loop's last neuron becomes a recurrent input, read
one step late (see :mod:`deploy.core.ir`); export writes it as a plain edge.
Graph metadata carries ``dt``, ``timesteps``, ``encoding`` and ``name``; node
metadata carries ``precision``, ``weight_scale`` and conv ``has_bias``.

Time step. NIR stores no step; ``dt`` comes from the caller (``--dt SECONDS``,
``from_nir(path, dt=...)``), else the graph's ``metadata["dt"]`` (this
toolchain's own files), else 1. A ``tau`` that gives a negative decay with that
step (or a decay of exactly 0 with the default) is a one-line error naming the
layer, ``tau`` and a step that works. Exporters' conventions: snnTorch writes
``tau = 1e-4 / (1 - beta)`` (``--dt 1e-4``); norse writes ``tau`` scaled by its
``time_scaling_factor`` 1e-3, so a norse network run at its ``dt = 1e-3`` imports
with ``--dt 1e-6``; Sinabs writes ``IF`` with ``r = 1`` for its unit step (the
default ``dt = 1``).

What real exporters write, and import accepts: Input/Output types with a leading
batch dimension of 1 (norse, nirtorch: ``[1, 64]``; dropped when the first layer
takes fewer dimensions), neuron parameters given once for a layer (0-d or
1-element), per channel or per neuron (with or without a leading 1), torch
tensors in in-memory graphs, ``v_reset`` arrays (all 0), Flatten dims counted
with the batch dimension. Files are read without NIR's own type check (it
rejects norse's batch dimension); shapes are checked here instead, including the
Output node's declared type. Sinabs' ``IAF`` is exported as ``IF``; under NIR's
semantics (one spike per step, reset to 0) it matches ``IAF(spike_fn=SingleSpike,
reset_fn=MembraneReset())``, and with ``metadata["reset"] = "subtract"`` set on the
``IF`` nodes, Sinabs' default subtractive reset (with ``SingleSpike``).
"""

from __future__ import annotations

import heapq
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np

from deploy.core import ir
from deploy.core.errors import ModelError
from deploy.io.atomic import atomic_write

PRODUCER = "neurodeploy"
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
             "LIF", "CubaLIF", "IF", "LI", "I", "Scale (of ones)")


# -- helpers ---------------------------------------------------------------------------
def compact(value: Any, shape: tuple[int, ...]) -> float | np.ndarray:
    """Smallest exact form of a neuron parameter for ``shape``: a float when uniform, one
    value per channel when constant over space, else one per neuron (float32)."""
    full = np.asarray(ir.per_neuron(np.asarray(value, dtype=np.float32), shape), dtype=np.float32)
    if full.size == 0 or np.all(full == full.flat[0]):
        return float(full.flat[0]) if full.size else 0.0
    if len(shape) > 1:
        per_channel = full.reshape(shape[0], -1)
        if np.all(per_channel == per_channel[:, :1]):
            return per_channel[:, 0].copy()
    return full.copy()


def _f32(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in np.atleast_1d(np.asarray(v)))


def _pair(v: Any) -> tuple[int, int]:
    t = _ints(v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


# -- export --------------------------------------------------------------------------
def _full(node: ir.Node, key: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(ir.per_neuron(getattr(node, key), shape), dtype=np.float64)


def _export_neuron(node: ir.Node, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
    beta = _full(node, "beta", shape)
    zeros = np.zeros(shape)
    meta: dict[str, Any] = {}
    if isinstance(node, ir.LI):
        if np.all(beta == 1):
            return nir.I(r=np.full(shape, 1.0 / dt))
        if np.any(beta == 1):
            raise ModelError(f"layer '{node.name}': NIR cannot mix integrators (beta = 1) and "
                             "leaky integrators in one layer")
        tau = dt / (1 - beta)
        return nir.LI(tau=tau, r=tau / dt, v_leak=zeros)
    thr = _full(node, "threshold", shape)
    alpha = _full(node, "alpha", shape)
    if node.reset == "subtract":
        meta["reset"] = "subtract"
        if node.reset_delay:  # snnTorch's delayed subtraction: metadata only, like the reset itself
            meta["reset_delay"] = True
    if np.any(alpha > 0):
        if np.any(alpha == 1) or np.any(beta == 1):
            raise ModelError(f"layer '{node.name}': NIR CubaLIF needs alpha < 1 and beta < 1 "
                             "(finite time constants)")
        tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros,
                           v_threshold=thr, v_reset=zeros.copy(), w_in=tau_syn / dt, metadata=meta)
    if np.all(beta == 1):
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=thr, v_reset=zeros, metadata=meta)
    if np.any(beta == 1):
        raise ModelError(f"layer '{node.name}': NIR cannot mix IF (beta = 1) and LIF neurons in one layer")
    tau = dt / (1 - beta)
    return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=thr, v_reset=zeros.copy(),
                   metadata=meta)


def _export_node(node: ir.Node, shapes: dict[str, tuple[int, ...]], dt: float) -> nir.NIRNode:
    in_shape, shape = shapes[node.inputs[0]], shapes[node.name]
    if isinstance(node, ir.Linear):
        if node.bias is None:
            out: nir.NIRNode = nir.Linear(weight=_f32(node.weight))
        else:
            out = nir.Affine(weight=_f32(node.weight), bias=_f32(node.bias))
    elif isinstance(node, ir.Conv2d):
        bias = _f32(node.bias) if node.bias is not None else np.zeros(node.weight.shape[0], np.float32)
        out = nir.Conv2d(input_shape=in_shape[1:], weight=_f32(node.weight), stride=node.stride,
                         padding=node.padding, dilation=node.dilation, groups=int(node.groups),
                         bias=bias)
        if node.bias is None:
            out.metadata["has_bias"] = 0
    elif isinstance(node, ir.Pool2d):
        cls = {"avg": nir.AvgPool2d, "sum": nir.SumPool2d}.get(node.mode)
        if cls is None:
            raise ModelError(f"layer '{node.name}': NIR has no {node.mode} pooling")
        out = cls(kernel_size=np.array(node.kernel_size), stride=np.array(node.stride),
                  padding=np.array(node.padding))
    elif isinstance(node, ir.Flatten):
        out = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
    elif isinstance(node, ir.Add):
        out = nir.Scale(scale=np.ones(shape, np.float32), metadata={"kind": "add"})
    elif isinstance(node, (ir.LIF, ir.LI)):
        out = _export_neuron(node, shape, dt)
    else:
        raise ModelError(f"layer '{node.name}': layer type '{node.kind}' has no NIR equivalent")
    if node.precision:
        out.metadata["precision"] = {k: int(v) for k, v in node.precision.items()}
    scale = getattr(node, "weight_scale", None)
    if scale is not None:
        out.metadata["weight_scale"] = _f32(scale)
    return out


def to_nir(graph: ir.Graph, dt: float = 1.0) -> nir.NIRGraph:
    """The graph as a ``nir.NIRGraph`` (see the module docstring for the mapping)."""
    shapes = graph.validate().shapes()
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(graph.input_shape)})}
    edges = []
    for n in graph.nodes:
        nodes[n.name] = _export_node(n, shapes, dt)
        edges += [(src, n.name) for src in n.inputs]
    out = "output"
    while out in nodes:
        out += "_"
    nodes[out] = nir.Output(output_type={"output": np.array(shapes[graph.output.name])})
    edges.append((graph.output.name, out))
    subtract = [n.name for n in graph.nodes if isinstance(n, ir.LIF) and n.reset == "subtract"]
    if subtract:
        warnings.warn(f"NIR has no reset by subtraction: layers {', '.join(subtract)} keep "
                      "'subtract' in their metadata (read back by this toolchain); other NIR tools "
                      "reset them to v_reset = 0", UserWarning, stacklevel=2)
    meta = {"producer": PRODUCER, "dt": float(dt), "timesteps": int(graph.timesteps),
            "encoding": graph.encoding, "name": graph.name}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(graph: ir.Graph, path: str | Path, dt: float = 1.0) -> Path:
    """Write ``graph`` as a NIR HDF5 file, atomically."""
    nir_graph = to_nir(graph, dt)
    return atomic_write(path, lambda p: nir.write(p, nir_graph))


def writable(graph: nir.NIRGraph) -> nir.NIRGraph:
    """``graph`` with its 0-d parameters (numpy or torch scalars, as norse's ``to_nir`` writes them)
    as 1-element float32 arrays, which ``nir.write`` (nir 1.0.8) can store; changed in place."""
    for node in graph.nodes.values():
        for key, value in vars(node).items():
            if key not in ("input_type", "output_type", "metadata") and hasattr(value, "shape") \
                    and np.ndim(value) == 0:
                setattr(node, key, np.asarray(value, dtype=np.float32).reshape(1))
    return graph


# -- import --------------------------------------------------------------------------
def read_nir(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` without NIR's type check (norse's batch dimensions fail it; ``from_nir``
    checks shapes itself), every failure turned into one ModelError line."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a NIR file")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        return nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - h5py and nir raise many types on bad files
        raise ModelError(f"{path}: not a readable NIR file ({_first_line(exc)})") from None


def _topo_order(nodes: dict[str, Any], edges: list
                ) -> tuple[list[str], dict[str, list[str]], set[tuple[str, str]]]:
    """Evaluation order, predecessors, and the fed-back edges left out of the order."""
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for edge in edges:
        src, dst = (str(e) for e in edge)
        if src not in nodes or dst not in nodes:
            raise ModelError(f"NIR edge {src} -> {dst} names a node that does not exist")
        if src not in preds[dst]:
            preds[dst].append(src)
            succs[src].append(dst)
    delayed = _feedback_edges(nodes, succs)
    index = {k: i for i, k in enumerate(nodes)}
    indeg = {k: sum((p, k) not in delayed for p in v) for k, v in preds.items()}
    ready = [(index[k], k) for k in nodes if indeg[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(k)
        for s in succs[k]:
            if (k, s) in delayed:
                continue
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, (index[s], s))
    if len(order) < len(nodes):
        stuck = next(k for k in nodes if k not in order)
        raise ModelError(f"NIR graph has a cycle through node '{stuck}' that no neuron delays")
    return order, preds, delayed


NEURONS = (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.I)


def _fed_back(key: str) -> str:
    """Stand-in name of a fed-back NIR node until its layer exists."""
    return f"{key} (fed back)"


def _feedback_edges(nodes: dict[str, Any], succs: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Edges that carry a neuron's previous-step output: one per feedback loop.

    A depth-first walk from the Input finds each loop; the delay goes on the edge
    leaving the loop's last neuron, so the forward path keeps no extra delay (as
    nirtorch, which feeds a node's previous output to nodes that run before it).
    Raises ModelError for a loop with no neuron (no state, no delay)."""
    delayed: set[tuple[str, str]] = set()
    state: dict[str, int] = {}
    roots = sorted(nodes, key=lambda k: not isinstance(nodes[k], nir.Input))
    for root in roots:
        if root in state:
            continue
        path, stack = [root], [iter(succs[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                if any(e in delayed for e in zip(loop[:-1], loop[1:], strict=True)):
                    continue
                cells = [i for i, k in enumerate(loop[:-1]) if isinstance(nodes[k], NEURONS)]
                if not cells:
                    raise ModelError(f"NIR graph has a cycle through node '{nxt}' with no neuron to delay it: "
                                     f"{' -> '.join(loop)}")
                delayed.add((loop[cells[-1]], loop[cells[-1] + 1]))
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succs[nxt]))
    return delayed


@dataclass
class _Neuron:
    """Discrete parameters of one imported NIR neuron layer, before folding."""

    beta: Any
    gain: Any
    const: Any
    threshold: Any = None
    alpha: Any = None
    reset: str = "zero"


def _suggest_dt(tau_min: float) -> float:
    """A step that discretizes ``tau_min`` well: the power of ten at most tau_min / 10."""
    return float(10.0 ** (np.floor(np.log10(tau_min) + 1e-9) - 1))


def _decay(name: str, tau: np.ndarray, dt: float, what: str, dt_from: str) -> np.ndarray:
    """``1 - dt/tau`` per neuron, or a one-line ModelError naming the layer, tau and a dt that works.

    ``dt_from`` says where dt came from: "given" (the caller), "file" (graph metadata) or
    "default" (neither: the unit step, where a decay of exactly 0 is also refused).
    """
    bad = ~np.isfinite(tau) | (tau <= 0)
    if np.any(bad):
        raise ModelError(f"layer '{name}': {what} must be positive and finite, got {tau[bad].flat[0]:g}")
    decay = 1.0 - dt / tau
    if np.all(decay >= 0) and np.all(decay <= 1) and (dt_from != "default" or np.all(decay > 0)):
        return decay
    t_min = float(tau.min())
    ok = _suggest_dt(t_min)
    where = {"given": f"--dt {dt:g}", "file": f"dt = {dt:g} s from the file's metadata",
             "default": f"dt = {dt:g} (the file stores no time step)"}[dt_from]
    bad = 1.0 - dt / t_min
    raise ModelError(f"layer '{name}': {what} = {t_min:g} s with {where} gives decay 1 - dt/{what} = "
                     f"{bad:.6g} ({'negative' if bad < 0 else 'no memory'}); give the step as --dt SECONDS, "
                     f"below {what} (--dt {ok:g} gives decay {1.0 - ok / t_min:.6g}; files from norse "
                     "need norse's dt x 1e-3, from snnTorch 1e-4)")


def _param(name: str, node: nir.NIRNode, key: str, shape: tuple[int, ...], default: float | None = None
           ) -> np.ndarray:
    """Neuron parameter ``key`` of ``node`` as a float64 array of the layer ``shape``.

    Accepts one value for the layer (0-d or 1 element), one per channel, one per neuron, and
    extra leading dimensions of size 1 (a batch dimension some exporters keep)."""
    value = getattr(node, key, None)
    if value is None:
        if default is None:
            raise ModelError(f"layer '{name}': {type(node).__name__} has no {key}")
        value = default
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"layer '{name}': {key} is not numeric") from None
    while arr.ndim > len(shape) and arr.shape[0] == 1:
        arr = arr[0]
    try:
        return np.array(ir.per_neuron(arr, shape), dtype=np.float64)
    except ValueError:
        raise ModelError(f"layer '{name}': {key} of shape {tuple(np.shape(value))} does not fit "
                         f"neurons of shape {shape}") from None


def _neuron_params(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...],
                   dt_from: str = "given") -> _Neuron:
    p = _discretize(name, node, dt, shape, dt_from)
    if not (np.all(np.isfinite(p.gain)) and np.all(np.isfinite(p.const))):
        raise ModelError(f"layer '{name}': r, w_in or v_leak is NaN or inf")
    return p


def _discretize(name: str, node: nir.NIRNode, dt: float, shape: tuple[int, ...], dt_from: str) -> _Neuron:
    arr = lambda key, default=None: _param(name, node, key, shape, default)  # noqa: E731
    meta = node.metadata or {}
    reset = str(meta.get("reset", "zero"))
    if reset not in ir.RESETS:
        raise ModelError(f"layer '{name}': metadata reset {reset!r} is not one of {ir.RESETS}")
    if hasattr(node, "v_reset"):
        v_reset = arr("v_reset", 0.0)
        if np.any(v_reset != 0):
            raise ModelError(f"layer '{name}': v_reset must be 0 (neurons here reset to zero and "
                             f"start at zero), got {v_reset[v_reset != 0].flat[0]:g}")
    if isinstance(node, nir.LIF):
        tau = arr("tau")
        beta = _decay(name, tau, dt, "tau", dt_from)
        return _Neuron(beta, arr("r") * dt / tau, dt * arr("v_leak", 0.0) / tau, arr("v_threshold"),
                       reset=reset)
    if isinstance(node, nir.IF):
        return _Neuron(1.0, arr("r") * dt, 0.0, arr("v_threshold"), reset=reset)
    if isinstance(node, nir.CubaLIF):
        tau_syn, tau_mem = arr("tau_syn"), arr("tau_mem")
        alpha = _decay(name, tau_syn, dt, "tau_syn", dt_from)
        beta = _decay(name, tau_mem, dt, "tau_mem", dt_from)
        gain = arr("w_in", 1.0) * dt / tau_syn * arr("r") * dt / tau_mem
        const = dt * arr("v_leak", 0.0) / tau_mem
        if np.any(const != 0) and np.any(alpha != 0):
            raise ModelError(f"layer '{name}': CubaLIF with v_leak != 0 and a synaptic current is "
                             "not supported")
        return _Neuron(beta, gain, const, arr("v_threshold"), alpha=alpha, reset=reset)
    if isinstance(node, nir.LI):
        tau = arr("tau")
        beta = _decay(name, tau, dt, "tau", dt_from)
        return _Neuron(beta, arr("r") * dt / tau, dt * arr("v_leak", 0.0) / tau)
    return _Neuron(1.0, arr("r") * dt, 0.0)  # nir.I


def _resolve_dt(dt: Any, meta: dict) -> tuple[float, str]:
    """The step (seconds) and where it came from: "given", "file" (metadata) or "default" (1)."""
    dt, dt_from = ((dt, "given") if dt is not None else (meta["dt"], "file") if meta.get("dt") is not None
                   else (1.0, "default"))
    try:
        value = float(np.asarray(dt, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ModelError(f"dt must be a positive number of seconds (--dt SECONDS), got {dt!r}")
    return value, dt_from


def _batch_free(shape: tuple[int, ...], rank: int | None) -> tuple[int, ...]:
    """``shape`` without leading 1s beyond ``rank`` dimensions (a batch dimension exporters keep)."""
    while rank is not None and len(shape) > rank and shape[0] == 1:
        shape = shape[1:]
    return shape


def _rank_taken(node: nir.NIRNode) -> int | None:
    """How many dimensions ``node`` takes as input, when its parameters say so."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return 1
    if isinstance(node, (nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)):
        return 3
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.I)):
        value = np.asarray(getattr(node, "r", None) if getattr(node, "r", None) is not None else 0.0)
        return value.ndim if value.size > 1 else None
    return None


def _input_shape(shape: tuple[int, ...], consumers: list[nir.NIRNode]) -> tuple[int, ...]:
    """The Input type without a leading batch dimension of 1 (norse and nirtorch write ``[1, 64]``)."""
    ranks = [r for r in map(_rank_taken, consumers) if r is not None]
    return _batch_free(shape, min(ranks) if ranks else None)


def _check_output(origin: str, key: str, node: nir.Output, computed: tuple[int, ...]) -> None:
    """The Output node's declared type (leading batch 1s aside) must be what the graph computes."""
    declared = (getattr(node, "output_type", None) or {}).get("output")
    if declared is None or np.size(declared) == 0:
        return
    want = _batch_free(_ints(declared), len(computed))
    if want != tuple(computed):
        raise ModelError(f"{origin}: NIR Output node '{key}' declares shape {want}, but the layers "
                         f"before it compute {tuple(computed)}")


def _flatten_ok(node: nir.Flatten, shape: tuple[int, ...]) -> bool:
    declared = (getattr(node, "input_type", None) or {}).get("input")
    if declared is not None and np.size(declared) == len(shape) + 1 and int(np.ravel(declared)[0]) == 1:
        shape = (1, *shape)  # start_dim/end_dim count the exporter's batch dimension
    nd = len(shape)
    start, end = int(node.start_dim) % nd, int(node.end_dim) % nd
    return all(s == 1 for i, s in enumerate(shape) if i < start or i > end)


def _conv_padding(name: str, node: nir.Conv2d) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, (str, bytes)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad == "valid":
            return (0, 0)
        k, d = np.asarray(node.weight).shape[2:], _pair(node.dilation)
        if pad == "same" and all(s == 1 for s in _ints(node.stride)) and all(x % 2 for x in k):
            return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        raise ModelError(f"layer '{name}': padding {pad!r} is only supported for odd kernels, stride 1")
    return _pair(pad)


def _import_synapse(name: str, node: nir.NIRNode, inputs: list[str]) -> ir.Node:
    meta = node.metadata or {}
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _f32(node.weight)
        if w.ndim != 2:
            raise ModelError(f"layer '{name}': {type(node).__name__} weight must be 2-D, got shape {w.shape}")
        bias = _f32(node.bias) if isinstance(node, nir.Affine) else None
        out: ir.Node = ir.Linear(name, inputs, weight=w, bias=bias)
    elif isinstance(node, nir.Conv2d):
        w = _f32(node.weight)
        if w.ndim != 4:
            raise ModelError(f"layer '{name}': Conv2d weight must be 4-D, got shape {w.shape}")
        bias = _f32(node.bias) if node.bias is not None else None
        if bias is not None and int(meta.get("has_bias", 1)) == 0 and not np.any(bias):
            bias = None
        out = ir.Conv2d(name, inputs, weight=w, bias=bias, stride=_pair(node.stride),
                        padding=_conv_padding(name, node), dilation=_pair(node.dilation),
                        groups=int(np.asarray(node.groups)))
    else:
        mode = "sum" if isinstance(node, nir.SumPool2d) else "avg"
        out = ir.Pool2d(name, inputs, mode=mode, kernel_size=_pair(node.kernel_size),
                        stride=_pair(node.stride), padding=_pair(node.padding))
    if "weight_scale" in meta and hasattr(out, "weight_scale"):
        out.weight_scale = _f32(meta["weight_scale"])
    return out


def _fold(graph_nodes: list[ir.Node], neuron: ir.Node, gain: np.ndarray, const: np.ndarray,
          shape: tuple[int, ...]) -> None:
    """Fold a neuron's input gain and constant drive into the synapse that feeds it, or into
    every synapse of a sum feeding only it (e.g. feed-forward plus recurrent input)."""
    if np.all(gain == 1) and np.all(const == 0):
        return
    src = neuron.inputs[0]
    head = next((n for n in graph_nodes if n.name == src), None)
    if isinstance(head, ir.Add) and [n.name for n in graph_nodes if src in n.inputs] == [neuron.name]:
        for k, branch in enumerate(head.inputs):
            _fold_into(graph_nodes, neuron, head.name, branch, gain, const * (k == 0), shape)
        return
    _fold_into(graph_nodes, neuron, neuron.name, src, gain, const, shape)


def _fold_into(graph_nodes: list[ir.Node], neuron: ir.Node, user: str, src: str, gain: np.ndarray,
               const: np.ndarray, shape: tuple[int, ...]) -> None:
    syn = next((n for n in graph_nodes if n.name == src), None)
    users = [n.name for n in graph_nodes if src in n.inputs]
    if syn is None or syn.kind not in ir.SYNAPSE_KINDS or users != [user]:
        raise ModelError(f"layer '{neuron.name}': its input gain r*dt/tau or leak v_leak needs a "
                         f"linear/conv input used by nothing else, and '{src}' is not one")
    if isinstance(syn, ir.Conv2d):
        g, c = compact(gain, shape), compact(const, shape)
        if any(isinstance(v, np.ndarray) and v.ndim > 1 for v in (g, c)):
            raise ModelError(f"layer '{neuron.name}': input gain and leak must be constant per "
                             f"channel to fold into conv '{src}'")
        g = np.broadcast_to(np.asarray(g, np.float64), (shape[0],))
        c = np.broadcast_to(np.asarray(c, np.float64), (shape[0],))
    else:
        g, c = gain.reshape(-1), const.reshape(-1)
    w = syn.weight.astype(np.float64)
    syn.weight = _f32(w * g.reshape(-1, *[1] * (w.ndim - 1)))
    bias = np.zeros(w.shape[0]) if syn.bias is None else syn.bias.astype(np.float64)
    syn.bias = _f32(bias * g + c)
    if getattr(syn, "weight_scale", None) is not None:
        syn.weight_scale = _f32(syn.weight_scale * g)


def from_nir(graph_or_path: nir.NIRGraph | str | Path, dt: float | None = None,
             timesteps: int | None = None, encoding: str | None = None) -> ir.Graph:
    """Import a NIR graph (object or file) as an IR Graph.

    ``dt`` (seconds) discretizes the time constants; it defaults to the file's
    ``metadata["dt"]``, else 1 (see the module docstring for exporters' conventions).
    Raises ModelError naming the offending node."""
    if isinstance(graph_or_path, (str, Path)):
        origin, g = str(graph_or_path), read_nir(graph_or_path)
    elif isinstance(graph_or_path, nir.NIRGraph):
        origin, g = "NIR graph", graph_or_path
    else:
        raise ModelError(f"expected a NIR graph or file, got {type(graph_or_path).__name__}")
    meta = dict(g.metadata or {}) if isinstance(g.metadata, dict) else {}
    dt, dt_from = _resolve_dt(dt, meta)
    order, preds, delayed = _topo_order(g.nodes, g.edges)
    ins = [k for k in order if isinstance(g.nodes[k], nir.Input)]
    outs = [k for k in order if isinstance(g.nodes[k], nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise ModelError(f"{origin}: NIR graph needs exactly one Input and one Output node, "
                         f"found {len(ins)} and {len(outs)}")
    in_shape = g.nodes[ins[0]].input_type.get("input")
    if in_shape is None:
        raise ModelError(f"{origin}: NIR Input node '{ins[0]}' has no shape")
    shapes: dict[str, tuple[int, ...]] = {"input": _input_shape(_ints(in_shape), [
        g.nodes[k] for k in order if ins[0] in preds[k]])}
    ref: dict[str, str] = {ins[0]: "input"}
    nodes: list[ir.Node] = []
    folds: list[tuple[ir.Node, np.ndarray, np.ndarray, tuple[int, ...]]] = []

    def add(node: ir.Node) -> None:
        in_shapes = ir.input_shapes(node, shapes)
        node.validate(in_shapes)
        shapes[node.name] = tuple(int(s) for s in node.out_shape(in_shapes))
        nodes.append(node)

    def unique(key: str) -> str:
        name = key.replace(".", "_") or "node"
        while name in shapes:
            name += "_"
        return name

    for key in order:
        node = g.nodes[key]
        if key in ins or key in outs:
            continue
        name, srcs = unique(key), [_fed_back(p) if (p, key) in delayed else ref[p] for p in preds[key]]
        late = [_fed_back(p) for p in preds[key] if (p, key) in delayed]
        kind = type(node).__name__
        if not srcs:
            raise ModelError(f"layer '{name}': NIR node has no input")
        if late and not (len(srcs) > 1 or isinstance(node, (nir.Affine, nir.Linear))):
            raise ModelError(f"layer '{name}': a fed-back neuron output must enter through an Affine/Linear "
                             f"node or a sum of inputs, not {kind}")
        if isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1):
            if len(srcs) == 1:
                ref[key] = srcs[0]
            else:
                add(ir.Add(name, srcs, recurrent=late))
                ref[key] = name
            continue
        if len(srcs) > 1:
            add(ir.Add(unique(f"{key}_sum"), srcs, recurrent=late))
            srcs, late = [nodes[-1].name], []
        shape = shapes.get(srcs[0], ())
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)):
            new = _import_synapse(name, node, srcs)
        elif isinstance(node, nir.Flatten):
            if not _flatten_ok(node, shape):
                raise ModelError(f"layer '{name}': Flatten(start_dim={node.start_dim}, "
                                 f"end_dim={node.end_dim}) of {shape} is not a full flatten")
            new = ir.Flatten(name, srcs)
        elif isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF, nir.LI, nir.I)):
            p = _neuron_params(name, node, dt, shape, dt_from)
            try:
                if isinstance(node, (nir.LI, nir.I)):
                    new = ir.LI(name, srcs, beta=compact(p.beta, shape))
                else:
                    new = ir.LIF(name, srcs, beta=compact(p.beta, shape), reset=p.reset,
                                 reset_delay=p.reset == "subtract" and bool((node.metadata or {}).get(
                                     "reset_delay", False)),
                                 threshold=compact(p.threshold, shape),
                                 alpha=compact(0.0 if p.alpha is None else p.alpha, shape))
                gain = np.array(np.broadcast_to(p.gain, shape), dtype=np.float64)
                const = np.array(np.broadcast_to(p.const, shape), dtype=np.float64)
            except ValueError:
                raise ModelError(f"layer '{name}': {kind} parameters do not fit neurons of shape "
                                 f"{shape}") from None
            folds.append((new, gain, const, shape))
        else:
            raise ModelError(f"layer '{name}': NIR node type {kind} is not supported "
                             f"(supported: {', '.join(SUPPORTED)})")
        precision = (node.metadata or {}).get("precision")
        if isinstance(precision, dict):
            new.precision = {str(k): int(v) for k, v in precision.items()}
        new.recurrent = late
        add(new)
        ref[key] = name
    out_srcs = [ref[p] for p in preds[outs[0]]]
    if len(out_srcs) > 1:
        add(ir.Add(unique("output_sum"), out_srcs))
        out_srcs = [nodes[-1].name]
    if not out_srcs or out_srcs[0] == "input":
        raise ModelError(f"{origin}: NIR graph has no layers between Input and Output")
    _check_output(origin, outs[0], g.nodes[outs[0]], shapes[out_srcs[0]])
    back = {_fed_back(p): ref[p] for p, _ in delayed}
    for n in nodes:  # fed-back inputs now name the neuron layers they read
        n.inputs, n.recurrent = [back.get(i, i) for i in n.inputs], [back[i] for i in n.recurrent]
    for neuron, gain, const, shape in folds:
        _fold(nodes, neuron, gain, const, shape)
    nodes = _ending_at(nodes, out_srcs[0])
    graph = ir.Graph(input_shape=shapes["input"], nodes=nodes,
                     timesteps=int(timesteps or meta.get("timesteps", 8)),
                     encoding=str(encoding or meta.get("encoding", "direct")),
                     name=str(meta.get("name", Path(origin).stem if origin != "NIR graph" else "model")),
                     meta={"source": origin, "nir_dt": dt})
    return graph.validate()


def _ending_at(nodes: list[ir.Node], out: str) -> list[ir.Node]:
    """Keep the ancestors of ``out`` (in order) and put ``out`` last."""
    by_name = {n.name: n for n in nodes}
    keep, stack = set(), [out]
    while stack:
        name = stack.pop()
        if name in by_name and name not in keep:
            keep.add(name)
            stack += by_name[name].inputs
    dropped = [n.name for n in nodes if n.name not in keep]
    if dropped:
        warnings.warn(f"NIR import: layers {', '.join(dropped)} do not reach the output and are "
                      "dropped", UserWarning, stacklevel=3)
    return [n for n in nodes if n.name in keep and n.name != out] + [by_name[out]]
