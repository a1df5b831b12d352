"""``deploy check``: does a model fit a target, and what would fix it. Exit 0 when it fits every
target checked, 1 when it does not, 2 on bad input."""

from __future__ import annotations

from typing import Annotated

import typer

from deploy.cli.app import console
from deploy.cli_options import (
    ConfigOpt,
    DtOpt,
    EncodingOpt,
    ModelArg,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    target_option,
)


def check_cmd(
    model: ModelArg,
    target: Annotated[list[str] | None, target_option("target to check against, repeatable (default: all)")] = None,
    config: ConfigOpt = None,
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Check MODEL against each target's constraints: every violation with its layer, resource,
    need and limit, and the fix when one exists."""
    from deploy.api.check import check

    found = check(model, target or None, config=config, trust_pickle=trust_pickle, weights=weights, dt=dt,
                  encoding=encoding, timesteps=timesteps)
    for name, problems in found.items():
        console.print(f"{name}: {'fits' if not problems else 'does not fit'}", markup=False, highlight=False)
        for p in problems:
            console.print(f"  - {p.message}", markup=False, highlight=False)
            if p.fix:
                console.print(f"    fix: {p.fix}", markup=False, highlight=False)
    bad = [n for n, p in found.items() if p]
    if bad:
        console.print(f"does not fit: {', '.join(bad)}", markup=False, highlight=False)
        raise typer.Exit(1)
    console.print("fits every target checked", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``deploy check`` to the CLI."""
    app.command("check")(check_cmd)
