"""Convert live torch / snnTorch modules to the IR.

Layers: ``nn.Linear``, ``nn.Conv2d``, ``nn.AvgPool2d``, ``nn.MaxPool2d``,
``nn.Flatten``, ``nn.Identity``/``nn.Dropout`` (skipped: identity at
inference), snnTorch ``Leaky`` and ``Synaptic``, this project's own
``deploy.core.neurons.LIF``/``LI``, and a whole ``SpikingNet``. ANN activations
are rejected (convert the ANN first); anything else is an error naming the
layer and its type.

Structure. An ``nn.Sequential`` (nested too) is read from its structure. Any
other module (e.g. snnTorch's tutorial classes whose ``forward`` loops over
time) is run once on a sample (:mod:`deploy.io.torch_trace`): the leaf calls of
the first timestep, in call order, become the graph when each consumes the
network input, an earlier layer's output, a full flatten (``view``/``reshape``/
``flatten`` to ``(B, -1)``) or a sum of two of these (residual add). The output
is the layer whose output ``forward`` returns, else (e.g. a stack of recorded
spikes) the first timestep's last layer; every other layer must feed it. The
number of repetitions of the loop is the graph's timesteps unless ``timesteps``
is given. A layer run once while the loop runs several times is accepted only if
it is stateless and fed by the (constant, direct-encoded) input. Anything else
(concatenation, indexing, arithmetic on spikes, recurrence) is one
:class:`ModelError` naming the first module it cannot place.

snnTorch reset timing. snnTorch's default ``reset_delay=True`` subtracts the
threshold one step later, undecayed: ``u[t] = beta u[t-1] + x[t] - s[t-1] thr``;
import sets the IR's ``LIF.reset_delay`` from the module, so ``Leaky`` (both
resets) and ``Synaptic`` with reset "subtract" match snnTorch spike for spike.
``reset_delay=False`` subtracts at once as the IR's default neuron does: identical
for reset "zero", and for "subtract" as long as the membrane never exceeds
twice the threshold (otherwise snnTorch subtracts once more before deciding the
next spike). ``Synaptic`` with reset "zero" and ``reset_delay=True`` also drops
the input of the step after a spike; the IR does not, and a warning says so.
All checked against snnTorch in ``tests/test_io_torch.py`` and
``tests/test_snntorch_class.py``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.core import ir, neurons
from deploy.core.errors import ModelError
from deploy.io import torch_trace
from deploy.io.nir_io import compact

ANN_LAYERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
              nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
              nn.Softmax, nn.LogSoftmax, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
SKIPPED = (nn.Identity, nn.Dropout, nn.Dropout2d)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().float().numpy().copy()


def _is_snntorch(m: nn.Module, cls: str) -> bool:
    return type(m).__name__ == cls and type(m).__module__.startswith("snntorch")


def flatten_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf layers of (nested) ``nn.Sequential`` containers, with dotted names."""
    if not isinstance(module, nn.Sequential):
        kind = type(module).__name__
        raise ModelError(f"model '{prefix or kind}': {kind} is not an nn.Sequential; its forward() "
                         "cannot be converted: wrap its layers in nn.Sequential")
    out = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        out += flatten_layers(child, full) if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def _conv(name: str, m: nn.Conv2d, inputs: list[str]) -> ir.Conv2d:
    if m.padding_mode != "zeros":
        raise ModelError(f"layer '{name}': Conv2d padding_mode {m.padding_mode!r} is not supported")
    pad = m.padding
    if isinstance(pad, str):
        k, d = m.kernel_size, m.dilation
        if pad == "valid":
            pad = (0, 0)
        elif all(x % 2 for x in k):
            pad = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        else:
            raise ModelError(f"layer '{name}': padding='same' needs an odd kernel, got {k}")
    return ir.Conv2d(name, inputs, weight=_np(m.weight), bias=_np(m.bias), stride=m.stride,
                     padding=pad, dilation=m.dilation, groups=m.groups)


