"""The ``deploy`` command line: a thin wrapper over the Python API.

Errors on bad input are one line on stderr and exit code 2 (``--debug`` shows
the traceback too); Python warnings show after a successful run only, so a failed
run prints exactly its ``error:`` line. The console script is :mod:`deploy.entry`,
which handles SIGINT / SIGTERM from the first line on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.cli_options import (
    DataOpt,
    DtOpt,
    EncodingOpt,
    SamplesOpt,
    SplitSeedOpt,
    TimestepsOpt,
    count_option,
    float_option,
    out_option,
    seed_option,
)
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
    samples: SamplesOpt = None,
    timesteps: TimestepsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    config: Annotated[str | None, typer.Option(help="YAML with spec constants / target options")] = None,
    compare: Annotated[str | None, typer.Option(help="second target to compare against")] = None,
    out: Annotated[Path, out_option("folder", "output folder (replaced as a whole when it holds an "
                                              "earlier report)")] = Path("out/report"),
    seed: Annotated[int, seed_option("--seed", help="seed of the simulation: device noise, stochastic "
                                                    "rounding, rate/latency input spikes (not the data)")] = 0,
    split_seed: SplitSeedOpt = 0,
    rate: Annotated[float, float_option("--rate", help="assumed spike rate with --data none (1 = worst case)",
                                        min=0, max=1)] = 0.1,
    batch_size: Annotated[int, count_option("--batch-size", help="simulation batch size")] = 128,
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
                         weights=weights, dt=dt, encoding=encoding, split_seed=split_seed,
                         max_memory=max_memory)
    report.save(out, figures=not no_figures)
    print_summary(report, console)
    console.print(f"report written to [bold]{_markup(out)}[/bold]")


@app.command("report")
def report_cmd(
    reports: Annotated[list[Path], typer.Argument(help="report.json files")],
    out: Annotated[Path | None, out_option("folder", "folder for the re-rendered report(s)")] = None,
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
    console.print(f"comparison written to [bold]{_markup(out)}[/bold]")


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
    out: Annotated[Path, out_option("file", "output file")],
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
    console.print(f"{to} model written to [bold]{_markup(out)}[/bold]")


def _load_plugins() -> None:
    for name in PLUGINS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name).register(app)


_load_plugins()


def _markup(value: object) -> str:
    """``value`` for a Rich markup string: control characters escaped, brackets not read as markup."""
    from rich.markup import escape

    return escape(one_line(str(value)))


def one_line(text: str) -> str:
    """``text`` with every control character escaped the way ``repr`` does (a newline becomes
    ``\\n``, ESC ``\\x1b``): one line, and no escape sequence reaches the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _say(line: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(one_line(line) + "\n")
    sys.stderr.flush()


def _option_name(param: object) -> str:
    """How a message names a parameter: its long option (``--samples``), else its short one,
    else the argument's name in capitals."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        return str(getattr(param, "name", "") or "argument").upper()
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts)[0]


def _given(param: object, args: list[str]) -> str | None:
    """The text the user gave for an option (``--x v`` or ``--x=v``), if it can be found."""
    for opt in getattr(param, "opts", None) or []:
        for i, a in enumerate(args):
            if a == opt and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(opt + "="):
                return a[len(opt) + 1:]
    return None


def _command_path(exc: Exception, args: list[str]) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return ctx.command_path
    names = getattr(typer.main.get_command(app), "commands", {})
    cmd = next((a for a in args if a in names), None)
    return "deploy" + (f" {cmd}" if cmd else "")


def usage_line(exc: Exception, args: list[str]) -> str:
    """One line for a usage error (unknown or ill-typed option, missing argument, ...), naming
    the option and pointing at the command's help."""
    from typer._click import exceptions as cx

    where = _command_path(exc, args)
    if isinstance(exc, cx.NoSuchOption):
        text = f"{exc.option_name}: no such option"
        if exc.possibilities:
            text += f" (did you mean {' or '.join(exc.possibilities)}?)"
    elif isinstance(exc, cx.MissingParameter):
        kind = "argument" if getattr(exc.param, "param_type_name", "") == "argument" else "option"
        text = f"missing {kind} {_option_name(exc.param)}"
    elif isinstance(exc, cx.BadParameter):
        name = _option_name(exc.param) if exc.param is not None else str(exc.param_hint or "value")
        msg = exc.message.removeprefix("Value error, ")
        given = _given(exc.param, args)
        if "valid integer" in msg and given is not None:
            msg = f"{given!r} is not an integer"
        elif "valid number" in msg and given is not None:
            msg = f"{given!r} is not a number"
        text = f"{name} {msg}" if msg.startswith("must ") else f"{name}: {msg}"
    elif isinstance(exc, cx.BadOptionUsage):
        text = f"{exc.option_name}: {exc.message.rstrip('.')}"
    else:
        text = exc.format_message().rstrip(".")
    return f"{text} (see {where} --help)"


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            _say(f"warning: {msg}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI in this process and return its exit code: 0, 2 for bad input (one ``error:``
    line on stderr), 130 when interrupted, 1 for an internal error. Python warnings raised on the
    way are printed after a successful run and dropped on failure."""
    from typer._click import exceptions as cx

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = command.main(args=args, prog_name="deploy", standalone_mode=False)
        code = code if isinstance(code, int) else 0
        if code == 130:  # Typer turns a KeyboardInterrupt inside a command into exit code 130
            _say("aborted")
            return code
        _show_warnings(caught)
        return code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except cx.NoArgsIsHelpError:
        return 2  # the help is already printed
    except cx.ClickException as exc:
        if debug:
            traceback.print_exc()
        _say(f"error: {usage_line(exc, args)}")
        return exc.exit_code if isinstance(exc, cx.UsageError) else 2
    except typer.Abort:
        _say("aborted")
        return 1
    except DeployError as exc:
        if debug:
            traceback.print_exc()
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("aborted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        else:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _say(f"error: internal error {type(exc).__name__}: {msg} (rerun with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
