"""The hardware-neutral network: a small typed graph of plain-array nodes.

A :class:`Graph` is an ordered list of nodes in topological order. Every node
names its inputs (``"input"`` is the network input); the last node is the
output. Array fields are numpy arrays, everything else is JSON-able, so a
graph serializes to ``(structure, tensors)``: the structure is the ``arch`` of
the native checkpoint and the tensors its ``state_dict``.

Discrete-time neuron semantics (one step ``t``, input current ``x``)::

    i = alpha * i + x            # synaptic current (alpha = 0: i = x)
    v = beta * v + i             # membrane
    s = v > threshold            # strict, as on Loihi and in snnTorch
    v = v - s * threshold        # reset "subtract";  "zero": v = v * (1 - s)

``LIF(reset="subtract", reset_delay=True)`` is snnTorch's default timing: the
threshold is subtracted one step later and not decayed,
``v[t] = beta * v[t-1] + i[t] - s[t-1] * threshold`` (with reset "zero" the
delay changes nothing). ``LI`` is the same membrane without spikes: its output is ``v``.

Recurrent connections. A node may read a neuron layer's output *from the
previous timestep*: such inputs are listed in ``inputs`` and also in the node's
``recurrent`` list, and only they may name the same or a later node, so the
graph stays a list in evaluation order. At step ``t`` a recurrent input
delivers the neuron layer's output of step ``t - 1`` (zeros at ``t = 0``),
e.g. an RNN layer ``s[t] = LIF(W_in x[t] + W_rec s[t-1])``. This is the
discrete-time convention of nirtorch (an input from a "future" node is that
node's previous output) and of snnTorch's ``RLeaky``. Every feedback loop
therefore passes through a lif/li node, which holds the one-step delay; a
recurrent input from a later node must feed a linear or add node (their
shapes do not depend on it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from deploy.core.errors import ModelError

ENCODINGS = ("direct", "rate", "latency", "events")
RESETS = ("subtract", "zero")


def _pair(v: int | tuple | list) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def per_neuron(value: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a neuron parameter to ``shape``: a scalar, one value per channel
    (size ``shape[0]``), or one per neuron. Raises ValueError if it does not fit."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1 and len(shape) > 1 and arr.size == shape[0]:
        arr = arr.reshape(-1, *[1] * (len(shape) - 1))
    return np.broadcast_to(arr, shape)


@dataclass
class Node:
    """A graph node: a name, the names of its inputs, and typed parameters.

    Precision keys used across the toolchain: "weight", "bias" (synapses);
    "threshold", "beta", "alpha", "membrane", "current" (neurons).
    """

    kind: ClassVar[str] = "node"
    name: str
    inputs: list[str] = field(default_factory=list)
    #: precision of stored quantities in bits, e.g. {"weight": 4, "threshold": 8};
    #: absent keys are float32.
    precision: dict[str, int] = field(default_factory=dict)
    #: inputs (also listed in ``inputs``) read one timestep late: a lif/li node's previous output
    recurrent: list[str] = field(default_factory=list)

    def out_shape(self, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return in_shapes[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def params(self) -> int:
        """Number of stored parameters (weights, biases, per-neuron parameters)."""
        return int(sum(a.size for a in self.arrays().values()))

    def validate(self, in_shapes: list[tuple[int, ...]]) -> None:
        for key, arr in self.arrays().items():
            if not np.all(np.isfinite(arr)):
                raise ModelError(f"layer '{self.name}': {key} contains NaN or inf")
        if len(in_shapes) != 1:
            raise ModelError(f"layer '{self.name}': {self.kind} takes one input, got {len(in_shapes)}")


@dataclass
class Linear(Node):
    """y = x @ weight.T + bias, weight of shape (out, in)."""

    kind: ClassVar[str] = "linear"
    weight: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray | None = None
    #: set by quantization: weight = integer code * weight_scale, per tensor (1,) or per output (out,)
    weight_scale: np.ndarray | None = None

    def out_shape(self, in_shapes):
        return (int(self.weight.shape[0]),)

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.weight.ndim != 2:
            raise ModelError(f"layer '{self.name}': linear weight must be 2-D, got shape {self.weight.shape}")
        n_in = int(np.prod(in_shapes[0]))
        if len(in_shapes[0]) != 1 or n_in != self.weight.shape[1]:
            raise ModelError(f"layer '{self.name}': weight expects {self.weight.shape[1]} inputs, "
                             f"got shape {in_shapes[0]}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise ModelError(f"layer '{self.name}': bias shape {self.bias.shape} does not match "
                             f"{self.weight.shape[0]} outputs")


def _check_geometry(node: Node, **fields: tuple[int, ...]) -> None:
    """Strides, dilations, kernel sizes and groups are >= 1 and padding is >= 0."""
    for key, vals in fields.items():
        if any(v < 1 for v in vals):
            raise ModelError(f"layer '{node.name}': {key} must be >= 1, got {vals}")
    if any(p < 0 for p in getattr(node, "padding", ())):
        raise ModelError(f"layer '{node.name}': padding must be >= 0, got {node.padding}")


@dataclass
class Conv2d(Node):
    """2-D convolution, weight of shape (out, in/groups, kh, kw); input (C, H, W)."""

    kind: ClassVar[str] = "conv2d"
    weight: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray | None = None
    #: set by quantization: weight = integer code * weight_scale, per tensor (1,) or per output (out,)
    weight_scale: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        self.stride, self.padding, self.dilation = (_pair(self.stride), _pair(self.padding),
                                                    _pair(self.dilation))

    def out_shape(self, in_shapes):
        _, h, w = in_shapes[0]
        kh, kw = self.weight.shape[2:]
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return (int(self.weight.shape[0]), int(oh), int(ow))

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.weight.ndim != 4:
            raise ModelError(f"layer '{self.name}': conv2d weight must be 4-D, got shape {self.weight.shape}")
        _check_geometry(self, stride=self.stride, dilation=self.dilation, groups=(self.groups,))
        if len(in_shapes[0]) != 3:
            raise ModelError(f"layer '{self.name}': conv2d needs a (C, H, W) input, got {in_shapes[0]}")
        if in_shapes[0][0] != self.weight.shape[1] * self.groups:
            raise ModelError(f"layer '{self.name}': weight expects {self.weight.shape[1] * self.groups} "
                             f"input channels, got {in_shapes[0][0]}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise ModelError(f"layer '{self.name}': bias shape {self.bias.shape} does not match "
                             f"{self.weight.shape[0]} channels")
        if min(self.out_shape(in_shapes)[1:]) < 1:
            raise ModelError(f"layer '{self.name}': kernel larger than the {in_shapes[0][1:]} input")


@dataclass
class Pool2d(Node):
    """Spatial pooling: mode "avg", "sum" or "max"; input (C, H, W)."""

    kind: ClassVar[str] = "pool2d"
    mode: str = "avg"
    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self):
        self.kernel_size, self.stride, self.padding = (_pair(self.kernel_size), _pair(self.stride),
                                                       _pair(self.padding))

    def out_shape(self, in_shapes):
        c, h, w = in_shapes[0]
        oh = (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1
        return (c, int(oh), int(ow))

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.mode not in ("avg", "sum", "max"):
            raise ModelError(f"layer '{self.name}': unknown pooling mode {self.mode!r}")
        _check_geometry(self, kernel_size=self.kernel_size, stride=self.stride)
        if len(in_shapes[0]) != 3 or min(self.out_shape(in_shapes)[1:]) < 1:
            raise ModelError(f"layer '{self.name}': cannot pool input of shape {in_shapes[0]}")


@dataclass
class Flatten(Node):
    """Flatten (C, H, W) to (C*H*W,) in C-major (torch) order."""

    kind: ClassVar[str] = "flatten"

    def out_shape(self, in_shapes):
        return (int(np.prod(in_shapes[0])),)


@dataclass
class Add(Node):
    """Element-wise sum of its inputs (residual connections)."""

    kind: ClassVar[str] = "add"

    def validate(self, in_shapes):
        if len(in_shapes) < 2:
            raise ModelError(f"layer '{self.name}': add needs at least two inputs")
        if len(set(in_shapes)) != 1:
            raise ModelError(f"layer '{self.name}': add inputs differ in shape: {in_shapes}")


@dataclass
class LIF(Node):
    """Leaky integrate-and-fire neurons (IF when beta == 1), optional synaptic current.

    ``beta`` and ``threshold`` are scalars or per-neuron/per-channel arrays
    broadcastable to the input shape. ``reset_delay`` selects snnTorch's delayed,
    undecayed subtraction (see the module docstring).
    """

    kind: ClassVar[str] = "lif"
    beta: float | np.ndarray = 1.0
    threshold: float | np.ndarray = 1.0
    reset: str = "subtract"
    alpha: float | np.ndarray = 0.0
    reset_delay: bool = False

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.reset not in RESETS:
            raise ModelError(f"layer '{self.name}': reset must be one of {RESETS}, got {self.reset!r}")
        if not isinstance(self.reset_delay, (bool, np.bool_)):
            raise ModelError(f"layer '{self.name}': reset_delay must be true or false, got {self.reset_delay!r}")
        for key in ("beta", "alpha", "threshold"):
            val = np.asarray(getattr(self, key), dtype=np.float64)
            if not np.all(np.isfinite(val)):
                raise ModelError(f"layer '{self.name}': {key} contains NaN or inf")
            if key in ("beta", "alpha") and (np.any(val < 0) or np.any(val > 1)):
                raise ModelError(f"layer '{self.name}': {key} must lie in [0, 1], got {val.min():g}..{val.max():g}")
            if key == "threshold" and np.any(val <= 0):
                raise ModelError(f"layer '{self.name}': threshold must be positive")
            try:
                per_neuron(val, in_shapes[0])
            except ValueError:
                raise ModelError(f"layer '{self.name}': {key} of shape {val.shape} does not fit "
                                 f"neurons of shape {in_shapes[0]}") from None


@dataclass
class LI(Node):
    """Leaky integrator readout (no spikes): output is the membrane v = beta*v + x."""

    kind: ClassVar[str] = "li"
    beta: float | np.ndarray = 1.0

    def validate(self, in_shapes):
        super().validate(in_shapes)
        b = np.asarray(self.beta, dtype=np.float64)
        if np.any(b < 0) or np.any(b > 1) or not np.all(np.isfinite(b)):
            raise ModelError(f"layer '{self.name}': beta must lie in [0, 1]")


@dataclass
class TimeScale(Node):
    """Per-timestep, per-channel affine map (BatchNorm through time folded): ``scale`` and
    ``shift`` are (T, C) and ``y[t] = x[t] * scale[t, c] + shift[t, c]``."""

    kind: ClassVar[str] = "timescale"
    scale: np.ndarray = None  # type: ignore[assignment]
    shift: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.scale is None:
            raise ValueError("timescale needs a (T, C) scale array")
        self.scale = np.asarray(self.scale, dtype=np.float32)
        self.shift = (np.zeros_like(self.scale) if self.shift is None
                      else np.asarray(self.shift, dtype=np.float32))

    @property
    def timesteps(self) -> int:
        return int(self.scale.shape[0])

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.scale.ndim != 2 or self.shift.shape != self.scale.shape:
            raise ModelError(f"layer '{self.name}': scale and shift must both be (T, C), got "
                             f"{self.scale.shape} and {self.shift.shape}")
        if self.scale.shape[1] != in_shapes[0][0]:
            raise ModelError(f"layer '{self.name}': {self.scale.shape[1]} channels, input has "
                             f"{in_shapes[0][0]} (shape {in_shapes[0]})")


def timescale_node(name: str, inputs: list[str], channels: int, timesteps: int) -> TimeScale:
    """An identity timescale node (scale 1, shift 0)."""
    return TimeScale(name, inputs, scale=np.ones((timesteps, channels), np.float32),
                     shift=np.zeros((timesteps, channels), np.float32))


NODE_TYPES: dict[str, type[Node]] = {c.kind: c for c in (Linear, Conv2d, Pool2d, Flatten, Add, LIF, LI, TimeScale)}
SYNAPSE_KINDS = ("linear", "conv2d")
NEURON_KINDS = ("lif", "li")


def register_node(cls: type[Node]) -> type[Node]:
    """Add a node type to the IR (for node kinds defined outside this module)."""
    NODE_TYPES[cls.kind] = cls
    return cls


def node_type(kind: str) -> type[Node] | None:
    """The node class of ``kind`` (None when no node type has that kind)."""
    return NODE_TYPES.get(kind)


@dataclass
class Graph:
    """A spiking network: input description plus nodes in topological order."""

    input_shape: tuple[int, ...]
    nodes: list[Node]
    timesteps: int = 8
    encoding: str = "direct"
    name: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)

    def __repr__(self) -> str:
        """The layer table (layer, kind, shape, params, precision, memory), no weight arrays."""
        from deploy.core.summary import graph_text

        return graph_text(self)

    # -- access -----------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def __iter__(self):
        return iter(self.nodes)

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def edges(self) -> list[tuple[str, str]]:
        return [(src, n.name) for n in self.nodes for src in n.inputs]

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def synapses(self) -> list[Node]:
        return [n for n in self.nodes if n.kind in SYNAPSE_KINDS]

    def params(self) -> int:
        return sum(n.params() for n in self.nodes)

    # -- shapes and validation ---------------------------------------------------
    def recurrent_edges(self) -> list[tuple[str, str]]:
        """(source, node) of every recurrent (one-step-delayed) input."""
        return [(src, n.name) for n in self.nodes for src in n.recurrent]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape of every node (and of ``"input"``), validating on the way."""
        shapes: dict[str, tuple[int, ...]] = {"input": self.input_shape}
        index: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            if n.name in index or n.name == "input":
                raise ModelError(f"layer '{n.name}': duplicate layer name")
            index[n.name] = i
        for n in self.nodes:
            self._check_inputs(n, index)
            in_shapes = input_shapes(n, shapes)
            n.validate(in_shapes)
            shapes[n.name] = tuple(int(s) for s in n.out_shape(in_shapes))
        for n in self.nodes:  # recurrent inputs again, now that every shape is known
            if n.recurrent:
                in_shapes = [shapes[i] for i in n.inputs]
                n.validate(in_shapes)
                if tuple(int(s) for s in n.out_shape(in_shapes)) != shapes[n.name]:
                    raise ModelError(f"layer '{n.name}': recurrent input shapes {in_shapes} do not fit")
        return shapes

    def _check_inputs(self, n: Node, index: dict[str, int]) -> None:
        """Only a recurrent input from a lif/li node may name this or a later node."""
        for r in n.recurrent:
            if r not in n.inputs:
                raise ModelError(f"layer '{n.name}': recurrent input '{r}' is not one of its inputs")
            if r not in index:
                raise ModelError(f"layer '{n.name}': unknown input {r}")
        for i in n.inputs:
            src = self.nodes[index[i]] if i in index else None
            late = src is not None and index[i] >= index[n.name]
            if (i in n.recurrent or late) and src.kind not in NEURON_KINDS:
                raise ModelError(f"layer '{n.name}': feedback loop {' -> '.join(self._loop(n.name, i))} "
                                 "has no neuron layer (lif/li) to hold its one-step delay")
            if late and i not in n.recurrent:
                raise ModelError(f"layer '{n.name}': input '{i}' comes at or after it; list it in "
                                 "'recurrent' to read its previous timestep")

    def _loop(self, start: str, end: str) -> list[str]:
        """Names on a forward path start -> ... -> end, closed by the edge end -> start."""
        prev: dict[str, str] = {start: ""}
        queue = [start]
        while queue and end not in prev:
            cur = queue.pop(0)
            for c in self.consumers(cur):
                if c.name not in prev and cur not in c.recurrent:
                    prev[c.name] = cur
                    queue.append(c.name)
        path = [end]
        while end in prev and prev[end]:
            end = prev[end]
            path.insert(0, end)
        return ([start] if path[0] != start else []) + path + [start]

    def validate(self) -> Graph:
        if not self.nodes:
            raise ModelError("model has no layers")
        if self.encoding not in ENCODINGS:
            raise ModelError(f"input encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if int(self.timesteps) < 1:
            raise ModelError(f"timesteps must be >= 1, got {self.timesteps}")
        if any(s < 1 for s in self.input_shape):
            raise ModelError(f"input shape {self.input_shape} has a non-positive dimension")
        self.shapes()
        return self

    # -- memory at the stored precision -----------------------------------------
    def memory_bytes(self) -> dict[str, float]:
        """Parameter bytes per node at their precision (sub-byte included), without neuron state;
        the parameter part of :func:`deploy.core.metrics.layer_memory`, the one memory definition."""
        from deploy.core.metrics import layer_memory

        return {name: m.params for name, m in layer_memory(self).items()}

    # -- serialization -------------------------------------------------------------
    def to_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Split into a JSON-able structure and a flat ``{"node.field": array}`` dict."""
        layers, tensors = [], {}
        for n in self.nodes:
            entry: dict[str, Any] = {"type": n.kind}
            for f in dataclasses.fields(n):
                val = getattr(n, f.name)
                if f.name == "recurrent" and not val:
                    continue
                if isinstance(val, np.ndarray):
                    tensors[f"{n.name}.{f.name}"] = val
                    entry[f.name] = {"tensor": f"{n.name}.{f.name}"}
                elif isinstance(val, tuple):
                    entry[f.name] = list(val)
                else:
                    entry[f.name] = val
            layers.append(entry)
        arch = {"input_shape": list(self.input_shape), "timesteps": int(self.timesteps),
                "encoding": self.encoding, "name": self.name, "meta": self.meta, "layers": layers}
        return arch, tensors

    @classmethod
    def from_dict(cls, arch: dict[str, Any], tensors: dict[str, np.ndarray]) -> Graph:
        """Inverse of :meth:`to_dict`; raises :class:`ModelError` on malformed input."""
        if not isinstance(arch, dict):
            raise ModelError("arch must be a mapping")
        for key in ("input_shape", "layers"):
            if key not in arch:
                raise ModelError(f"arch is missing '{key}'")
        nodes, prev = [], "input"
        for i, entry in enumerate(arch["layers"]):
            if not isinstance(entry, dict) or "type" not in entry:
                raise ModelError(f"layer #{i}: entry has no 'type'")
            name = str(entry.get("name", f"{entry['type']}{i}"))
            node_cls = node_type(entry["type"])
            if node_cls is None:
                raise ModelError(f"layer '{name}': unknown layer type {entry['type']!r} "
                                 f"(known: {', '.join(sorted(NODE_TYPES))})")
            kwargs: dict[str, Any] = {}
            known = {f.name for f in dataclasses.fields(node_cls)}
            for key, val in entry.items():
                if key == "type":
                    continue
                if key not in known:
                    raise ModelError(f"layer '{name}': unknown field {key!r} for {entry['type']}")
                if isinstance(val, dict) and "tensor" in val:
                    if val["tensor"] not in tensors:
                        raise ModelError(f"layer '{name}': missing tensor '{val['tensor']}'")
                    val = np.asarray(tensors[val["tensor"]], dtype=np.float32)
                kwargs[key] = val
            kwargs["name"] = name
            kwargs.setdefault("inputs", [prev])
            for req in ("weight",):
                if req in known and kwargs.get(req) is None:
                    raise ModelError(f"layer '{name}': missing tensor '{req}'")
            try:
                nodes.append(node_cls(**kwargs))
            except (TypeError, ValueError) as exc:
                raise ModelError(f"layer '{name}': {exc}") from None
            prev = name
        graph = cls(input_shape=tuple(arch["input_shape"]), nodes=nodes,
                    timesteps=int(arch.get("timesteps", 8)), encoding=arch.get("encoding", "direct"),
                    name=str(arch.get("name", "model")), meta=dict(arch.get("meta", {})))
        return graph.validate()

    def to_json(self) -> str:
        """Whole graph as one JSON document (arrays as nested lists)."""
        arch, tensors = self.to_dict()
        return json.dumps({"arch": arch, "tensors": {k: {"shape": list(v.shape), "data": v.ravel().tolist()}
                                                     for k, v in tensors.items()}})

    @classmethod
    def from_json(cls, text: str) -> Graph:
        doc = json.loads(text)
        tensors = {k: np.asarray(v["data"], dtype=np.float32).reshape(v["shape"])
                   for k, v in doc["tensors"].items()}
        return cls.from_dict(doc["arch"], tensors)

    def copy(self) -> Graph:
        arch, tensors = self.to_dict()
        return Graph.from_dict(json.loads(json.dumps(arch)), {k: v.copy() for k, v in tensors.items()})

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per node: name, kind, output shape, params, bytes."""
        shapes, mem = self.shapes(), self.memory_bytes()
        return [{"name": n.name, "kind": n.kind, "shape": shapes[n.name], "params": n.params(),
                 "memory_bytes": mem[n.name]} for n in self.nodes]


def input_shapes(node: Node, shapes: dict[str, tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Shapes of ``node``'s inputs looked up in ``shapes``. A recurrent input not shaped yet
    (it names a later node) gets the shape the node implies: a linear layer's input width,
    or the shape of an add's other inputs; :meth:`Graph.shapes` checks it afterwards."""
    known = {i: shapes[i] for i in node.inputs if i in shapes}
    missing = [i for i in node.inputs if i not in known]
    plain = [i for i in missing if i not in node.recurrent]
    if not node.inputs or plain:
        raise ModelError(f"layer '{node.name}': unknown input {plain[0] if plain else '(none)'}")
    if missing:
        w = getattr(node, "weight", None)
        if isinstance(node, Linear) and isinstance(w, np.ndarray) and w.ndim == 2:
            guess: tuple[int, ...] = (int(w.shape[1]),)
        elif isinstance(node, Add) and known:
            guess = next(iter(known.values()))
        else:
            raise ModelError(f"layer '{node.name}': its recurrent input '{missing[0]}' comes later, so it "
                             f"must feed a linear or add layer, not {node.kind}")
        known.update({i: guess for i in missing})
    return [known[i] for i in node.inputs]


def spike_source(graph: Graph, name: str) -> str | None:
    """The LIF node whose spikes tensor ``name`` carries, unchanged in value through flatten and max
    pooling (binary by construction); None when ``name`` is anything else (the input included)."""
    while name != "input":
        node = graph[name]
        if isinstance(node, LIF):
            return node.name
        if not (isinstance(node, Flatten) or (isinstance(node, Pool2d) and node.mode == "max")):
            return None
        name = node.inputs[0]
    return None


def beta_from_tau(tau: float, dt: float = 1.0) -> float:
    """Membrane decay per step for a time constant tau (exact exponential)."""
    return math.exp(-dt / tau)