def _pool(name: str, m: nn.Module, inputs: list[str]) -> ir.Pool2d:
    kind = type(m).__name__
    if m.ceil_mode:
        raise ModelError(f"layer '{name}': {kind} with ceil_mode=True is not supported")
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise ModelError(f"layer '{name}': AvgPool2d divisor_override is not supported")
        if not m.count_include_pad and m.padding not in (0, (0, 0)):
            raise ModelError(f"layer '{name}': AvgPool2d count_include_pad=False is not supported")
        mode = "avg"
    else:
        if m.dilation not in (1, (1, 1)) or m.return_indices:
            raise ModelError(f"layer '{name}': MaxPool2d with dilation or return_indices is not supported")
        mode = "max"
    return ir.Pool2d(name, inputs, mode=mode, kernel_size=m.kernel_size,
                     stride=m.stride if m.stride is not None else m.kernel_size, padding=m.padding)


def _snntorch_neuron(name: str, m: nn.Module, inputs: list[str], shape: tuple[int, ...]) -> ir.LIF:
    kind = type(m).__name__
    if float(m.graded_spikes_factor.detach().float().mean()) != 1.0 or m.graded_spikes_factor.numel() != 1:
        raise ModelError(f"layer '{name}': snnTorch {kind} with graded spikes is not supported")
    if m.inhibition or m.state_quant:
        raise ModelError(f"layer '{name}': snnTorch {kind} with inhibition or state_quant is not supported")
    reset = {0: "subtract", 1: "zero"}.get(int(m.reset_mechanism_val))
    if reset is None:
        raise ModelError(f"layer '{name}': snnTorch reset_mechanism 'none' is not supported")
    beta = compact(_np(m.beta.clamp(0, 1)), shape)
    alpha = compact(_np(m.alpha.clamp(0, 1)), shape) if kind == "Synaptic" else 0.0
    delay = bool(m.reset_delay) and reset == "subtract"
    if m.reset_delay and kind == "Synaptic" and reset == "zero":
        warnings.warn(f"layer '{name}': snnTorch Synaptic(reset_mechanism='zero', reset_delay=True) also "
                      "drops the input of the step after a spike; the IR keeps it, spikes may differ "
                      "slightly (use reset_delay=False for an exact match)", UserWarning, stacklevel=4)
    return ir.LIF(name, inputs, beta=beta, threshold=compact(_np(m.threshold), shape), reset=reset,
                  alpha=alpha, reset_delay=delay)


def _node(name: str, m: nn.Module, inputs: list[str], shape: tuple[int, ...]) -> ir.Node | None:
    kind = type(m).__name__
    if isinstance(m, SKIPPED):
        return None
    if isinstance(m, nn.Linear):
        return ir.Linear(name, inputs, weight=_np(m.weight), bias=_np(m.bias))
    if isinstance(m, nn.Conv2d):
        return _conv(name, m, inputs)
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        return _pool(name, m, inputs)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ModelError(f"layer '{name}': Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) "
                             "is not supported (only start_dim=1, end_dim=-1)")
        return ir.Flatten(name, inputs)
    if _is_snntorch(m, "Leaky") or _is_snntorch(m, "Synaptic"):
        return _snntorch_neuron(name, m, inputs, shape)
    if isinstance(m, neurons.LIF):
        return ir.LIF(name, inputs, beta=compact(_np(m.beta.clamp(0, 1)), shape),
                      threshold=compact(_np(m.threshold), shape), reset=m.reset,
                      alpha=compact(_np(m.alpha), shape), reset_delay=m.reset_delay)
    if isinstance(m, neurons.LI):
        return ir.LI(name, inputs, beta=compact(_np(m.beta), shape))
    if isinstance(m, ANN_LAYERS):
        raise ModelError(f"layer '{name}': ANN layer {kind}: convert it with `deploy convert`")
    raise ModelError(f"layer '{name}': unsupported layer type {kind} ({type(m).__module__})")


