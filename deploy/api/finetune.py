"""``deploy.finetune``: hardware-aware retraining for the IMC targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core import progress as bars
from deploy.core.errors import DataError, DeployError

DATASETS = ("digits", "mnist", "events")


def limit_split(split, train_samples: int | None, test_samples: int | None):
    """The first ``train_samples`` training and ``test_samples`` test samples of ``split``."""
    from deploy.core.data import Split

    for opt, n in (("--train-samples", train_samples), ("--test-samples", test_samples)):
        if n is not None and n < 1:
            raise DataError(f"{opt} must be >= 1, got {n}")
    return Split(split.name, split.x_train[:train_samples], split.y_train[:train_samples],
                 split.x_test[:test_samples], split.y_test[:test_samples])


def _prior(model: Any) -> dict[str, Any]:
    """What a continued run started from: the checkpoint path and how it was retrained."""
    from deploy.io import native

    if not isinstance(model, (str, Path)) or not str(model).endswith(".pt"):
        return {"model": type(model).__name__}
    doc = native.read_checkpoint(model)            # already loaded once: readable
    meta = dict(doc.get("meta") or {}) if isinstance(doc, dict) else {}
    keep = ("trained_with", "dataset", "train_samples", "reconstruct", "reconstruct_samples", "tail_layers", "epochs",
            "seed", "accuracy")
    return {"model": str(model), **{k: meta[k] for k in keep if k in meta}}


def finetune(model: Any, out: str | Path | None = None, *, target: str = "imc", epochs: int = 25,
             data: str = "digits", lr: float = 2e-3, progressive: bool = False, noise: bool = False,
             config: str | None = None, seed: int = 0, split_seed: int = 0, batch_size: int = 64,
             augment: int = 0, learn_scales: bool = True, trust_pickle: bool = False, weights: str | None = None,
             train_samples: int | None = None, test_samples: int | None = None,
             monitor_samples: int | None = None, match_rates: bool = False, reconstruct: int = 0,
             reconstruct_samples: int = 64, tail: int = 0, tail_epochs: int = 15, dt: float | None = None,
             encoding: str | None = None, timesteps: int | None = None,
             threads: int = 1, progress: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """Retrain ``model`` with the IMC target's partial-sum quantization in the forward pass.

    Returns the retrained graph and its metadata (``accuracy``: float, naive on the target,
    retrained on the target; ``history``: one record per epoch); with ``out``, also writes the
    native checkpoint. The options are those of ``deploy finetune``; ``threads``: torch CPU threads
    (1, the default, reproduces the shipped checkpoints bit for bit)."""
    import torch

    from deploy import userdata
    from deploy.cli_options import check, load
    from deploy.core import data as datasets
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.training.finetune import finetune as run
    from deploy.training.finetune import keeps_learned_steps
    from deploy.training.snn import evaluate
    from hwmodels import get_target
    from hwmodels.imc import ImcTarget

    check(dt, encoding, timesteps)
    if data not in DATASETS and not userdata.is_data_file(data):
        raise DataError(f"--data must be one of {', '.join(DATASETS)} or a data file, got {data!r}")
    if lr <= 0 or batch_size < 1:
        raise DeployError("--lr must be > 0 and --batch-size >= 1")
    torch.set_num_threads(threads)
    graph = load(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    tgt = get_target(target, config)
    if not isinstance(tgt, ImcTarget):
        raise DeployError(f"deploy finetune supports the IMC targets (imc, imc-adc), not '{target}'")
    if data == "events" and graph.encoding != "events":
        raise DataError(f"--data events needs a model with event input; '{graph.name}' has encoding "
                        f"'{graph.encoding}'")
    split = userdata.dataset_split(graph, data, split_seed, n_train=train_samples or 512,
                                   n_test=test_samples or 128)
    if userdata.is_data_file(data):  # a file may hold event frames for a direct model: fix the encoding
        split = userdata.fit_split(split, graph, fixed_encoding=encoding is not None)
        if not len(split.x_train):
            raise DataError(f"{data}: finetune trains, so the file needs 'x_train' and 'y_train' too")
    split = limit_split(split, train_samples, test_samples)
    x_test = datasets.fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    y_test = split.y_test

    def on_target(g) -> float:
        act = tgt.simulate(tgt.map(g), x_test, batch_size=batch_size)
        return float((act.predictions == y_test).float().mean())

    tuned, history = run(graph, tgt, split, epochs=epochs, lr=lr, progressive=progressive, noise=noise,
                         seed=seed, batch_size=batch_size, augment=augment, learn_scales=learn_scales,
                         progress=bars.enabled() if progress is None else progress,
                         monitor_samples=monitor_samples, match_rates_first=match_rates,
                         reconstruct_iters=reconstruct, reconstruct_samples=reconstruct_samples,
                         tail_layers=tail, tail_epochs=tail_epochs)
    float_acc = evaluate(SpikingNet(graph), split.x_test, y_test, batch_size=batch_size)
    meta = {"finetuned_for": tgt.name, "trained_with": "deploy finetune",
            "test_accuracy": evaluate(SpikingNet(tuned), split.x_test, y_test, batch_size=batch_size),
            "train_samples": len(split.x_train), "test_samples": len(y_test),
            "history": history, "match_rates": match_rates, "reconstruct": reconstruct,
            "reconstruct_samples": min(reconstruct_samples, len(split.x_train)) if reconstruct else 0,
            "tail_layers": tail, "tail_epochs": tail_epochs if tail else 0,
            "dataset": data, "epochs": epochs, "lr": lr, "progressive": progressive,
            "noise": noise, "seed": seed, "split_seed": split_seed, "augment": augment,
            "learn_scales": learn_scales,
            "accuracy": {"float": float_acc, "naive": on_target(graph), "retrained": on_target(tuned)}}
    if keeps_learned_steps(tgt, graph, epochs, progressive):     # continued from the learned steps
        meta["init"] = _prior(model)
    if out is not None:
        native.save(tuned, out, meta=meta)
    return tuned, meta

