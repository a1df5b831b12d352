"""Activity and NeuroBench-style metrics from a recorded run.

Synaptic operations follow NeuroBench: *dense* counts every multiply-accumulate
of the layer; *effective* counts only those whose input is non-zero; a layer's
effective ops are accumulates (ACs) when every input is in {-1, 0, 1}, else
MACs. Counts are per inference (one sample, all timesteps).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from deploy.core import ir


@dataclass
class LayerActivity:
    """What one node did, averaged per sample."""

    name: str
    kind: str
    neurons: int = 0
    spikes: float = 0.0           # output spikes (neuron nodes)
    spike_rate: float = 0.0       # spikes / (neurons * T)
    input_events: float = 0.0     # non-zero inputs (synapse nodes)
    input_rate: float = 0.0       # non-zero inputs / (inputs * T)
    binary_input: bool = True     # every input in {-1, 0, 1}
    synops_dense: float = 0.0
    synops_effective: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)   # target-specific counters

    @property
    def op_type(self) -> str:
        return "AC" if self.binary_input else "MAC"


@dataclass
class Activity:
    """Per-layer activity of a run plus its outputs and predictions."""

    timesteps: int
    samples: int
    layers: dict[str, LayerActivity]
    predictions: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    def total(self, key: str) -> float:
        return float(sum(getattr(la, key) for la in self.layers.values()))

    def accuracy(self, y: torch.Tensor) -> float:
        """Correct predictions / samples as an exact fraction (the search and compile report the same)."""
        return int((self.predictions == y).sum()) / max(len(y), 1)

    def sparsity(self) -> float:
        """NeuroBench activation sparsity: 1 - spikes / (neurons * T) over spiking layers."""
        spiking = [la for la in self.layers.values() if la.kind == "lif"]
        capacity = sum(la.neurons for la in spiking) * self.timesteps
        return 1.0 - sum(la.spikes for la in spiking) / capacity if capacity else 0.0

    def to_dict(self) -> dict:
        return {name: asdict(la) for name, la in self.layers.items()}


# -- memory: one definition for inspect, every target, quantize and the report ---------------
@dataclass(frozen=True)
class LayerMemory:
    """Bytes one node needs at its stored precision (sub-byte precisions included).

    ``weights``: synaptic arrays (weight, bias, weight scale); ``neuron_params``:
    the parameters of every other node (beta, threshold, alpha; per-timestep
    scales); ``state``: one membrane register per neuron (``precision["membrane"]``
    bits) and one synaptic-current register per neuron where ``alpha != 0``
    (``precision["current"]``). Absent precisions are float32.
    """

    weights: float = 0.0
    neuron_params: float = 0.0
    state: float = 0.0

    @property
    def params(self) -> float:
        return self.weights + self.neuron_params

    @property
    def total(self) -> float:
        return self.weights + self.neuron_params + self.state


def array_bytes(node: ir.Node, key: str) -> float:
    """Bytes of one stored quantity of ``node`` at its precision: an array, or a scalar
    neuron parameter (beta, threshold, alpha); 0 when the node has none."""
    val = getattr(node, key, None)
    if val is None:
        return 0.0
    size = val.size if isinstance(val, np.ndarray) else 1
    return size * node.precision.get(key, 32) / 8


def layer_memory(graph: ir.Graph) -> dict[str, LayerMemory]:
    """Memory per node: weights at stored precision + neuron parameters + neuron state, in bytes.

    The one definition of memory (printed with 1 KB = 1024 B); targets
    report their own overheads on top of it as named extras.
    """
    shapes = graph.shapes()
    out: dict[str, LayerMemory] = {}
    for n in graph.nodes:
        keys = list(n.arrays())
        if isinstance(n, (ir.LIF, ir.LI)):
            keys += [k for k in ("beta", "threshold", "alpha")
                     if k not in keys and getattr(n, k, None) is not None]
        params = float(sum(array_bytes(n, k) for k in keys))
        state = 0.0
        if n.kind in ir.NEURON_KINDS:
            size = int(np.prod(shapes[n.name]))
            bits = n.precision.get("membrane", 32)
            if isinstance(n, ir.LIF) and np.any(np.asarray(n.alpha) != 0):
                bits += n.precision.get("current", 32)
            state = size * bits / 8
        synapse = n.kind in ir.SYNAPSE_KINDS
        out[n.name] = LayerMemory(weights=params if synapse else 0.0,
                                  neuron_params=0.0 if synapse else params, state=state)
    return out


def memory_totals(graph: ir.Graph) -> dict[str, float]:
    """Whole-graph memory: ``param_bytes`` (weights + neuron parameters), ``state_bytes`` and
    their sum ``memory_bytes`` (see :func:`layer_memory`)."""
    mem = layer_memory(graph).values()
    params, state = float(sum(m.params for m in mem)), float(sum(m.state for m in mem))
    return {"param_bytes": params, "state_bytes": state, "memory_bytes": params + state}


def neurobench_footprint(graph: ir.Graph) -> float:
    """NeuroBench's own footprint: bytes of the parameters and buffers of the PyTorch module that
    runs ``graph`` (``numel * element_size``, float32 whatever the stored precision, no state)."""
    from deploy.core.net import SpikingNet

    net = SpikingNet(graph)
    return float(sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()]))


def dense_synops(node: ir.Node, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one timestep of a synaptic node."""
    if isinstance(node, ir.Linear):
        return int(node.weight.shape[0] * node.weight.shape[1])
    if isinstance(node, ir.Conv2d):
        return int(np.prod(out_shape) * node.weight.shape[1] * node.weight.shape[2] * node.weight.shape[3])
    return 0


