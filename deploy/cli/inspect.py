"""``deploy inspect``: a model's layers, parameters and memory at the stored precision."""

from __future__ import annotations

import typer

from deploy.cli.app import console
from deploy.cli_options import DtOpt, EncodingOpt, ModelArg, TimestepsOpt, TrustOpt, WeightsOpt


def inspect_cmd(model: ModelArg, trust_pickle: TrustOpt = False, weights: WeightsOpt = None, dt: DtOpt = None,
                encoding: EncodingOpt = None, timesteps: TimestepsOpt = None) -> None:
    """Print the graph, parameter counts and memory at the stored precision."""
    from deploy.api.inspect import inspect
    from deploy.core.summary import graph_table
    from deploy.report.render import human

    info = inspect(model, trust_pickle=trust_pickle, weights=weights, dt=dt, encoding=encoding,
                   timesteps=timesteps)
    console.print(graph_table(info["graph"], info["layers"]))
    state = sum(r["state_bytes"] for r in info["layers"])
    console.print(f"memory {human(info['memory_bytes'], 'B')} = weights and neuron parameters at their stored "
                  f"precision {human(info['memory_bytes'] - state, 'B')} + neuron state {human(state, 'B')} "
                  "(1 KB = 1024 B); every target's report starts from this figure")


def register(app: typer.Typer) -> None:
    """Add ``deploy inspect`` to the CLI."""
    app.command("inspect")(inspect_cmd)
