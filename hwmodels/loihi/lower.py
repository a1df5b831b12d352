"""Lowering a Graph to Loihi structure: LIF populations joined by weighted connections.

Every LIF node becomes a population. Its input is traced back through
stateless linear nodes (linear, conv2d, pool2d avg/sum, flatten) to the
previous population or the network input; each such path is one connection.
An ``add`` in front of a LIF sums several paths into the same ``a_in`` (the
identity shortcut of a residual block is a path with no node: an identity
matrix). A path that is exactly one conv2d stays a convolution; any other
path is folded into one dense matrix by probing it with unit inputs, except a
non-overlapping avg/sum pool followed by a conv, which becomes one strided conv.
A max pool of a population's spikes is a population of its own (a relay): max
over binary spikes is their OR, which a neuron computes exactly when each
spike in its window adds twice its threshold and nothing carries over to the
next step (current decay 1, reset to zero); it costs one step of pipeline
depth. Max pooling of anything but spikes is refused.
A path read as a recurrent input (the previous step's spikes, see
:mod:`deploy.core.ir`) is a dense connection marked ``recurrent``; Loihi runs a
population's recurrent connection to itself (a Dense from its ``s_out`` back to
its ``a_in``, whose own one-step delay is the IR's) and delayed input from an
earlier population, not feedback from a later one. Floats only;
:mod:`hwmodels.loihi.fixed_point` quantizes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.budget import check_budget, estimate_bytes
from deploy.core.errors import TargetError
from hwmodels.loihi.network import INPUT

CHAIN_KINDS = ("linear", "conv2d", "pool2d", "flatten")
SUPPORTED_KINDS = frozenset({"linear", "conv2d", "pool2d", "flatten", "add", "lif"})
#: largest dense matrix (entries) a folded path may produce
MAX_DENSE_ENTRIES = 50_000_000

WHY_NOT = {
    "timescale": "per-timestep scaling changes the input gain every step; Lava's CUBA LIF has one "
                 "fixed set of parameters per population",
    "li": "the Loihi target reads predictions from output spike counts; a membrane (LI) readout "
          "has no spikes",
}


@dataclass
class FloatConnection:
    """A weighted path between two populations, still in floats."""

    owner: str                      # node whose activity the connection reports
    nodes: list[str]
    source: str
    target: str
    kind: str                       # "dense" | "conv"
    weight: np.ndarray              # dense (out, in) or conv (out, in/g, kh, kw)
    bias: np.ndarray                # (out neurons,) flat, torch order
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    precision: int | None = None    # weight bits of a single quantized synapse node
    weight_scale: np.ndarray | None = None
    recurrent: bool = False         # reads the source's previous-step spikes

    def dense_matrix(self) -> np.ndarray:
        """The connection as a dense (out, in) matrix (torch flat order)."""
        if self.kind == "dense":
            return self.weight
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        check_budget(16.0 * n_in * n_out, f"layer '{self.owner}': the dense {n_out}x{n_in} form of its "
                                          "convolution (float64 matrix and its copy)")
        return _probe(lambda x: F.conv2d(x, torch.from_numpy(self.weight).double(), None, self.stride,
                                         self.padding, self.dilation, self.groups),
                      self.in_shape, self.out_shape)


@dataclass
class Lowered:
    """Populations (LIF nodes in order) and the connections between them."""

    lifs: list[ir.LIF]
    shapes: dict[str, tuple[int, ...]]
    connections: list[FloatConnection] = field(default_factory=list)


def check_kinds(graph: ir.Graph, target: str) -> None:
    """Raise :class:`TargetError` for the first node Loihi cannot run, saying why."""
    for node in graph.nodes:
        if node.kind not in SUPPORTED_KINDS:
            why = WHY_NOT.get(node.kind, "Loihi runs linear, conv2d, pool2d (avg/sum), flatten, add "
                                         "and lif layers only")
            raise TargetError(f"layer '{node.name}': layer type '{node.kind}' is not supported on "
                              f"target '{target}' ({why})")
        if isinstance(node, ir.Pool2d) and node.mode == "max" and ir.spike_source(graph, node.inputs[0]) is None:
            raise TargetError(f"layer '{node.name}': max pooling is supported on target '{target}' only "
                              "directly on a lif layer's spikes (a synapse sums weighted values; use avg or "
                              "sum pooling)")
    if graph.output.kind != "lif":
        raise TargetError(f"layer '{graph.output.name}': the output layer must be lif on target "
                          f"'{target}' (predictions are output spike counts), got {graph.output.kind}")


def lower(graph: ir.Graph, target: str) -> Lowered:
    """Trace every LIF's input paths; raises TargetError for structures Loihi cannot run."""
    check_kinds(graph, target)
    check_budget(estimate_bytes(graph, 0, target=target), f"mapping model '{graph.name}' on {target}")
    shapes = graph.shapes()
    relays = {n.name: n for n in graph.nodes if isinstance(n, ir.Pool2d) and n.mode == "max"}
    lifs = [_relay_neurons(n) if n.name in relays else n for n in graph.nodes
            if isinstance(n, ir.LIF) or n.name in relays]
    out = Lowered(lifs=lifs, shapes=shapes)
    used: set[str] = set(relays)
    order = {n.name: i for i, n in enumerate(lifs)}
    for lif in lifs:
        if lif.name in relays:
            out.connections.append(_relay_connection(relays[lif.name], shapes))
            continue
        head = graph[lif.inputs[0]] if lif.inputs[0] != INPUT else None
        if isinstance(head, ir.Add):
            branches, used = list(head.inputs), used | {head.name}
        else:
            branches = [lif.inputs[0]]
        for start in branches:
            chain, source = _trace(graph, start, lif.name, relays)
            used.update(n.name for n in chain)
            owner = _owner(chain, head if isinstance(head, ir.Add) else None, lif)
            fc = _connect(chain, source, lif.name, owner, shapes)
            reader = chain[0] if chain else (head if isinstance(head, ir.Add) else lif)
            fc.recurrent = source in reader.recurrent
            if fc.recurrent and order[source] > order[lif.name]:
                raise TargetError(f"layer '{owner}': feedback from the later layer '{source}' into '{lif.name}' "
                                  f"is not supported on target '{target}' (a layer's recurrent connection to "
                                  "itself is)")
            if fc.recurrent and fc.kind == "conv":
                fc.weight, fc.kind = fc.dense_matrix(), "dense"
                fc.stride, fc.padding, fc.dilation, fc.groups = (1, 1), (0, 0), (1, 1), 1
            out.connections.append(fc)
    orphans = [n.name for n in graph.nodes if n.kind != "lif" and n.name not in used]
    if orphans:
        raise TargetError(f"layer '{orphans[0]}': its output reaches no lif layer; Loihi computes "
                          "only what ends in spiking neurons")
    return out


