"""One point of a design space: quantize, optionally retrain on the target, compile, measure.

The work is the toolchain's own: :func:`quant.quantize`, :func:`deploy.training.finetune`
and :func:`deploy.pipeline.compile`, in that order, all seeded with the point's seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.core import ir
from deploy.explore.space import OBJECTIVES, Space


@dataclass(frozen=True)
class Context:
    """What every point of a run shares: the data, the samples and the seeds' origin.

    ``as_key()`` (with the model's sha256) enters each point's key, so a changed model,
    data set, sample count or seed makes new points.
    """

    model_sha256: str
    data: str
    samples: int
    seed: int
    split_seed: int

    @classmethod
    def of(cls, space: Space) -> Context:
        """The context of a space's points: its data, samples and seeds, and the sha256 of its
        model file (of the reference string itself when it names no file, e.g. a factory)."""
        path = Path(space.model.split(":")[0])
        digest = hashlib.sha256(path.read_bytes() if path.is_file() else space.model.encode()).hexdigest()
        return cls(digest, space.data, space.samples, space.seed, space.split_seed)

    def as_key(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "data": self.data, "samples": self.samples,
                "seed": self.seed, "split_seed": self.split_seed}


def metrics_of(report: Any) -> dict[str, float | None]:
    """The objectives of a compile report, by the field names of :data:`OBJECTIVES`."""
    totals = report.totals
    cores = [row.resources.get("cores") for row in report.layers]
    return {
        OBJECTIVES["accuracy"][0]: report.accuracy.deployed if report.accuracy else None,
        OBJECTIVES["energy"][0]: totals.energy_j,
        OBJECTIVES["latency"][0]: totals.latency_s,
        OBJECTIVES["memory"][0]: totals.memory_bytes,
        OBJECTIVES["area"][0]: totals.area_mm2,
        OBJECTIVES["cores"][0]: float(sum(c for c in cores if c is not None))
        if any(c is not None for c in cores) else None,
    }


def prepare(graph: ir.Graph, point: dict[str, Any], ctx: Context, seed: int) -> tuple[ir.Graph, Any]:
    """The graph a point deploys and the target instance it deploys on: quantized with the
    point's precision (PTQ or QAT on the training split), then retrained on the target when
    the point asks for it."""
    import quant
    from deploy import userdata
    from hwmodels import target_class

    target = target_class(point["target"])(options=dict(point["options"]))
    g = graph.copy()
    split = None
    if point.get("quant") or point.get("finetune"):
        split = userdata.split_for(g, ctx.data, ctx.split_seed, n_test=ctx.samples)
    if point.get("quant"):
        q = point["quant"]
        g = quant.quantize(g, weight_bits=q["weight_bits"], neuron_bits=q["neuron_bits"], scheme=q["scheme"],
                           data=split, seed=seed)
    if point.get("finetune"):
        from deploy.training.finetune import finetune

        g, _ = finetune(g, target, split, epochs=point["finetune"]["epochs"], seed=seed)
    return g, target


def run_point(graph: ir.Graph, point: dict[str, Any], ctx: Context, seed: int) -> tuple[dict[str, Any], Any]:
    """Deploy one point; returns its objectives (:func:`metrics_of`) and its compile report."""
    from deploy.pipeline import compile as run_compile

    g, target = prepare(graph, point, ctx, seed)
    report = run_compile(g, target=target, data=ctx.data, samples=ctx.samples, seed=seed,
                         split_seed=ctx.split_seed)
    return metrics_of(report), report
