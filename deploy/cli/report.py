"""``deploy report``: re-render a report, or compare several side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, written
from deploy.cli_options import out_option


def report_cmd(
    reports: Annotated[list[Path], typer.Argument(metavar="REPORT", help="report.json files", show_default=False)],
    out: Annotated[Path | None, out_option("folder", "folder for the re-rendered report(s)")] = None,
) -> None:
    """Re-render one report, or compare several side by side (ratios vs the first)."""
    from deploy.api.report import report
    from deploy.report.render import print_summary

    result = report(*reports, out=out)
    if len(reports) == 1:
        print_summary(result, console)
        return
    console.print(result, markup=False)
    if out is not None:
        written("comparison", out)


def register(app: typer.Typer) -> None:
    """Add ``deploy report`` to the CLI."""
    app.command("report")(report_cmd)
