"""What a quantized graph costs and how well it does: memory, accuracy, and energy, latency and
cores on a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deploy.core import ir
from deploy.core.metrics import Activity, memory_totals


def memory(graph: ir.Graph) -> dict[str, float]:
    """Bytes at the stored precision: ``param_bytes``, ``state_bytes`` and ``memory_bytes``, the
    toolchain's one memory definition (:func:`deploy.core.metrics.memory_totals`)."""
    return memory_totals(graph)


#: samples per simulation batch, ``deploy compile``'s default: rate-encoded inputs draw their
#: spikes batch by batch, so the search and compile must batch alike to see the same inputs
BATCH_SIZE = 128


@dataclass
class Evaluation:
    """Accuracy (None when the target cannot run the graph), memory, and the target's costs."""

    accuracy: float | None
    memory: dict[str, float]
    energy_j: float | None = None
    latency_s: float | None = None
    cores: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, **self.memory, "energy_j": self.energy_j, "latency_s": self.latency_s,
                "cores": self.cores, "error": self.error}


def fixed_point_activity(graph: ir.Graph, x: torch.Tensor, batch_size: int = BATCH_SIZE,
                         generator: torch.Generator | None = None, progress: bool = False,
                         device: str | torch.device = "cpu") -> Activity:
    """Run the bit-true network of ``graph`` (:func:`quant.neurons.quantized_net`; float neurons
    where it records no formats) on model-shaped ``x``, on ``device``: the search's evaluation and
    the digital target's simulation of a quantized graph."""
    from deploy.core.device import simulate_on
    from quant.neurons import quantized_net

    return simulate_on(quantized_net(graph).eval(), graph, x, batch_size, generator, progress, device)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def evaluate(graph: ir.Graph, x: torch.Tensor, y: torch.Tensor, target=None, batch_size: int = BATCH_SIZE,
             seed: int = 0) -> Evaluation:
    """Accuracy and memory of ``graph`` on (x, y); on ``target`` (a :class:`hwmodels.base.Target`)
    also energy and latency per inference and the cores it occupies.

    Without a target the bit-true fixed-point network runs. A target whose
    ``bit_true`` is set simulates the graph itself, and its simulation gives the
    accuracy (what ``deploy compile`` reports, same batches and seed); otherwise
    the fixed-point run's activity is costed. A graph the target cannot map or
    run (:class:`~deploy.core.errors.TargetError`) gets ``accuracy=None`` and ``error``.
    """
    from deploy.core.data import fit_to_model
    from deploy.core.errors import TargetError

    x = fit_to_model(x, graph.input_shape, graph.encoding)
    mem = memory(graph)
    if target is None:
        return Evaluation(fixed_point_activity(graph, x, batch_size, _generator(seed)).accuracy(y), mem)
    try:
        mapping = target.map(graph)
        if target.bit_true:
            activity = target.simulate(mapping, x, batch_size=batch_size, generator=_generator(seed))
        else:
            activity = fixed_point_activity(graph, x, batch_size, _generator(seed))
        cost = target.cost(mapping, activity)
    except TargetError as exc:
        return Evaluation(None, mem, error=str(exc))
    return Evaluation(activity.accuracy(y), mem, float(cost.energy_j), float(cost.latency_s),
                      target.cores_used(mapping))
