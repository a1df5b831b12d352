"""``deploy compile``: map a model onto a target, simulate it and write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, written
from deploy.cli_options import (
    ConfigOpt,
    DataOpt,
    DtOpt,
    EncodingOpt,
    ModelArg,
    ProgressOpt,
    SamplesOpt,
    SplitSeedOpt,
    ThreadsOpt,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    count_option,
    float_option,
    out_option,
    runtime,
    seed_option,
    target_option,
)


def compile_cmd(
    model: ModelArg,
    target: Annotated[str, target_option()] = "digital",
    data: DataOpt = "digits",
    samples: SamplesOpt = None,
    timesteps: TimestepsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    config: ConfigOpt = None,
    compare: Annotated[str | None, typer.Option(metavar="TARGET", help="second target to compare against")] = None,
    out: Annotated[Path, out_option("folder", "output folder (replaced as a whole when it holds an "
                                              "earlier report)")] = Path("out/report"),
    seed: Annotated[int, seed_option("--seed", help="seed of the simulation: device noise, stochastic "
                                                    "rounding, rate/latency input spikes (not the data)")] = 0,
    split_seed: SplitSeedOpt = 0,
    rate: Annotated[float, float_option("--rate", help="assumed spikes per neuron per timestep with --data none "
                                                       "(1 = worst case)", min=0, max=1)] = 0.1,
    batch_size: Annotated[int | None, count_option(
        "--batch-size", help="simulation batch size, samples (default: from a memory budget)")] = None,
    device: Annotated[str, typer.Option(
        "--device", metavar="DEVICE",
        help="torch device of the digital and imc simulations and the float reference: cpu, cuda, cuda:1, "
             "... (loihi and loihi2 run on the CPU only and refuse it)")] = "cpu",
    no_reference: Annotated[bool, typer.Option("--no-reference", help="skip the float reference run")] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="skip PNG figures")] = False,
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    max_memory: Annotated[str | None, typer.Option(
        "--max-memory", metavar="SIZE",
        help="refuse runs estimated to need more RAM, bytes with K/M/G suffix, e.g. 8G (default: half the RAM)")
    ] = None,
    progress: ProgressOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Map MODEL onto a target, simulate it and write report.json/.md/.html and figures.

    --data none switches to assumed-rate mode (no accuracy)."""
    from deploy.api.compile import compile as run
    from deploy.report.render import print_summary

    runtime(progress, threads)
    report = run(model, target=target, data=data, samples=samples, timesteps=timesteps, config=config,
                 compare=compare, seed=seed, rate=rate, batch_size=batch_size, trust_pickle=trust_pickle,
                 weights=weights, dt=dt, encoding=encoding, split_seed=split_seed, max_memory=max_memory,
                 reference=not no_reference, device=device, out=out, figures=not no_figures)
    print_summary(report, console)
    written("report", out)


def register(app: typer.Typer) -> None:
    """Add ``deploy compile`` to the CLI."""
    app.command("compile")(compile_cmd)