def effective_synops(node: ir.Node, inputs: torch.Tensor) -> float:
    """Operations triggered by non-zero inputs over all timesteps and samples.

    ``inputs`` is time-major (T, B, ...). For a convolution the fan-out of each
    input depends on the border: each pixel's non-zero count is weighted by the
    number of output windows that hold it (:func:`conv_fanout`).
    """
    return synops_from_counts(node, nonzero_counts(node, inputs))


def nonzero_counts(node: ir.Node, inputs: torch.Tensor, spikes: bool = False) -> torch.Tensor:
    """Non-zero inputs of time-major ``inputs`` summed over time, batch (and channels, for a
    convolution): one count per input feature (linear) or per pixel, (H, W) (conv2d), float64.
    The column sums run in float32, exact while there are fewer than 2**24 rows. ``spikes``:
    the inputs are 0/1 already (a LIF's output) and are summed as they are."""
    size = tuple(inputs.shape[-2:]) if isinstance(node, ir.Conv2d) else (inputs.shape[-1],)
    nz = inputs if spikes and inputs.dtype == torch.float32 else inputs.ne(0).to(torch.float32)
    return nz.reshape(-1, math.prod(size)).sum(0).to(torch.float64).view(size)


def synops_from_counts(node: ir.Node, counts: torch.Tensor) -> float:
    """Effective synaptic operations from :func:`nonzero_counts`."""
    if isinstance(node, ir.Linear):
        return float(counts.sum()) * node.weight.shape[0]
    if isinstance(node, ir.Conv2d):
        # every input channel reaches out_c / groups outputs at each output position whose window
        # holds its pixel: weight each pixel's non-zero count by that pixel's fan-out
        fan = conv_fanout(node, tuple(counts.shape))
        return float((counts * fan).sum()) * (node.weight.shape[0] // node.groups)
    return 0.0


def conv_fanout(node: ir.Conv2d, size: tuple[int, int]) -> torch.Tensor:
    """How many output positions of ``node`` read each input pixel: (H, W) float64 (shared between
    calls with the same geometry: do not modify it)."""
    kh, kw = node.weight.shape[-2:]
    return _fanout((int(kh), int(kw)), tuple(node.stride), tuple(node.padding), tuple(node.dilation), tuple(size))


@functools.lru_cache(maxsize=256)
def _fanout(kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
            dilation: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    ones = torch.ones(1, 1, *size, dtype=torch.float64)
    window = torch.ones(1, 1, *kernel, dtype=torch.float64)
    out = F.conv2d(ones, window, stride=stride, padding=padding, dilation=dilation)
    expected = [(o - 1) * s - 2 * p + d * (k - 1) + 1 for o, s, p, d, k in
                zip(out.shape[-2:], stride, padding, dilation, kernel, strict=True)]
    pad = [n - e for n, e in zip(size, expected, strict=True)]
    fan = F.conv_transpose2d(torch.ones_like(out), window, stride=stride, padding=padding,
                             output_padding=pad, dilation=dilation)
    return fan[0, 0]


def activity_from_record(graph: ir.Graph, values: dict[str, torch.Tensor],
                         out: torch.Tensor | None = None) -> Activity:
    """Summarize a recorded run (``SpikingNet.run(..., record=True)``) per layer and sample."""
    from deploy.core.net import logits as readout

    shapes = graph.shapes()
    t_steps, batch = values["input"].shape[:2]
    layers: dict[str, LayerActivity] = {}
    for node in graph.nodes:
        la = LayerActivity(node.name, node.kind)
        y = values.get(node.name)
        if node.kind in ir.NEURON_KINDS and y is not None:
            la.neurons = int(np.prod(shapes[node.name]))
            if node.kind == "lif":
                la.spikes = float(y.detach().sum()) / batch
                la.spike_rate = la.spikes / (la.neurons * t_steps)
        if node.kind in ir.SYNAPSE_KINDS:
            x = values[node.inputs[0]]
            if node.inputs[0] in node.recurrent:  # delivered one step late: the last step never arrives
                x = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
            n_in = int(np.prod(shapes[node.inputs[0]]))
            spikes = ir.spike_source(graph, node.inputs[0]) is not None     # 0/1 by construction
            counts = nonzero_counts(node, x, spikes)
            la.input_events = float(counts.sum()) / batch
            la.input_rate = la.input_events / (n_in * t_steps)
            la.binary_input = spikes or torch.equal(x.abs(), x.ne(0).to(x.dtype))   # every non-zero input is +-1
            la.synops_dense = dense_synops(node, shapes[node.inputs[0]], shapes[node.name]) * t_steps
            la.synops_effective = synops_from_counts(node, counts) / batch
        layers[node.name] = la
    act = Activity(timesteps=int(t_steps), samples=int(batch), layers=layers)
    if out is not None:
        act.logits = readout(graph, out)
        act.predictions = act.logits.argmax(-1)
    return act


def merge(parts: list[Activity]) -> Activity:
    """Combine activities of several batches into a per-sample average over all of them."""
    total = sum(p.samples for p in parts)
    first = parts[0]
    layers = {}
    for name, la in first.layers.items():
        merged = LayerActivity(name, la.kind, neurons=la.neurons,
                               binary_input=all(p.layers[name].binary_input for p in parts))
        for key in ("spikes", "spike_rate", "input_events", "input_rate", "synops_dense", "synops_effective"):
            setattr(merged, key, sum(getattr(p.layers[name], key) * p.samples for p in parts) / total)
        keys = set().union(*(p.layers[name].extra for p in parts))
        merged.extra = {k: sum(p.layers[name].extra.get(k, 0.0) * p.samples for p in parts) / total
                        for k in keys}
        layers[name] = merged
    act = Activity(first.timesteps, total, layers)
    if all(p.predictions is not None for p in parts):
        act.predictions = torch.cat([p.predictions for p in parts])
        act.logits = torch.cat([p.logits for p in parts])
    return act


def assumed_activity(graph: ir.Graph, rate: float) -> Activity:
    """Activity with every spiking layer firing at ``rate`` (no data needed).

    Direct-encoded (analog) inputs count as dense; ``rate=1`` is the worst case.
    """
    shapes = graph.shapes()
    t_steps = graph.timesteps
    analog_input = graph.encoding == "direct"
    layers = {}
    for node in graph.nodes:
        la = LayerActivity(node.name, node.kind)
        if node.kind in ir.NEURON_KINDS:
            la.neurons = int(np.prod(shapes[node.name]))
            if node.kind == "lif":
                la.spike_rate = rate
                la.spikes = rate * la.neurons * t_steps
        if node.kind in ir.SYNAPSE_KINDS:
            from_input = _fed_by_input(graph, node)
            in_rate = 1.0 if (from_input and analog_input) else rate
            la.binary_input = not (from_input and analog_input)
            n_in = int(np.prod(shapes[node.inputs[0]]))
            la.input_rate = in_rate
            la.input_events = in_rate * n_in * t_steps
            la.synops_dense = dense_synops(node, shapes[node.inputs[0]], shapes[node.name]) * t_steps
            la.synops_effective = la.synops_dense * in_rate
        layers[node.name] = la
    return Activity(timesteps=t_steps, samples=0, layers=layers)


def _fed_by_input(graph: ir.Graph, node: ir.Node) -> bool:
    """True when only stateless reshaping (flatten, pooling) lies between ``node`` and the input."""
    src = node.inputs[0]
    while src != "input":
        prev = graph[src]
        if prev.kind not in ("flatten", "pool2d"):
            return False
        src = prev.inputs[0]
    return True


def simulate_module(net: torch.nn.Module, graph: ir.Graph, x: torch.Tensor, batch_size: int = 128,
                    generator: torch.Generator | None = None, progress: bool = False) -> Activity:
    """Run a SpikingNet-like module (``run(x, record=True)``) over ``x`` in batches.

    Streaming: each batch's recorded layer outputs are reduced to per-layer statistics
    (:func:`activity_from_record`) and dropped before the next batch, so peak memory is set
    by ``batch_size``, not by ``len(x)``. Runs under ``torch.inference_mode`` (no autograd
    graph; the neurons update in place)."""
    from deploy.core.errors import TargetError
    from deploy.core.progress import bar as progress_bar

    parts = []
    batches = range(0, len(x), batch_size)
    with torch.inference_mode():
        for i in progress_bar(batches, desc=f"simulate {graph.name}", disable=not progress, leave=False):
            out, values = net.run(x[i:i + batch_size], record=True, generator=generator)
            parts.append(activity_from_record(graph, values, out))
            del out, values
            extra = getattr(net, "pop_counters", None)
            if extra is not None:
                for name, counters in extra().items():
                    parts[-1].layers[name].extra.update(counters)
    if not parts:
        raise TargetError("no samples to simulate")
    return merge(parts)
