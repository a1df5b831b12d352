"""``deploy convert``: an ANN checkpoint in, a native SNN checkpoint out (see :mod:`deploy.training.convert`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, markup
from deploy.cli_options import (
    EncodingOpt,
    ProgressOpt,
    ThreadsOpt,
    count_option,
    float_option,
    out_option,
    runtime,
    seed_option,
)


def convert_cmd(
    model: Annotated[str, typer.Argument(metavar="ANN", help="ANN: a neurodeploy-ann .pt, or a pickled nn.Module with "
                                              "--trust-pickle", show_default=False)],
    out: Annotated[Path, out_option("file", "SNN checkpoint to write")],
    method: Annotated[str, typer.Option(metavar="METHOD", help="threshold-balance | clip")] = "threshold-balance",
    timesteps: Annotated[int, count_option("--timesteps", "-T", help="timesteps of the SNN")] = 32,
    data: Annotated[str | None, typer.Option(metavar="DATA", help="calibration and test data: digits | mnist")
                    ] = None,
    percentile: Annotated[float, float_option("--percentile", help="activation percentile for thresholds, % "
                                              "(100 = max)", min=0, max=100, min_open=True)] = 99.9,
    samples: Annotated[int | None, count_option("--samples", help="calibration samples from the training split "
                                                "(default: 2000)")] = None,
    data_free: Annotated[bool, typer.Option(
        "--data-free", help="calibrate on class impressions synthesized from the ANN alone (PrivateSNN), not on "
                            "training data; --data then only names the split whose test part is reported")] = False,
    per_class: Annotated[int | None, count_option("--per-class", help="with --data-free: synthetic images per class "
                                                  "(default: 32)")] = None,
    synthesis_steps: Annotated[int | None, count_option("--synthesis-steps", help="with --data-free: optimisation "
                                                        "steps per synthetic image (default: 300)")] = None,
    readout: Annotated[str, typer.Option(metavar="READOUT", help="li (mean output current) | if (spike counts; "
                                                                 "needed by loihi/loihi2)")] = "li",
    no_shift: Annotated[bool, typer.Option("--no-shift", help="no theta/(2T) bias shift")] = False,
    seed: Annotated[int, seed_option("--seed", help="data split seed (and synthesis seed with --data-free)")] = 0,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="allow a pickled nn.Module (runs code)")] = False,
    encoding: EncodingOpt = None,
    max_memory: Annotated[str | None, typer.Option(
        "--max-memory", metavar="SIZE",
        help="refuse a test run estimated to need more RAM, bytes with K/M/G suffix, e.g. 8G (default: half "
             "the RAM)")] = None,
    progress: ProgressOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Convert a ReLU ANN into an IF spiking network and write a native checkpoint.

    --data-free calibrates without training data: images are synthesized from the ANN itself (class
    impressions, with its batch-norm statistics as a prior); add --data digits|mnist to report
    accuracy on that split's test part.

    --encoding sets the SNN's input encoding (default direct: pixels as input currents); an ANN has
    no time step, so --dt does not apply."""
    from deploy.api.convert import convert
    from deploy.io.atomic import shown

    runtime(progress, threads)
    graph = convert(model, out, method=method, timesteps=timesteps, data=data, percentile=percentile,
                    samples=samples, readout=readout, shift=not no_shift, seed=seed, trust_pickle=trust_pickle,
                    encoding=encoding, max_memory=max_memory, data_free=data_free, per_class=per_class,
                    synthesis_steps=synthesis_steps)
    meta = graph.meta
    if data_free:
        console.print(f"calibration: {meta['calibration_samples']} synthetic images ({meta['per_class']} per class, "
                      f"{meta['synthesis_steps']} steps), no training data")
    if "test_accuracy" in meta:
        used = " (used only to report accuracy)" if data_free else ""
        console.print(f"{data} test split{used}: ANN {meta['ann_accuracy']:.4f}, SNN (T={timesteps}) "
                      f"{meta['test_accuracy']:.4f}")
    console.print(f"converted ({method}) -> [bold]{markup(shown(out))}[/bold]")


def register(app: typer.Typer) -> None:
    """Add ``deploy convert`` to the CLI."""
    app.command("convert")(convert_cmd)
