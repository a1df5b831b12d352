"""``deploy finetune``: hardware-aware retraining for the IMC targets (a thin wrapper over
:func:`deploy.finetune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, written
from deploy.cli_options import (
    ConfigOpt,
    DtOpt,
    EncodingOpt,
    ModelArg,
    ProgressOpt,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    count_option,
    float_option,
    int_option,
    out_option,
    runtime,
    seed_option,
    target_option,
)


def finetune_cmd(
    model: ModelArg,
    out: Annotated[Path, out_option("file", "retrained native checkpoint (.pt)")],
    target: Annotated[str, target_option("imc (1-bit SA) or imc-adc")] = "imc",
    epochs: Annotated[int, int_option("--epochs", help="training epochs (0: --reconstruct or --tail alone)", min=0)] = 25,
    data: Annotated[str, typer.Option(metavar="DATA", help="digits | mnist | events | a data file (.npz/.pt/.h5) with x, y, "
                                           "x_train, y_train")] = "digits",
    lr: Annotated[float, float_option("--lr", help="learning rate (Adam, cosine schedule)", min=0,
                                      min_open=True)] = 2e-3,
    progressive: Annotated[bool, typer.Option("--progressive", help="lower the conversion bits stage by "
                                                                     "stage down to the target's")] = False,
    noise: Annotated[bool, typer.Option("--noise", help="sample the configured non-idealities while "
                                                         "training")] = False,
    config: ConfigOpt = None,
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
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    train_samples: Annotated[int | None, count_option(
        "--train-samples", help="train on the first N training samples (events: N streams, default 512)")] = None,
    test_samples: Annotated[int | None, count_option(
        "--test-samples", help="evaluate on the first N test samples (events: N streams, default 128)")] = None,
    monitor_samples: Annotated[int | None, count_option(
        "--monitor-samples", help="per-epoch test accuracy on the first N test samples only (default: all)")] = None,
    match_rates: Annotated[bool, typer.Option("--match-rates", help="before training, rescale the LIF "
                                              "thresholds so every layer fires at its float rate on the "
                                              "target (deep networks whose layers fall silent)")] = False,
    reconstruct: Annotated[int, int_option(
        "--reconstruct", min=0,
        help="before training, fit every layer alone to its float counterpart with this many Adam steps "
             "per layer (layer-wise reconstruction; deep networks on 1-bit sense amplifiers)")] = 0,
    reconstruct_samples: Annotated[int, count_option(
        "--reconstruct-samples", help="training samples the reconstruction fits on (memory grows with them)")] = 64,
    tail: Annotated[int, int_option(
        "--tail", min=0,
        help="then train the last N synaptic layers jointly on the target's own spikes over the whole "
             "training split, keeping the epoch with the best accuracy on its held-out last eighth")] = 0,
    tail_epochs: Annotated[int, count_option("--tail-epochs", help="epochs of the --tail stage")] = 15,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
    progress: ProgressOpt = None,
    threads: Annotated[int, count_option("--threads", help="torch CPU threads (1 reproduces the shipped "
                                                           "checkpoints bit for bit)")] = 1,
) -> None:
    """Retrain MODEL with the IMC target's partial-sum quantization in the forward pass."""
    from deploy.api.finetune import finetune

    runtime(progress)
    _, meta = finetune(model, out, target=target, epochs=epochs, data=data, lr=lr, progressive=progressive,
                       noise=noise, config=config, seed=seed, split_seed=split_seed, batch_size=batch_size,
                       augment=augment, learn_scales=learn_scales, trust_pickle=trust_pickle, weights=weights,
                       train_samples=train_samples, test_samples=test_samples, monitor_samples=monitor_samples,
                       match_rates=match_rates, reconstruct=reconstruct,
                       reconstruct_samples=reconstruct_samples, tail=tail, tail_epochs=tail_epochs, dt=dt, encoding=encoding, timesteps=timesteps, threads=threads)
    acc, name = meta["accuracy"], meta["finetuned_for"]
    start = "before" if "init" in meta else "naive"          # a continued run starts from its learned steps
    console.print(f"{data} test accuracy: float {acc['float']:.4f} | {name} {start} {acc['naive']:.4f} | "
                  f"{name} retrained {acc['retrained']:.4f} ({len(meta['history'])} epochs)", markup=False)
    written("retrained model", out)


def register(app: typer.Typer) -> None:
    """Add ``deploy finetune`` to the CLI."""
    app.command("finetune")(finetune_cmd)
