"""``deploy.training.convert``: an ANN checkpoint in, a spiking graph (and optionally a native checkpoint) out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError

DATASETS = ("digits", "mnist")
#: training images threshold balancing is calibrated on by default
CALIBRATION_SAMPLES = 2000
#: samples per batch when the converted SNN is tested
EVAL_BATCH = 256


def convert(model: Any, out: str | Path | None = None, *, method: str = "threshold-balance", timesteps: int = 32,
            data: Any = None, percentile: float = 99.9, samples: int | None = None, readout: str = "li",
            shift: bool = True, seed: int = 0, trust_pickle: bool = False, encoding: str | None = None,
            max_memory: str | None = None, data_free: bool = False, per_class: int | None = None,
            synthesis_steps: int | None = None, progress: bool | None = None):
    """Convert a ReLU ANN (an ``nn.Module``, a neurodeploy-ann .pt, or a pickled module with
    ``trust_pickle``) into an IF spiking :class:`~deploy.core.ir.Graph` and return it; with ``data``
    (digits | mnist) its ``meta`` holds the ANN and SNN test accuracy (other ``data``: calibration
    inputs as :func:`deploy.training.convert.convert` takes them); with ``out``, the native checkpoint is
    written too.

    ``method``: threshold-balance (calibrated on ``samples`` images of ``data``'s training split,
    default 2000) or clip (thresholds from the ANN's trained clipping bounds); ``readout``: li (mean
    output current) or if (spike counts; the Loihi targets need it).

    ``data_free``: calibrate threshold balancing on class impressions synthesized from the ANN
    alone (:func:`deploy.training.data_free.synthetic_calibration_set`: ``per_class`` images per
    class, default 32, optimised for ``synthesis_steps`` steps, default 300, seeded by ``seed``)
    instead of training data; ``data`` then only names the split whose test part is reported.
    ``progress``: a bar over the synthesis steps (default: when stderr is a terminal)."""
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
    if samples is not None and samples < 1:
        raise DeployError(f"--samples must be >= 1, got {samples}")
    if data_free:
        _check_data_free(method, data, samples, per_class, synthesis_steps)
    elif per_class is not None or synthesis_steps is not None:
        raise DeployError("--per-class and --synthesis-steps size the synthetic calibration set: they apply "
                          "only with --data-free")
    elif method == "threshold-balance" and data is None:
        raise DeployError("method 'threshold-balance' needs calibration data: pass --data digits|mnist "
                          "(or use --method clip with a TCL-trained ANN)")
    from torch import nn

    net = model if isinstance(model, nn.Module) else annlib.load(model, trust_pickle=trust_pickle)
    split = datasets.load(data, seed=seed) if isinstance(data, str) else data
    meta: dict[str, Any] = {"source": str(model) if not isinstance(model, nn.Module) else type(model).__name__,
                            "converted_with": "deploy convert"}
    if data_free:
        calibration, meta_free = _synthesize(net, per_class, synthesis_steps, seed, progress)
        meta.update(meta_free)
        samples = len(calibration)
    else:
        calibration, samples = split, samples or CALIBRATION_SAMPLES
    graph = run(net, method=method, timesteps=timesteps, data=calibration, percentile=percentile, samples=samples,
                shift=shift, readout=readout, name=Path(out).stem if out is not None else None, seed=seed)
    if encoding is not None:
        graph.encoding = encoding
        graph.validate()
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


def _check_data_free(method: str, data: Any, samples: int | None, per_class: int | None,
                     synthesis_steps: int | None) -> None:
    """One-line errors for options that contradict a data-free conversion."""
    if method != "threshold-balance":
        raise DeployError(f"--data-free synthesizes calibration images for threshold balancing; method {method!r} "
                          "takes no calibration data")
    if samples is not None:
        raise DeployError("--samples counts training images; a data-free conversion reads none (size the "
                          "synthetic set with --per-class)")
    if data is not None and not isinstance(data, str):
        raise DeployError("with --data-free, --data only names the test split (digits | mnist); the "
                          "calibration images are synthesized")
    for flag, value in (("--per-class", per_class), ("--synthesis-steps", synthesis_steps)):
        if value is not None and value < 1:
            raise DeployError(f"{flag} must be >= 1, got {value}")


def _synthesize(net: Any, per_class: int | None, steps: int | None, seed: int,
                progress: bool | None) -> tuple[Any, dict[str, Any]]:
    """The synthetic calibration images of ``net`` and what the checkpoint records about them
    (``None``: the default budget of :mod:`deploy.training.data_free`)."""
    import torch

    from deploy.core import progress as bars
    from deploy.training.data_free import PER_CLASS, STEPS, synthetic_calibration_set

    per_class, steps = per_class or PER_CLASS, steps or STEPS
    x, y = synthetic_calibration_set(net, per_class=per_class, steps=steps, seed=seed,
                                     progress=bars.enabled() if progress is None else progress)
    with torch.no_grad():
        hit = float((net(x).argmax(-1) == y).float().mean())
    return x, {"data_free": True, "per_class": per_class, "synthesis_steps": steps, "synthesis_seed": seed,
               "synthetic_ann_accuracy": hit}