def _input_shape(layers: list[tuple[str, nn.Module]], sample_input: Any) -> tuple[int, ...]:
    if isinstance(sample_input, torch.Tensor):
        if sample_input.dim() < 2:
            raise ModelError(f"sample_input must be a batch (B, ...), got shape {tuple(sample_input.shape)}")
        return tuple(int(s) for s in sample_input.shape[1:])
    if sample_input is not None:
        return tuple(int(s) for s in sample_input)
    first = next((m for _, m in layers if not isinstance(m, SKIPPED)), None)
    if isinstance(first, nn.Linear):
        return (int(first.in_features),)
    name = next((n for n, m in layers if m is first), "?")
    raise ModelError(f"layer '{name}': input size unknown for {type(first).__name__}; pass "
                     "sample_input (a batch) or input_shape (C, H, W)")


def _sequential(module: nn.Sequential, sample_input: Any) -> tuple[tuple[int, ...], list[ir.Node]]:
    layers = flatten_layers(module)
    shape = _input_shape(layers, sample_input)
    input_shape, nodes, prev = shape, [], "input"
    for qual, m in layers:
        node = _node(qual.replace(".", "_"), m, [prev], shape)
        if node is None:
            continue
        node.validate([shape])
        shape = tuple(int(s) for s in node.out_shape([shape]))
        nodes.append(node)
        prev = node.name
    return input_shape, nodes


def convert(module: nn.Module, sample_input: torch.Tensor | tuple[int, ...] | None = None,
            timesteps: int | None = None, encoding: str = "direct", name: str | None = None) -> ir.Graph:
    """Convert ``module`` to a validated Graph.

    ``sample_input`` is a batch ``(B, ...)`` as the module's ``forward`` (or, for a
    Sequential, one timestep) sees it, or the input shape without batch; optional
    when the first layer is Linear. ``timesteps`` defaults to the repetitions of a
    traced loop over time, else 8. A ``SpikingNet`` keeps its own timesteps and encoding.
    """
    from deploy.core.net import SpikingNet

    if isinstance(module, SpikingNet):  # keeps its own timesteps and encoding
        return module.to_graph()
    if isinstance(module, nn.Sequential):
        (input_shape, nodes), reps = _sequential(module, sample_input), 1
    else:
        input_shape, nodes, reps = _traced(module, sample_input)
    if not nodes:
        raise ModelError(f"model {type(module).__name__} has no convertible layers")
    steps = int(timesteps) if timesteps is not None else reps if reps > 1 else 8
    graph = ir.Graph(input_shape=input_shape, nodes=nodes, timesteps=steps, encoding=encoding,
                     name=name or type(module).__name__.lower(), meta={"source": "torch module"})
    return graph.validate()


# -- modules with their own forward(): traced on one sample -------------------------------
LAYERS = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.Flatten, neurons.LIF, neurons.LI)
ADD_OPS = ("add", "__add__", "__radd__", "add_", "__iadd__")
RESHAPE_OPS = ("view", "reshape", "flatten")
ALIAS_OPS = ("detach", "clone", "contiguous", "float", "to")


def _is_leaf(m: nn.Module) -> bool:
    return isinstance(m, LAYERS + ANN_LAYERS + SKIPPED) or type(m).__module__.startswith("snntorch")


def _is_neuron(m: nn.Module) -> bool:
    return isinstance(m, (neurons.LIF, neurons.LI)) or type(m).__module__.startswith("snntorch")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _sample(module: nn.Module, sample_input: Any) -> torch.Tensor:
    if isinstance(sample_input, torch.Tensor):
        if sample_input.dim() < 2:
            raise ModelError(f"sample_input must be a batch (B, ...), got shape {tuple(sample_input.shape)}")
        return sample_input.detach()
    if sample_input is not None:
        shape = tuple(int(s) for s in sample_input)
    else:
        leaves = [(n, m) for n, m in torch_trace.leaf_modules(module, _is_leaf) if not isinstance(m, SKIPPED)]
        if not leaves or not isinstance(leaves[0][1], nn.Linear):
            first = f"its first layer '{leaves[0][0]}' is {type(leaves[0][1]).__name__}" if leaves else "no layers"
            raise ModelError(f"model {type(module).__name__}: input size unknown ({first}); pass "
                             "sample_input (a batch) or input_shape (C, H, W)")
        shape = (int(leaves[0][1].in_features),)
    return torch.rand((1, *shape), generator=torch.Generator().manual_seed(0))


