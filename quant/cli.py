"""``deploy quantize``: the precision search from the command line (a thin wrapper over
:func:`quant.search.search`). Outputs appear in OUTDIR only when everything succeeded."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from deploy.cli_options import (
    DataOpt,
    DtOpt,
    EncodingOpt,
    SplitSeedOpt,
    TimestepsOpt,
    count_option,
    float_option,
    int_option,
    out_option,
    seed_option,
)
from deploy.core.errors import DataError
from quant.quantizers import ROUNDING, QuantError

SCHEME_CHOICES = {"ptq": ("ptq",), "qat": ("qat",), "both": ("ptq", "qat")}


def parse_bits(text: str, option: str) -> list[int]:
    """``"2..16"``, ``"2,4,8"`` or ``"4"`` (mixable: ``"2..4,8"``) as a list of bit widths."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        m = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            out.extend(range(lo, hi + 1))
        elif re.fullmatch(r"-?\d+", part):
            out.append(int(part))
        else:
            raise QuantError(f"{option}: cannot read {part!r} (use e.g. 2..16 or 2,4,8)")
    if not out:
        raise QuantError(f"empty search space: {option} {text!r} holds no bit widths")
    return out


def parse_rounding(text: str) -> list[str]:
    if text.strip() == "all":
        return list(ROUNDING)
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise QuantError("empty search space: --rounding names no rounding mode")
    for m in modes:
        if m not in ROUNDING:
            raise QuantError(f"--rounding: unknown mode {m!r} (choose from all, {', '.join(ROUNDING)})")
    return modes


def load_split(name: str, graph, seed: int, fixed_encoding: bool = False, samples: int | None = None):
    """The dataset a search evaluates on (a name or a data file), shaped to the model; event frames
    on a direct model that did not fix its encoding switch ``graph.encoding`` to events. Synthetic
    events hold ``samples`` test samples (64 by default), the ones ``deploy compile`` draws."""
    from deploy import userdata

    if name == "none":
        raise DataError(f"model '{graph.name}': no data to evaluate the quantized model on "
                        "(use --data digits|mnist|events)")
    return userdata.split_for(graph, name, seed, n_test=samples or 64, fixed_encoding=fixed_encoding)


def _kb(b: float) -> str:
    return f"{b / 1024:.2f} KB"


