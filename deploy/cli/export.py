"""``deploy export``: write a model as NIR, ONNX or a native checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import written
from deploy.cli_options import (
    DtOpt,
    EncodingOpt,
    ModelArg,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    out_option,
)


def export_cmd(
    model: ModelArg,
    to: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT",
                                    help="nir | onnx (synaptic layers) | native", show_default=False)],
    out: Annotated[Path, out_option("file", "output file")],
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Write MODEL as NIR, ONNX (synaptic layers) or a native checkpoint (Lava-dl netx: `deploy netx`).

    --dt is the step a NIR model is read with and a NIR file is written with."""
    from deploy.api.export import export

    export(model, to, out, trust_pickle=trust_pickle, weights=weights, dt=dt, encoding=encoding,
           timesteps=timesteps)
    written(f"{to} model", out)


def register(app: typer.Typer) -> None:
    """Add ``deploy export`` to the CLI."""
    app.command("export")(export_cmd)
