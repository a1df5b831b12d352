"""``deploy convert``: an ANN checkpoint in, a native SNN checkpoint out (see :mod:`deploy.train.convert`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli_options import EncodingOpt, count_option, float_option, out_option, seed_option
from deploy.core.errors import DeployError

DATASETS = ("digits", "mnist")
#: samples per batch when the converted SNN is tested
EVAL_BATCH = 256


def convert_cmd(
    model: Annotated[str, typer.Argument(help="ANN: a neurodeploy-ann .pt, or a pickled nn.Module with --trust-pickle")],
    out: Annotated[Path, out_option("file", "SNN checkpoint to write")],
    method: Annotated[str, typer.Option(help="threshold-balance | clip")] = "threshold-balance",
    timesteps: Annotated[int, count_option("--timesteps", "-T", help="timesteps of the SNN")] = 32,
    data: Annotated[str | None, typer.Option(help="calibration and test data: digits | mnist")] = None,
    percentile: Annotated[float, float_option("--percentile", help="activation percentile for thresholds "
                                              "(100 = max)", min=0, max=100, min_open=True)] = 99.9,
    samples: Annotated[int, count_option("--samples", help="calibration samples from the training split")] = 2000,
    readout: Annotated[str, typer.Option(help="li (mean output current) | if (spike counts)")] = "li",
    no_shift: Annotated[bool, typer.Option("--no-shift", help="no theta/(2T) bias shift")] = False,
    seed: Annotated[int, seed_option("--seed", help="data split seed")] = 0,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="allow a pickled nn.Module (runs code)")] = False,
    encoding: EncodingOpt = None,
    max_memory: Annotated[str | None, typer.Option(
        "--max-memory", help="refuse a test run estimated to need more memory, e.g. 8G (default: half the RAM)")
    ] = None,
) -> None:
    """Convert a ReLU ANN into an IF spiking network and write a native checkpoint.

    --encoding sets the SNN's input encoding (default direct: pixels as input currents); an ANN has
    no time step, so --dt does not apply."""
    from rich.console import Console
    from rich.markup import escape

    from deploy.cli_options import check
    from deploy.core import data as datasets
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.io.atomic import shown
    from deploy.train import ann as annlib
    from deploy.train.convert import convert
    from deploy.train.snn import evaluate

    check(None, encoding, timesteps)
    if encoding == "events":
        raise DeployError("--encoding events does not apply to convert: the ANN takes images "
                          "(choose direct, rate or latency)")
    if data is not None and data not in DATASETS:
        raise DeployError(f"--data must be one of {', '.join(DATASETS)}, got {data!r}")
    if samples < 1:
        raise DeployError(f"--samples must be >= 1, got {samples}")
    if method == "threshold-balance" and data is None:
        raise DeployError("method 'threshold-balance' needs calibration data: pass --data digits|mnist "
                          "(or use --method clip with a TCL-trained ANN)")
    net = annlib.load(model, trust_pickle=trust_pickle)
    split = datasets.load(data, seed=seed) if data else None
    graph = convert(net, method=method, timesteps=timesteps, data=split, percentile=percentile, samples=samples,
                    shift=not no_shift, readout=readout, name=Path(out).stem, seed=seed)
    if encoding is not None:
        graph.encoding = encoding
        graph.validate()
    meta = {"source": str(model), "converted_with": "deploy convert"}
    console = Console()
    if split is not None:
        from deploy.core.budget import check_budget, estimate_bytes, parse_size

        check_budget(estimate_bytes(graph, min(EVAL_BATCH, len(split.x_test)), timesteps),
                     f"testing the converted SNN (T={timesteps})",
                     None if max_memory is None else parse_size(max_memory), hint="lower -T")
        shape = graph.input_shape
        meta["ann_accuracy"] = annlib.evaluate(_shaped(net, shape), split.x_test, split.y_test)
        meta["test_accuracy"] = evaluate(SpikingNet(graph), split.x_test, split.y_test, EVAL_BATCH)
        meta["dataset"] = data
        console.print(f"{data} test split: ANN {meta['ann_accuracy']:.4f}, SNN (T={timesteps}) "
                      f"{meta['test_accuracy']:.4f}")
    native.save(graph, out, meta=meta)
    console.print(f"converted ({method}) -> [bold]{escape(shown(out))}[/bold]")


def _shaped(net, shape):
    """Give a module without ``input_shape`` the converted graph's input shape for evaluation."""
    if getattr(net, "input_shape", None) is None:
        net.input_shape = tuple(shape)
    return net


def register(app: typer.Typer) -> None:
    """Add ``deploy convert`` to the CLI."""
    app.command("convert")(convert_cmd)