def quantize_cmd(
    model: Annotated[str, typer.Argument(help="model: native .pt, NIR, or file.py:factory")],
    out: Annotated[Path, out_option("folder")],
    data: DataOpt = "digits",
    max_acc_drop: Annotated[float, float_option("--max-acc-drop", help="accuracy tolerance in points below float",
                                                min=0, max=100)] = 1.0,
    max_memory: Annotated[float | None, float_option(
        "--max-memory", min=0, min_open=True,
        help="memory budget in KB (1 KB = 1024 bytes); alone: best accuracy within it")] = None,
    max_cores: Annotated[int | None, count_option(
        "--max-cores", help="at most this many cores of the target's mapping (loihi, loihi2)")] = None,
    max_latency: Annotated[float | None, float_option("--max-latency", min=0, min_open=True,
                                                      help="latency limit on the target, seconds per inference")] = None,
    max_energy: Annotated[float | None, float_option("--max-energy", min=0, min_open=True,
                                                     help="energy limit on the target, joules per inference")] = None,
    weights: Annotated[str, typer.Option(help="weight bit widths, e.g. 2..16 or 2,4,8")] = "2..16",
    neuron: Annotated[str, typer.Option(help="neuron (membrane/threshold) bit widths")] = "4..24",
    rounding: Annotated[str, typer.Option(help="all | comma list of " + ", ".join(ROUNDING))] = "all",
    scheme: Annotated[str, typer.Option(help="ptq | qat | both")] = "both",
    per_layer: Annotated[bool, typer.Option("--per-layer", help="refine bit widths layer by layer")] = False,
    granularity: Annotated[str, typer.Option(help="weight scales per 'channel' or per 'tensor'")] = "channel",
    target: Annotated[str | None, typer.Option(
        help="evaluate every candidate on this target: its simulation's accuracy, energy and latency")] = None,
    objective: Annotated[str | None, typer.Option(
        help="memory | accuracy | energy | latency | edp (default: accuracy with --max-memory alone, energy with "
             "--target, else memory)")] = None,
    samples: Annotated[int | None, count_option("--samples", help="test samples to evaluate (default: all)")] = None,
    qat_epochs: Annotated[int, int_option("--qat-epochs", help="fine-tuning epochs per QAT configuration",
                                          min=0)] = 3,
    onnx: Annotated[bool, typer.Option("--onnx", help="also export the chosen synapses to ONNX (QCDQ)")] = False,
    seed: Annotated[int, seed_option("--seed", help="seed of stochastic rounding and QAT training (not the "
                                                    "data)")] = 0,
    split_seed: SplitSeedOpt = 0,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="allow pickled modules (runs code)")] = False,
    state_dict: Annotated[str | None, typer.Option(help="state_dict for a file.py:factory model")] = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Search weight/neuron precision, rounding and scheme; write search.json, model.pt, pareto.png."""
    from rich.console import Console

    from deploy.cli_options import check, load
    from hwmodels import get_target
    from quant.search import search

    check(dt, encoding, timesteps)
    if scheme not in SCHEME_CHOICES:
        raise QuantError(f"--scheme must be ptq, qat or both, got {scheme!r}")
    if granularity not in ("channel", "tensor"):
        raise QuantError(f"--granularity must be channel or tensor, got {granularity!r}")
    ws, ns, modes = parse_bits(weights, "--weights"), parse_bits(neuron, "--neuron"), parse_rounding(rounding)
    graph = load(model, trust_pickle, state_dict, dt=dt, encoding=encoding, timesteps=timesteps)
    split = load_split(data, graph, split_seed, fixed_encoding=encoding is not None, samples=samples)
    console, err = Console(), Console(stderr=True)
    result = search(graph, split, max_acc_drop=max_acc_drop,
                    max_memory=None if max_memory is None else max_memory * 1024, weight_bits=ws,
                    neuron_bits=ns, rounding=modes, schemes=SCHEME_CHOICES[scheme], per_layer=per_layer,
                    per_channel=granularity == "channel", target=get_target(target) if target else None, objective=objective, samples=samples,
                    qat_epochs=qat_epochs, seed=seed, progress=sys.stderr.isatty(), max_cores=max_cores,
                    max_latency=max_latency, max_energy=max_energy)
    result.split_seed = split_seed
    doc = result.save(out, onnx=onnx, seed=seed)
    for w in result.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
    print_summary(result, console)
    console.print(f"search written to [bold]{out}[/bold] (search.json, model.pt, pareto.png"
                  f"{', onnx/' if 'onnx' in doc else ''})")


def _pct(a: float | None) -> str:
    return "n/a" if a is None else f"{100 * a:.2f} %"


def _si(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    for scale, prefix in ((1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m")):
        if abs(v) < scale * 1000:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def print_summary(result, console=None, max_rejected: int = 8) -> None:
    """The baseline, the chosen configuration and the Pareto front as a Rich table, then the
    configurations a constraint other than the accuracy tolerance rejected, with the constraint."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    b, c, sv = result.baseline, result.chosen, result.savings()
    on = f" on {result.target}" if result.target else ""
    table = Table(title=f"{result.model}{on}, {result.dataset} ({result.samples} test samples)")
    cols = ["", "configuration", "accuracy", "memory", "params"]
    if result.target:
        cols += ["energy", "latency"]
    cores = b.get("cores") is not None
    if cores:
        cols.append("cores")
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "configuration") else "right")

    def row(kind: str, label: str, acc, mem, params, energy, latency, n_cores) -> None:
        cells = [kind, label, _pct(acc), _kb(mem), _kb(params)]
        if result.target:
            cells += [_si(energy, "J"), _si(latency, "s")]
        if cores:
            cells.append("n/a" if n_cores is None else str(n_cores))
        table.add_row(*cells)

    def point(kind: str, p, label: str | None = None) -> None:
        row(kind, label or p.config.label(), p.accuracy, p.memory_bytes, p.param_bytes, p.energy_j,
            p.latency_s, p.cores)

    row("float32", "32-bit weights and neurons", b["accuracy"], b["memory_bytes"], b["param_bytes"],
        b.get("energy_j"), b.get("latency_s"), b.get("cores"))
    point("chosen", c, c.config.label() + (f" {c.config.layer_bits}" if c.config.layer_bits else ""))
    for i in result.front:
        point("front", result.evaluated[i])
    console.print(table)
    rejected = [p for p in result.evaluated if p.constrained]
    if rejected:
        console.print(f"rejected by a constraint ({len(rejected)} of {len(result.evaluated)}):", highlight=False)
    for p in rejected[:max_rejected]:
        reasons = [r for r in p.rejected_by if not r.startswith("max_acc_drop")]
        console.print(f"  {p.config.label()}: {'; '.join(reasons)}", highlight=False, markup=False, soft_wrap=True)
    if len(rejected) > max_rejected:
        console.print(f"  ... and {len(rejected) - max_rejected} more (rejected_by in search.json)", highlight=False)
    console.print(f"accuracy measured on {result.accuracy_on}; memory {sv['memory']:.2f}x smaller than float32 "
                  f"(parameters {sv['params']:.2f}x), accuracy {-sv['accuracy_drop_points']:+.2f} points; "
                  f"{len(result.evaluated)} configurations evaluated, {result.skipped} skipped as dominated, of "
                  f"{result.space['size']} network-level ones, in {result.seconds:.1f} s", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``deploy quantize`` to the CLI."""
    app.command("quantize")(quantize_cmd)
