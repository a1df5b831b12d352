"""``deploy.training.convert``: an ANN checkpoint in, a spiking graph (and optionally a native checkpoint) out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError

DATASETS = ("digits", "mnist")
#: samples per batch when the converted SNN is tested
EVAL_BATCH = 256


def convert(model: Any, out: str | Path | None = None, *, method: str = "threshold-balance", timesteps: int = 32,
            data: str | None = None, percentile: float = 99.9, samples: int = 2000, readout: str = "li",
            shift: bool = True, seed: int = 0, trust_pickle: bool = False, encoding: str | None = None,
            max_memory: str | None = None):
    """Convert a ReLU ANN (an ``nn.Module``, a neurodeploy-ann .pt, or a pickled module with
    ``trust_pickle``) into an IF spiking :class:`~deploy.core.ir.Graph` and return it; with ``data``
    (digits | mnist) its ``meta`` holds the ANN and SNN test accuracy (other ``data``: calibration
    inputs as :func:`deploy.training.convert.convert` takes them); with ``out``, the native checkpoint is
    written too.

    ``method``: threshold-balance (calibrated on ``data``'s training split) or clip (thresholds
    from the ANN's trained clipping bounds); ``readout``: li (mean output current) or if (spike
    counts; the Loihi targets need it)."""
    from deploy.cli_options import check
    from deploy.core import data as datasets
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.training import ann as annlib
    from deploy.training.convert import convert as run
    from deploy.training.snn import evaluate

    check(None, encoding, timesteps)
    if encoding == "events":
        raise DeployError("--encoding events does not apply to convert: the ANN takes images "
                          "(choose direct, rate or latency)")
    if isinstance(data, str) and data not in DATASETS:
        raise DeployError(f"--data must be one of {', '.join(DATASETS)}, got {data!r}")
    if samples < 1:
        raise DeployError(f"--samples must be >= 1, got {samples}")
    if method == "threshold-balance" and data is None:
        raise DeployError("method 'threshold-balance' needs calibration data: pass --data digits|mnist "
                          "(or use --method clip with a TCL-trained ANN)")
    from torch import nn

    net = model if isinstance(model, nn.Module) else annlib.load(model, trust_pickle=trust_pickle)
    split = datasets.load(data, seed=seed) if isinstance(data, str) else data
    graph = run(net, method=method, timesteps=timesteps, data=split, percentile=percentile, samples=samples,
                shift=shift, readout=readout, name=Path(out).stem if out is not None else None, seed=seed)
    if encoding is not None:
        graph.encoding = encoding
        graph.validate()
    meta: dict[str, Any] = {"source": str(model) if not isinstance(model, nn.Module) else type(model).__name__,
                            "converted_with": "deploy convert"}
    if isinstance(data, str):
        from deploy.core.budget import check_budget, estimate_bytes, parse_size

        check_budget(estimate_bytes(graph, min(EVAL_BATCH, len(split.x_test)), timesteps),
                     f"testing the converted SNN (T={timesteps})",
                     None if max_memory is None else parse_size(max_memory), hint="lower -T")
        if getattr(net, "input_shape", None) is None:
            net.input_shape = tuple(graph.input_shape)
        meta["ann_accuracy"] = annlib.evaluate(net, split.x_test, split.y_test)
        meta["test_accuracy"] = evaluate(SpikingNet(graph), split.x_test, split.y_test, EVAL_BATCH)
        meta["dataset"] = data
    graph.meta.update(meta)
    if out is not None:
        native.save(graph, out, meta=meta)
    return graph
