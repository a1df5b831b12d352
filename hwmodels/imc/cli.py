"""``deploy finetune``: hardware-aware retraining for the IMC targets (a CLI plug-in)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from deploy.cli_options import (
    DtOpt,
    EncodingOpt,
    TimestepsOpt,
    count_option,
    float_option,
    int_option,
    out_option,
    seed_option,
)
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


def finetune_cmd(
    model: Annotated[str, typer.Argument(help="model: native .pt, NIR .nir/.h5, or file.py:factory")],
    out: Annotated[Path, out_option("file", "retrained native checkpoint (.pt)")],
    target: Annotated[str, typer.Option("--target", "-t", help="imc (1-bit SA) or imc-adc")] = "imc",
    epochs: Annotated[int, count_option("--epochs", help="training epochs")] = 25,
    data: Annotated[str, typer.Option(help="digits | mnist | events | a data file (.npz/.pt/.h5) with x, y, "
                                           "x_train, y_train")] = "digits",
    lr: Annotated[float, float_option("--lr", help="learning rate (Adam, cosine schedule)", min=0,
                                      min_open=True)] = 2e-3,
    progressive: Annotated[bool, typer.Option("--progressive", help="lower the conversion bits stage by "
                                                                     "stage down to the target's")] = False,
    noise: Annotated[bool, typer.Option("--noise", help="sample the configured non-idealities while "
                                                         "training")] = False,
    config: Annotated[str | None, typer.Option(help="YAML with spec constants / target options")] = None,
    seed: Annotated[int, seed_option("--seed", help="training seed (initial shuffling, noise samples)")] = 0,
    split_seed: Annotated[int, seed_option("--split-seed", help="seed of the train/test split; keep the one the model "
                                                 "was trained on, or its training images leak into the "
                                                 "test split")] = 0,
    batch_size: Annotated[int, count_option("--batch-size", help="training batch size")] = 64,
    augment: Annotated[int, int_option("--augment", help="one-pixel shifted copies of every training image (0-8)",
                                       min=0, max=8, rule="takes 0..8 copies")] = 0,
    learn_scales: Annotated[bool, typer.Option("--learn-scales/--max-scales",
                                               help="learn every output's weight scale, or keep "
                                                    "max|w| / qmax")] = True,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="allow loading pickled modules")] = False,
    weights: Annotated[str | None, typer.Option("--weights", help="state_dict for a file.py:factory model")] = None,
    train_samples: Annotated[int | None, count_option(
        "--train-samples", help="train on the first N training samples (events: N streams, default 512)")] = None,
    test_samples: Annotated[int | None, count_option(
        "--test-samples", help="evaluate on the first N test samples (events: N streams, default 128)")] = None,
    monitor_samples: Annotated[int | None, count_option(
        "--monitor-samples", help="per-epoch test accuracy on the first N test samples only (default: all)")] = None,
    match_rates: Annotated[bool, typer.Option("--match-rates", help="before training, rescale the LIF "
                                              "thresholds so every layer fires at its float rate on the "
                                              "target (deep networks whose layers fall silent)")] = False,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Retrain MODEL with the IMC target's partial-sum quantization in the forward pass."""
    from rich.console import Console

    from deploy import userdata
    from deploy.cli_options import check, load
    from deploy.core import data as datasets
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.train.finetune import finetune
    from deploy.train.snn import evaluate
    from hwmodels import get_target
    from hwmodels.imc import ImcTarget

    check(dt, encoding, timesteps)
    if data not in DATASETS and not userdata.is_data_file(data):
        raise DataError(f"--data must be one of {', '.join(DATASETS)} or a data file, got {data!r}")
    if lr <= 0 or batch_size < 1:
        raise DeployError("--lr must be > 0 and --batch-size >= 1")
    torch.set_num_threads(1)
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

    tuned, history = finetune(graph, tgt, split, epochs=epochs, lr=lr, progressive=progressive, noise=noise,
                              seed=seed, batch_size=batch_size, augment=augment, learn_scales=learn_scales,
                              progress=sys.stderr.isatty(), monitor_samples=monitor_samples,
                              match_rates_first=match_rates)
    float_acc = evaluate(SpikingNet(graph), split.x_test, y_test, batch_size=batch_size)
    naive = on_target(graph)
    retrained = on_target(tuned)
    native.save(tuned, out, meta={"finetuned_for": tgt.name, "trained_with": "deploy finetune",
                                  "test_accuracy": evaluate(SpikingNet(tuned), split.x_test, y_test,
                                                            batch_size=batch_size),
                                  "train_samples": len(split.x_train), "test_samples": len(y_test),
                                  "history": history, "match_rates": match_rates,
                                  "dataset": data, "epochs": epochs, "lr": lr, "progressive": progressive,
                                  "noise": noise, "seed": seed, "split_seed": split_seed, "augment": augment,
                                  "learn_scales": learn_scales,
                                  "accuracy": {"float": float_acc, "naive": naive, "retrained": retrained}})
    console = Console()
    console.print(f"{data} test accuracy: float {float_acc:.4f} | {tgt.name} naive {naive:.4f} | "
                  f"{tgt.name} retrained {retrained:.4f} ({len(history)} epochs)")
    console.print(f"retrained model written to [bold]{out}[/bold]")


def register(app: typer.Typer) -> None:
    """Add ``deploy finetune`` to the CLI."""
    app.command("finetune")(finetune_cmd)
