"""What a quantized graph costs and how well it does: memory, accuracy, energy on a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deploy import ir
from deploy.metrics import activity_from_record, memory_totals, merge


def memory(graph: ir.Graph) -> dict[str, float]:
    """Bytes at the stored precision: ``param_bytes``, ``state_bytes`` and ``memory_bytes``, the
    toolchain's one memory definition (:func:`deploy.metrics.memory_totals`)."""
    return memory_totals(graph)


@dataclass
class Evaluation:
    accuracy: float
    memory: dict[str, float]
    energy_j: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, **self.memory, "energy_j": self.energy_j}


def _own_simulator(target) -> bool:
    from hwmodels.base import Target

    return type(target).simulate is not Target.simulate


@torch.no_grad()
def evaluate(graph: ir.Graph, x: torch.Tensor, y: torch.Tensor, target=None, batch_size: int = 256,
             seed: int = 0) -> Evaluation:
    """Accuracy of the bit-true network (fixed-point neurons) on (x, y), memory, and energy per
    inference on ``target`` (a :class:`hwmodels.base.Target`) when given.

    Targets with a simulator of their own simulate the graph themselves; otherwise
    the fixed-point run's activity is costed.
    """
    from deploy.data import fit_to_model
    from quant.neurons import quantized_net

    x = fit_to_model(x, graph.input_shape, graph.encoding)
    net = quantized_net(graph).eval()
    record = target is not None and not _own_simulator(target)
    correct, parts = 0, []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(x), batch_size):
        out, values = net.run(x[i:i + batch_size], record=record, generator=gen)
        correct += int((net.logits(out).argmax(-1) == y[i:i + batch_size]).sum())
        if record:
            parts.append(activity_from_record(net.graph, values, out))
    energy = None
    if target is not None:
        mapping = target.map(graph)
        if record:
            activity = merge(parts)
        else:
            activity = target.simulate(mapping, x, batch_size=batch_size,
                                       generator=torch.Generator().manual_seed(seed))
        energy = float(target.cost(mapping, activity).energy_j)
    return Evaluation(correct / max(len(x), 1), memory(graph), energy)
