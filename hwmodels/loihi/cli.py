"""``deploy netx``: map a model onto Loihi and write it in lava-dl's netx HDF5 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli_options import DtOpt, EncodingOpt, TimestepsOpt, out_option
from deploy.core.errors import DeployError


def netx_cmd(
    model: Annotated[str, typer.Argument(help="model: native .pt, NIR .nir/.h5, or file.py:factory")],
    out: Annotated[Path, out_option("file", "netx file to write (.net)")],
    target: Annotated[str, typer.Option("--target", "-t", help="loihi | loihi2")] = "loihi",
    config: Annotated[str | None, typer.Option(help="YAML with spec constants / target options")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="allow pickled modules (runs code)")] = False,
    weights: Annotated[str | None, typer.Option(help="state_dict for a file.py:factory model")] = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Map MODEL to Loihi fixed point (netx-compatible: dense weight exponent 0, bias exponent 6) and
    write it as a netx .net file."""
    from rich.console import Console
    from rich.markup import escape

    from deploy.cli_options import check, load
    from deploy.io.atomic import shown
    from hwmodels import get_target
    from hwmodels.loihi import netx

    check(dt, encoding, timesteps)
    if target not in ("loihi", "loihi2"):
        raise DeployError(f"--target must be loihi or loihi2, got {target!r}")
    graph = load(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    tgt = get_target(target, config)
    tgt = tgt.with_options(netx=True, bias_exp=6)
    mapping = tgt.map(graph)
    netx.export(mapping.network, out)
    errors = ", ".join(f"{c.name} {c.error.get('weight', 0):.3f}" for c in mapping.network.connections)
    net = mapping.network
    Console().print(f"{len(net.populations)} layers on {mapping.placement.cores} core(s) -> "
                    f"[bold]{escape(shown(out))}[/bold] (relative weight error: {errors})")
    feed = (f"graded x_q = round(x * {net.input_scale}) with input_message_bits=8" if net.graded_input
            else f"{net.encoding} input spikes")
    Console().print(f"lava-dl: netx.hdf5.Network(net_config=...) takes {feed} at Network.inp; "
                    "its biases start at step 0 (reference timing='netx')", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``deploy netx`` to the CLI."""
    app.command("netx")(netx_cmd)
