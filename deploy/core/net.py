"""A spiking network module built from (and written back to) a :class:`deploy.core.ir.Graph`.

Execution is layer-major: each node maps a time-major tensor ``(T, B, ...)`` to
the next, so stateless layers (linear, conv, pooling) run once on all
timesteps and only the neurons loop over time. Targets swap modules (e.g. a
crossbar model in place of ``nn.Linear``) and reuse the same forward.

Recurrent inputs (see :mod:`deploy.core.ir`) deliver the previous step's output. The
nodes from the first reader of a fed-back output to its source run step by
step: synapses on one step, time-aware modules (neurons) on the inputs so far,
keeping the last step, so their dynamics stay those of their own ``forward``
(quadratic in T for those nodes only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.encoding import encode
from deploy.core.neurons import LI, LIF
from deploy.core.timescale import TimeScaleModule


class SumPool2d(nn.AvgPool2d):
    """Sum pooling (average times the window size)."""

    def forward(self, x):
        k = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,) * 2
        return super().forward(x) * (k[0] * k[1])


class Add(nn.Module):
    def forward(self, *xs):
        return torch.stack(xs).sum(0)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float32)


def _neuron_value(t: torch.Tensor) -> float | np.ndarray:
    a = _np(t)
    return float(a) if a.ndim == 0 else a


def module_for(node: ir.Node) -> nn.Module:
    """The torch module that computes one IR node (per timestep for synapses)."""
    if isinstance(node, ir.Linear):
        m = nn.Linear(node.weight.shape[1], node.weight.shape[0], bias=node.bias is not None)
        m.weight.data = torch.from_numpy(np.array(node.weight, dtype=np.float32))
        if node.bias is not None:
            m.bias.data = torch.from_numpy(np.array(node.bias, dtype=np.float32))
        return m
    if isinstance(node, ir.Conv2d):
        w = node.weight
        m = nn.Conv2d(w.shape[1] * node.groups, w.shape[0], tuple(w.shape[2:]), stride=node.stride,
                      padding=node.padding, dilation=node.dilation, groups=node.groups,
                      bias=node.bias is not None)
        m.weight.data = torch.from_numpy(np.array(w, dtype=np.float32))
        if node.bias is not None:
            m.bias.data = torch.from_numpy(np.array(node.bias, dtype=np.float32))
        return m
    if isinstance(node, ir.Pool2d):
        cls = {"avg": nn.AvgPool2d, "sum": SumPool2d, "max": nn.MaxPool2d}[node.mode]
        return cls(node.kernel_size, node.stride, node.padding)
    if isinstance(node, ir.Flatten):
        return nn.Flatten(start_dim=1)
    if isinstance(node, ir.Add):
        return Add()
    if isinstance(node, ir.LIF):
        return LIF(node.beta, node.threshold, node.reset, node.alpha, reset_delay=node.reset_delay)
    if isinstance(node, ir.LI):
        return LI(node.beta)
    if isinstance(node, ir.TimeScale):
        return TimeScaleModule(node)
    builder = EXTRA_MODULES.get(node.kind)
    if builder is None:
        raise ir.ModelError(f"layer '{node.name}': no simulator for layer type '{node.kind}'")
    return builder(node)


#: kind -> function(node) -> module, for node types added by extensions.
EXTRA_MODULES: dict[str, Any] = {}
#: kind -> function(node, module) -> None, writing trained values back into the node.
EXTRA_WRITEBACK: dict[str, Any] = {}
#: kinds whose module runs on the whole (T, B, ...) tensor rather than per timestep.
TIME_AWARE_KINDS: set[str] = {*ir.NEURON_KINDS, ir.TimeScale.kind}


class SpikingNet(nn.Module):
    """Runs a Graph; ``forward(x)`` returns the output node's tensor (T, B, ...)."""

    def __init__(self, graph: ir.Graph):
        super().__init__()
        self.graph = graph.copy()
        self.graph.validate()
        self.layers = nn.ModuleDict({n.name: module_for(n) for n in self.graph.nodes})
        self._shapes = self.graph.shapes()
        self._spans = recurrent_spans(self.graph)

    # -- running -------------------------------------------------------------------
    @property
    def timesteps(self) -> int:
        return self.graph.timesteps

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return encode(x, self.graph.timesteps, self.graph.encoding, generator)

    def run(self, x: torch.Tensor, record: bool = False, generator: torch.Generator | None = None,
            encoded: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward pass. Returns (output, per-node outputs if ``record``); ``encoded``
        means ``x`` is already time-major (T, B, ...)."""
        s = x if encoded else self.encode(x, generator)
        values: dict[str, torch.Tensor] = {"input": s}
        nodes, i = self.graph.nodes, 0
        while i < len(nodes):
            if i in self._spans:
                self._run_steps(nodes[i:self._spans[i] + 1], values)
                i = self._spans[i] + 1
                continue
            node, i = nodes[i], i + 1
            values[node.name] = self.apply(node, values)
        out = values[self.graph.nodes[-1].name]
        if not record:
            values = {}
        return out, values

    def apply(self, node: ir.Node, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """``node``'s output (T, B, ...) over all timesteps from its inputs' in ``values``
        (a synapse or pool runs on the T*B frames at once, a neuron over time)."""
        layer = self.layers[node.name]
        ins = [delayed(values[n]) if n in node.recurrent else values[n] for n in node.inputs]
        if node.kind in TIME_AWARE_KINDS:
            return layer(*ins)
        t_steps, batch = ins[0].shape[:2]
        y = layer(*[v.reshape(t_steps * batch, *v.shape[2:]) for v in ins])
        return y.reshape(t_steps, batch, *y.shape[1:])

    def _run_steps(self, segment: list[ir.Node], values: dict[str, torch.Tensor]) -> None:
        """Run ``segment`` (a span closed by recurrent inputs) one timestep at a time."""
        ref = values["input"]
        t_steps, batch = ref.shape[:2]
        outs: dict[str, list[torch.Tensor]] = {n.name: [] for n in segment}
        seen: dict[str, list[list[torch.Tensor]]] = {n.name: [] for n in segment}

        def read(src: str, t: int) -> torch.Tensor:
            return outs[src][t] if src in outs else values[src][t]

        for t in range(t_steps):
            for node in segment:
                ins = [(read(n, t - 1) if t else ref.new_zeros(batch, *self._shapes[n]))
                       if n in node.recurrent else read(n, t) for n in node.inputs]
                layer = self.layers[node.name]
                if node.kind in TIME_AWARE_KINDS:
                    seen[node.name].append(ins)
                    hist = [torch.stack([step[k] for step in seen[node.name]]) for k in range(len(ins))]
                    y = layer(*hist)[-1]
                else:
                    y = layer(*ins)
                outs[node.name].append(y)
        values.update({name: torch.stack(ys) for name, ys in outs.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """Class scores from the output tensor: spike counts, or mean membrane for an LI readout."""
        return logits(self.graph, out)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        preds = [self.logits(self(x[i:i + batch_size])).argmax(-1) for i in range(0, len(x), batch_size)]
        return torch.cat(preds)

    # -- back to the IR -------------------------------------------------------------
    def to_graph(self) -> ir.Graph:
        """The graph with the module's current (trained) parameters."""
        g = self.graph.copy()
        for node in g.nodes:
            m = self.layers[node.name]
            if isinstance(node, (ir.Linear, ir.Conv2d)):
                node.weight = _np(m.weight)
                node.bias = _np(m.bias)
            elif isinstance(node, ir.LIF):
                node.beta, node.threshold = _neuron_value(m.beta.clamp(0, 1)), _neuron_value(m.threshold)
                node.alpha = _neuron_value(m.alpha)
            elif isinstance(node, ir.LI):
                node.beta = _neuron_value(m.beta)
            elif isinstance(node, ir.TimeScale):          # the simulator or a trainer (BNTT): folded()
                scale, shift = m.folded()
                node.scale, node.shift = _np(scale), _np(shift)
            elif node.kind in EXTRA_WRITEBACK:
                EXTRA_WRITEBACK[node.kind](node, m)
        return g.validate()


def delayed(x: torch.Tensor) -> torch.Tensor:
    """A time-major tensor one step late: zeros at t = 0, then ``x[t - 1]``."""
    return torch.cat([torch.zeros_like(x[:1]), x[:-1]])


def recurrent_spans(graph: ir.Graph) -> dict[int, int]:
    """{first: last} node indices of the spans that must run step by step: from a node
    reading a recurrent input to that input's source (overlapping spans merged)."""
    index = {n.name: i for i, n in enumerate(graph.nodes)}
    spans = sorted((index[dst], index[src]) for src, dst in graph.recurrent_edges() if index[src] >= index[dst])
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return {a: b for a, b in merged}


def logits(graph: ir.Graph, out: torch.Tensor) -> torch.Tensor:
    """Spike counts over time for a spiking output, mean membrane for an LI readout."""
    return out.mean(0) if graph.output.kind == "li" else out.sum(0)


# -- building fresh networks from a layer spec ------------------------------------------
def build(spec: dict[str, Any], seed: int = 0) -> SpikingNet:
    """Build an untrained network from a compact spec (dims inferred), e.g.::

        {"input_shape": [1, 8, 8], "timesteps": 8, "encoding": "direct",
         "layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
                    {"type": "lif", "beta": 0.9}, {"type": "flatten"},
                    {"type": "linear", "out_features": 10}, {"type": "lif"}]}

    Layer types: conv2d, linear, pool2d (mode avg|sum|max), flatten, lif, if, li.
    """
    torch.manual_seed(seed)
    shape = tuple(int(s) for s in spec["input_shape"])
    nodes: list[ir.Node] = []
    prev = "input"
    shapes = {"input": shape}
    for i, layer in enumerate(spec["layers"]):
        layer = dict(layer)
        kind = layer.pop("type")
        name = layer.pop("name", f"{kind}{i}")
        inputs = layer.pop("inputs", [prev])
        if inputs and inputs[0] not in shapes:
            raise ir.ModelError(f"layer '{name}': unknown input {inputs[0]!r}")
        shape = shapes[inputs[0]] if inputs else shape
        if kind == "linear":
            m = nn.Linear(int(np.prod(shape)), int(layer.pop("out_features")), bias=layer.pop("bias", True))
            node = ir.Linear(name, inputs, weight=_np(m.weight), bias=_np(m.bias))
        elif kind == "conv2d":
            m = nn.Conv2d(shape[0], int(layer.pop("out_channels")), layer.pop("kernel_size"),
                          stride=layer.pop("stride", 1), padding=layer.pop("padding", 0),
                          bias=layer.pop("bias", True))
            node = ir.Conv2d(name, inputs, weight=_np(m.weight), bias=_np(m.bias), stride=m.stride,
                             padding=m.padding)
        elif kind == "if":
            node = ir.LIF(name, inputs, beta=1.0, **layer)
            layer = {}
        elif ir.node_type(kind) is not None:
            node = ir.node_type(kind)(name=name, inputs=inputs, **layer)
            layer = {}
        else:
            raise ir.ModelError(f"layer '{name}': unknown layer type {kind!r}")
        if layer:
            raise ir.ModelError(f"layer '{name}': unknown options {sorted(layer)}")
        shape = node.out_shape([shape])
        shapes[name] = shape
        nodes.append(node)
        prev = name
    graph = ir.Graph(input_shape=tuple(spec["input_shape"]), nodes=nodes,
                     timesteps=int(spec.get("timesteps", 8)), encoding=spec.get("encoding", "direct"),
                     name=spec.get("name", "model"))
    return SpikingNet(graph)