def _traced(module: nn.Module, sample_input: Any) -> tuple[tuple[int, ...], list[ir.Node], int]:
    sample = _sample(module, sample_input)
    try:
        trace = torch_trace.record(module, sample, _is_leaf)
    except Exception as exc:  # noqa: BLE001 - the user's forward() can raise anything
        raise ModelError(f"model {type(module).__name__}: forward() failed on a sample of shape "
                         f"{tuple(sample.shape)} ({type(exc).__name__}: {_first_line(exc)}); pass "
                         "sample_input shaped as forward() expects") from exc
    slots, reps = torch_trace.timestep_slots(trace.calls)
    nodes = _ChainBuilder(trace, slots, reps).build()
    return tuple(int(s) for s in sample.shape[1:]), nodes, reps


@dataclass
class _Unplaced:
    """Provenance of a tensor no layer of the graph computes (e.g. the result of ``cat``)."""

    op: str


class _ChainBuilder:
    """Turns a :class:`torch_trace.Trace` into IR nodes (see the module docstring)."""

    def __init__(self, trace: torch_trace.Trace, slots: list[int], reps: int):
        self.trace, self.slots, self.reps = trace, slots, reps
        self.calls_of = Counter(id(c.module) for c in trace.calls)
        self.prov: dict[int, str | _Unplaced] = {id(trace.sample): "input"}
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(int(s) for s in trace.sample.shape[1:])}
        self.nodes: list[ir.Node] = []
        self.leaf_label: dict[str, str] = {}
        self.slot_node: dict[int, str] = {}
        self.slot_src: dict[int, str] = {}
        self.ops: dict[tuple, str] = {}
        self.const = {"input"}  # values equal at every timestep (direct encoding)
        self.output: str | None = None
        self.window = True  # still in the first timestep

    def build(self) -> list[ir.Node]:
        k = 0
        for event in self.trace.events:
            if isinstance(event, torch_trace.Call):
                self.window = self.window and self.slots[k] == k
                self._call(k, event)
                k += 1
            else:
                self._op(event)
        returned = self.prov.get(id(self.trace.result))
        if isinstance(returned, str) and returned != "input":
            self.output = returned  # forward() returns a layer's output (else: the first timestep's last)
        return self._prune()

    # -- leaf calls -------------------------------------------------------------------
    def _call(self, k: int, c: torch_trace.Call) -> None:
        label = f"module '{c.name or type(c.module).__name__}' ({type(c.module).__name__})"
        src = self.prov.get(id(c.inp)) if c.inp is not None else None
        if not isinstance(src, str):
            how = f"comes from {src.op}()" if src else "is not the network input or a layer's output"
            raise ModelError(f"{label}: its input {how}; forward() must be a chain of layers "
                             "(residual adds allowed)")
        slot = self.slots[k]
        if slot == k:
            self._place(k, c, src, label)
        elif self.slot_src[slot] != src:
            raise ModelError(f"{label}: its input changes between timesteps ('{self.slot_src[slot]}' "
                             f"at the first, '{src}' later); forward() must repeat one timestep's chain")
        if c.out is not None:
            self.prov[id(c.out)] = self.slot_node[slot]

    def _place(self, k: int, c: torch_trace.Call, src: str, label: str) -> None:
        once = self.reps > 1 and self.calls_of[id(c.module)] == 1
        if once and (_is_neuron(c.module) or src not in self.const):
            raise ModelError(f"{label}: runs once while the loop over time runs {self.reps} times; only "
                             "layers applied at every timestep (or stateless layers on the input) convert")
        name = self._unique((c.name or type(c.module).__name__.lower()).replace(".", "_"))
        node = _node(name, c.module, [src], self.shapes[src])
        self.slot_src[k] = src
        if node is None:  # skipped (identity at inference)
            self.slot_node[k] = src
            return
        self._add(node)
        traced = tuple(int(s) for s in c.out.shape[1:]) if c.out is not None else None
        if traced is not None and traced != self.shapes[name]:
            raise ModelError(f"{label}: output shape {traced} differs from the converted layer's "
                             f"{self.shapes[name]}; forward() must pass (B, ...) tensors between layers")
        self.slot_node[k], self.leaf_label[name] = name, label
        if once:
            self.const.add(name)

    # -- operations between calls -----------------------------------------------------
    def _op(self, op: torch_trace.Op) -> None:
        srcs = [self.prov.get(id(t)) for t in op.tensors]
        for out in op.outputs:
            if any(out is t for t in op.tensors) and not op.name.endswith("_"):
                continue  # returned its input unchanged (e.g. .float() of a float tensor)
            self.prov[id(out)] = self._op_value(op, srcs, out)

    def _op_value(self, op: torch_trace.Op, srcs: list, out: torch.Tensor) -> str | _Unplaced:
        ins = op.tensors
        known = bool(srcs) and all(isinstance(s, str) for s in srcs)
        if op.name in ADD_OPS and known and len(ins) == 2 and len(op.args) == 2 and not op.kwargs \
                and ins[0].shape == ins[1].shape == out.shape:
            return self._op_node(("add", *srcs), lambda n: ir.Add(n, list(srcs)))
        if op.name in RESHAPE_OPS and known and len(ins) == 1:
            if out.shape == ins[0].shape:
                return srcs[0]
            if out.dim() == 2 and ins[0].dim() > 2 and out.shape[0] == ins[0].shape[0]:
                return self._op_node(("flatten", srcs[0]), lambda n: ir.Flatten(n, [srcs[0]]))
        if op.name in ALIAS_OPS and known and len(ins) == 1 and out.shape == ins[0].shape \
                and out.dtype == ins[0].dtype:
            return srcs[0]
        return _Unplaced(op.name)

    def _op_node(self, key: tuple, make) -> str | _Unplaced:
        if key in self.ops:
            return self.ops[key]
        if not self.window:  # a structure that appears only after the first timestep
            return _Unplaced(key[0])
        node = make(self._unique(key[0]))
        self._add(node)
        if all(i in self.const for i in node.inputs):
            self.const.add(node.name)
        self.ops[key] = node.name
        return node.name

    # -- bookkeeping ------------------------------------------------------------------
    def _unique(self, base: str) -> str:
        name, i = base, 2
        while name in self.shapes:
            name, i = f"{base}_{i}", i + 1
        return name

    def _add(self, node: ir.Node) -> None:
        in_shapes = [self.shapes[i] for i in node.inputs]
        node.validate(in_shapes)
        self.shapes[node.name] = tuple(int(s) for s in node.out_shape(in_shapes))
        self.nodes.append(node)
        if self.window:
            self.output = node.name

    def _prune(self) -> list[ir.Node]:
        """Drop operations nothing consumes; a layer whose output is unused is an error."""
        nodes = list(self.nodes)
        while True:
            used = {i for n in nodes for i in n.inputs}
            dead = [n for n in nodes if n.name not in used and n.name != self.output]
            if not dead:
                return nodes
            for n in dead:
                if n.name in self.leaf_label:
                    raise ModelError(f"{self.leaf_label[n.name]}: its output does not reach the network "
                                     f"output '{self.output}'; forward() must be a chain of layers "
                                     "(residual adds allowed)")
            nodes = [n for n in nodes if n not in dead]
