"""``deploy explore SPACE.yaml -o OUT``: the CLI form of :func:`deploy.explore`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from deploy.cli_options import count_option, out_option


def explore_cmd(
    space: Annotated[Path, typer.Argument(help="space file (YAML): model, data, targets and their option "
                                               "lists, quant, objectives, search")],
    out: Annotated[Path, out_option("folder", "output folder; rerunning on it skips finished points")] = Path(
        "out/explore"),
    address: Annotated[str | None, typer.Option(
        "--address", help="join a running Ray cluster (e.g. 10.0.0.1:6379 or 'auto'); default: a local Ray")] = None,
    cpus: Annotated[int | None, count_option("--cpus", help="CPUs of the local Ray (default: all)")] = None,
    cpus_per_trial: Annotated[int, count_option("--cpus-per-trial", help="CPUs (and torch threads) per trial")] = 1,
) -> None:
    """Deploy every point of a design space as a Ray Tune trial; write results.csv, results.parquet, report.html,
    pareto.json and pareto.png, and print the Pareto front. Finished points are kept in
    OUT/trials/ as they finish, so a rerun (or a run on a grown space) computes only new points."""
    from rich.console import Console

    from deploy.explore.api import explore

    console = Console()
    result = explore(space, out, address=address, cpus=cpus, cpus_per_trial=cpus_per_trial,
                     progress=sys.stderr.isatty(), console=console)
    console.print(f"{len(result.rows)} points: {len(result.computed)} computed, {result.skipped} already "
                  f"finished; {result.wall_s:.1f} s; results in {result.out}", markup=False, highlight=False)
    if result.errors:
        sys.stderr.write(f"warning: {len(result.errors)} trials failed and are not stored (a rerun retries "
                         f"them); first: {result.errors[0]}\n")


def register(app: typer.Typer) -> None:
    """Add ``deploy explore`` to the CLI."""
    app.command("explore")(explore_cmd)
