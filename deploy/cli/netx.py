"""``deploy netx``: map a model onto Loihi and write it in lava-dl's netx HDF5 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, markup
from deploy.cli_options import (
    ConfigOpt,
    DtOpt,
    EncodingOpt,
    ModelArg,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    out_option,
    target_option,
)


def netx_cmd(
    model: ModelArg,
    out: Annotated[Path, out_option("file", "netx file to write (.net)")],
    target: Annotated[str, target_option("loihi | loihi2")] = "loihi",
    config: ConfigOpt = None,
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Map MODEL to Loihi fixed point (netx-compatible: dense weight exponent 0, bias exponent 6) and
    write it as a netx .net file."""
    from deploy.api.netx import netx
    from deploy.io.atomic import shown

    mapping = netx(model, out, target=target, config=config, trust_pickle=trust_pickle, weights=weights, dt=dt,
                   encoding=encoding, timesteps=timesteps)
    net = mapping.network
    errors = ", ".join(f"{c.name} {c.error.get('weight', 0):.3f}" for c in net.connections)
    console.print(f"{len(net.populations)} layers on {mapping.placement.cores} core(s) -> "
                  f"[bold]{markup(shown(out))}[/bold] (relative weight error: {errors})")
    feed = (f"graded x_q = round(x * {net.input_scale}) with input_message_bits=8" if net.graded_input
            else f"{net.encoding} input spikes")
    console.print(f"lava-dl: netx.hdf5.Network(net_config=...) takes {feed} at Network.inp; "
                  "its biases start at step 0 (reference timing='netx')", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``deploy netx`` to the CLI."""
    app.command("netx")(netx_cmd)