#: relay neurons: a spike in the window adds twice the threshold, so a neuron fires exactly when
#: any of its inputs fired; it resets to zero and keeps no current (alpha 0), so v is 0 at the start
#: of every step
RELAY_THRESHOLD = 0.5


def _relay_neurons(pool: ir.Pool2d) -> ir.LIF:
    """The population standing for a max pool of spikes (named after the pool node)."""
    return ir.LIF(pool.name, list(pool.inputs), beta=1.0, alpha=0.0, threshold=RELAY_THRESHOLD, reset="zero")


def _relay_connection(pool: ir.Pool2d, shapes: dict[str, tuple[int, ...]]) -> FloatConnection:
    """Each relay neuron sums its pooling window with weight 1: a depthwise conv of ones."""
    c = shapes[pool.inputs[0]][0]
    weight = np.ones((c, 1, *pool.kernel_size))
    return FloatConnection(pool.name, [pool.name], pool.inputs[0], pool.name, "conv", weight,
                           np.zeros(int(np.prod(shapes[pool.name]))), shapes[pool.inputs[0]], shapes[pool.name],
                           pool.stride, pool.padding, (1, 1), c)


def _trace(graph: ir.Graph, start: str, target: str, relays: dict) -> tuple[list[ir.Node], str]:
    """Nodes from the source population (exclusive) to ``target`` (exclusive), in order."""
    chain: list[ir.Node] = []
    name = start
    while name != INPUT:
        node = graph[name]
        if isinstance(node, ir.LIF) or name in relays:
            break
        if node.kind not in CHAIN_KINDS:
            raise TargetError(f"layer '{node.name}': a {node.kind} layer between spiking layers is not "
                              f"supported on Loihi (only an add directly in front of a lif, fed by "
                              f"linear/conv/pool paths, maps to one neuron input); feeds '{target}'")
        chain.insert(0, node)
        name = node.inputs[0]
    return chain, name


def _owner(chain: list[ir.Node], add: ir.Add | None, lif: ir.LIF) -> str:
    syn = [n for n in chain if n.kind in ir.SYNAPSE_KINDS]
    if syn:
        return syn[-1].name
    if chain:
        return chain[-1].name
    return add.name if add is not None else lif.name


