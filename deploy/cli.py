"""The ``deploy`` command line: a thin wrapper over the Python API.

Errors on bad input are one line on stderr and exit code 2; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.cli_options import DataOpt, DtOpt, EncodingOpt, TimestepsOpt
from deploy.errors import DeployError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deploy spiking networks on simulated neuromorphic hardware and report their costs.")
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

#: modules that add commands with ``register(app)``, loaded when present
PLUGINS = ("quant.cli", "hwmodels.imc.cli", "hwmodels.loihi.cli", "deploy.distill.cli", "deploy.convert_cli")

ModelArg = Annotated[str, typer.Argument(help="model: native .pt, NIR .nir/.h5, or file.py:factory")]
TrustOpt = Annotated[bool, typer.Option("--trust-pickle", help="allow loading pickled modules (runs code)")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", help="state_dict for a file.py:factory model")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False) -> None:
    _state["debug"] = debug


@app.command("compile")
def compile_cmd(
    model: ModelArg,
    target: Annotated[str, typer.Option("--target", "-t", help="hardware target (see `deploy targets`)")] = "digital",
    data: DataOpt = "digits",
    samples: Annotated[int | None, typer.Option(help="test samples to simulate (default: all)")] = None,
    timesteps: TimestepsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    config: Annotated[str | None, typer.Option(help="YAML with spec constants / target options")] = None,
    compare: Annotated[str | None, typer.Option(help="second target to compare against")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")] = Path("out/report"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    rate: Annotated[float, typer.Option(help="assumed spike rate with --data none (1 = worst case)")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="simulation batch size")] = 128,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="skip PNG figures")] = False,
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    max_memory: Annotated[str | None, typer.Option(
        "--max-memory", help="refuse runs estimated to need more memory, e.g. 8G (default: half the RAM)")] = None,
) -> None:
    """Map MODEL onto a target, simulate it and write report.json/.md/.html and figures.

    --data none switches to assumed-rate mode (no accuracy)."""
    from deploy.pipeline import compile as run_compile
    from deploy.report.render import print_summary

    report = run_compile(model, target=target, data=None if data == "none" else data, samples=samples,
                         timesteps=timesteps, config=config, compare=compare, seed=seed, rate=rate,
                         batch_size=batch_size, progress=sys.stderr.isatty(), trust_pickle=trust_pickle,
                         weights=weights, dt=dt, encoding=encoding, max_memory=max_memory)
    report.save(out, figures=not no_figures)
    print_summary(report, console)
    console.print(f"report written to [bold]{out}[/bold]")


@app.command("report")
def report_cmd(
    reports: Annotated[list[Path], typer.Argument(help="report.json files")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="folder for the re-rendered report(s)")] = None,
) -> None:
    """Re-render one report, or compare several side by side (ratios vs the first)."""
    from deploy.io.atomic import staged_dir, write_text
    from deploy.report.render import print_summary, render_comparison
    from deploy.report.schema import Report

    loaded = [Report.load(p) for p in reports]
    if len(loaded) == 1:
        if out is not None:
            loaded[0].save(out)
        print_summary(loaded[0], console)
        return
    if out is None:
        console.print(render_comparison(loaded, None), markup=False)
        return
    with staged_dir(out) as stage:
        text = render_comparison(loaded, stage)
        write_text(stage / "comparison.md", text)
    console.print(text, markup=False)
    console.print(f"comparison written to [bold]{out}[/bold]")


@app.command("targets")
def targets_cmd() -> None:
    """List hardware targets and their spec files."""
    from hwmodels import TARGETS, available, target_class

    table = Table(title="targets")
    for col in ("target", "spec file", "description"):
        table.add_column(col)
    present = set(available())
    for name in TARGETS:
        if name not in present:
            table.add_row(name, "-", "(not installed)")
            continue
        cls = target_class(name)
        spec = Path(__file__).resolve().parents[1] / "hwmodels" / "specs" / f"{cls.spec_name}.yaml"
        table.add_row(name, str(spec.relative_to(Path.cwd()) if spec.is_relative_to(Path.cwd()) else spec),
                      cls.description)
    console.print(table)


@app.command("inspect")
def inspect_cmd(model: ModelArg, trust_pickle: TrustOpt = False, weights: WeightsOpt = None, dt: DtOpt = None,
                encoding: EncodingOpt = None, timesteps: TimestepsOpt = None) -> None:
    """Print the graph, parameter counts and memory at the stored precision."""
    from deploy.pipeline import inspect
    from deploy.report.render import human

    info = inspect(model, trust_pickle=trust_pickle, weights=weights, dt=dt, encoding=encoding,
                   timesteps=timesteps)
    graph = info["graph"]
    table = Table(title=f"{info['name']}: input {tuple(info['input_shape'])}, T={info['timesteps']}, "
                        f"{info['encoding']} encoding")
    for col in ("layer", "kind", "inputs", "output shape", "params", "precision", "memory"):
        table.add_column(col, justify="right" if col in ("params", "memory") else "left")
    for row, node in zip(info["layers"], graph.nodes, strict=True):
        prec = ", ".join(f"{k}:{v}b" for k, v in node.precision.items()) or "float32"
        table.add_row(row["name"], row["kind"], ",".join(node.inputs), str(tuple(row["shape"])),
                      f"{row['params']:,}", prec, human(row["memory_bytes"], "B"))
    table.add_section()
    table.add_row("total", "", "", "", f"{info['params']:,}", "", human(info["memory_bytes"], "B"))
    console.print(table)
    state = sum(r["state_bytes"] for r in info["layers"])
    console.print(f"memory {human(info['memory_bytes'], 'B')} = weights and neuron parameters at their stored "
                  f"precision {human(info['memory_bytes'] - state, 'B')} + neuron state {human(state, 'B')} "
                  "(1 KB = 1024 B); every target's report starts from this figure")


EXPORT_FORMATS = ("nir", "onnx", "native")


@app.command("export")
def export_cmd(
    model: ModelArg,
    to: Annotated[str, typer.Option("--format", "-f", help="nir | onnx (synaptic layers) | native")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output file")],
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Write MODEL as NIR, ONNX (synaptic layers) or a native checkpoint (Lava-dl netx: `deploy netx`).

    --dt is the step a NIR model is read with and a NIR file is written with."""
    from deploy.cli_options import check, load
    from deploy.pipeline import is_nir_source

    check(dt, encoding, timesteps)
    if to not in EXPORT_FORMATS:
        hint = "; for Lava-dl netx use `deploy netx`" if to == "netx" else ""
        raise DeployError(f"unknown export format {to!r} (choose from {', '.join(EXPORT_FORMATS)}){hint}")
    if dt is not None and to != "nir" and not is_nir_source(model):
        raise DeployError("--dt applies to NIR models read or written; neither the model nor --format is NIR")
    graph = load(model, trust_pickle, weights, dt=dt if is_nir_source(model) else None, encoding=encoding,
                 timesteps=timesteps)
    if to == "nir":
        from deploy.io.nir_io import write_nir

        write_nir(graph, out, **({"dt": dt} if dt is not None else {}))
    elif to == "onnx":
        from deploy.io.onnx_export import export_onnx

        export_onnx(graph, out)
    else:
        from deploy.io import native

        native.save(graph, out)
    console.print(f"{to} model written to [bold]{out}[/bold]")


def _load_plugins() -> None:
    for name in PLUGINS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name).register(app)


_load_plugins()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="deploy")
        return 0
    except SystemExit as exc:  # usage errors, --help and normal ends come through here
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except DeployError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("aborted", markup=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        else:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err_console.print(f"error: internal error {type(exc).__name__}: {msg} (rerun with --debug for "
                              "the traceback)", markup=False, highlight=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