def _connect(chain: list[ir.Node], source: str, target: str, owner: str,
             shapes: dict[str, tuple[int, ...]]) -> FloatConnection:
    in_shape = shapes[source]
    out_shape = shapes[chain[-1].name] if chain else in_shape
    names = [n.name for n in chain]
    c = chain[0] if len(chain) == 1 and isinstance(chain[0], ir.Conv2d) else _pool_conv(chain, shapes)
    if c is not None:
        bias = _bias_map(c, out_shape)
        return FloatConnection(owner, names, source, target, "conv", np.asarray(c.weight, np.float64), bias,
                               in_shape, out_shape, c.stride, c.padding, c.dilation, c.groups,
                               c.precision.get("weight"), c.weight_scale)
    syn = [n for n in chain if n.kind in ir.SYNAPSE_KINDS]
    if [n.kind for n in chain] in (["linear"], ["flatten", "linear"]):
        lin = chain[-1]
        bias = np.zeros(out_shape[0]) if lin.bias is None else np.asarray(lin.bias, np.float64)
        return FloatConnection(owner, names, source, target, "dense", np.asarray(lin.weight, np.float64),
                               bias, in_shape, out_shape, precision=lin.precision.get("weight"),
                               weight_scale=lin.weight_scale)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if n_in * n_out > MAX_DENSE_ENTRIES:
        raise TargetError(f"layer '{owner}': folding {'+'.join(names) or 'identity'} into one dense "
                          f"connection needs {n_in}x{n_out} weights (limit {MAX_DENSE_ENTRIES})")
    fn = _chain_fn(chain)
    with torch.no_grad():
        bias = fn(torch.zeros(1, *in_shape, dtype=torch.float64)).reshape(-1).numpy()
    weight = _probe(fn, in_shape, out_shape, bias)
    precision = syn[0].precision.get("weight") if len(syn) == 1 else None
    return FloatConnection(owner, names, source, target, "dense", weight, bias, in_shape, out_shape,
                           precision=precision)


def _pool_conv(chain: list[ir.Node], shapes: dict[str, tuple[int, ...]]) -> ir.Conv2d | None:
    """A non-overlapping avg/sum pool followed by a conv, as the one strided conv on the unpooled
    map it equals: ``conv(avgpool_k(x), W, stride s, pad p) = conv(x, W', stride k*s, pad k*p)``
    with every tap of ``W`` spread over a k x k block, divided by k*k for avg. Exact when the map
    divides into whole pooling windows (otherwise the padded conv would read the rows the pool
    drops). None when it does not apply."""
    if [n.kind for n in chain] != ["pool2d", "conv2d"]:
        return None
    pool, conv = chain
    _, h, w = shapes[pool.inputs[0]]
    if (pool.mode not in ("avg", "sum") or pool.kernel_size != pool.stride or pool.padding != (0, 0)
            or conv.dilation != (1, 1) or h % pool.stride[0] or w % pool.stride[1]):
        return None
    kh, kw = pool.kernel_size
    div = kh * kw if pool.mode == "avg" else 1
    weight = np.repeat(np.repeat(np.asarray(conv.weight, np.float64), kh, axis=2), kw, axis=3) / div
    scale = None if conv.weight_scale is None else np.asarray(conv.weight_scale, np.float64) / div
    return replace(conv, weight=weight, weight_scale=scale, stride=(conv.stride[0] * kh, conv.stride[1] * kw),
                   padding=(conv.padding[0] * kh, conv.padding[1] * kw))


def _bias_map(conv: ir.Conv2d, out_shape: tuple[int, ...]) -> np.ndarray:
    if conv.bias is None:
        return np.zeros(int(np.prod(out_shape)))
    return np.broadcast_to(np.asarray(conv.bias, np.float64)[:, None, None], out_shape).reshape(-1).copy()


def _chain_fn(chain: list[ir.Node]):
    """A float64 function computing the chain on a batch (B, *in_shape)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        for node in chain:
            if isinstance(node, ir.Linear):
                b = None if node.bias is None else torch.from_numpy(np.asarray(node.bias, np.float64))
                x = F.linear(x.reshape(x.shape[0], -1), torch.from_numpy(np.asarray(node.weight, np.float64)), b)
            elif isinstance(node, ir.Conv2d):
                b = None if node.bias is None else torch.from_numpy(np.asarray(node.bias, np.float64))
                x = F.conv2d(x, torch.from_numpy(np.asarray(node.weight, np.float64)), b, node.stride,
                             node.padding, node.dilation, node.groups)
            elif isinstance(node, ir.Pool2d):
                x = F.avg_pool2d(x, node.kernel_size, node.stride, node.padding, count_include_pad=True)
                if node.mode == "sum":
                    x = x * (node.kernel_size[0] * node.kernel_size[1])
            elif isinstance(node, ir.Flatten):
                x = x.reshape(x.shape[0], -1)
        return x
    return fn


def _probe(fn, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
           bias: np.ndarray | None = None) -> np.ndarray:
    """Dense (out, in) matrix of a linear(+bias) function by applying it to unit inputs."""
    n_in = int(np.prod(in_shape))
    cols = []
    with torch.no_grad():
        for i in range(0, n_in, 1024):
            eye = torch.zeros(min(1024, n_in - i), n_in, dtype=torch.float64)
            eye[torch.arange(eye.shape[0]), torch.arange(i, i + eye.shape[0])] = 1
            y = fn(eye.reshape(-1, *in_shape)).reshape(eye.shape[0], -1).numpy()
            cols.append(y - (0 if bias is None else bias))
    return np.concatenate(cols).T.copy()
