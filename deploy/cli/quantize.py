"""``deploy quantize``: the precision search from the command line (a thin wrapper over
:func:`deploy.quantize`). Outputs appear in OUTDIR only when everything succeeded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.api.quantize import ROUNDING
from deploy.cli.app import console, markup, say
from deploy.cli_options import (
    DataOpt,
    DtOpt,
    EncodingOpt,
    ModelArg,
    ProgressOpt,
    SplitSeedOpt,
    ThreadsOpt,
    TimestepsOpt,
    TrustOpt,
    WeightsOpt,
    count_option,
    float_option,
    int_option,
    out_option,
    runtime,
    seed_option,
    target_option,
)


def _kb(b: float) -> str:
    return f"{b / 1024:.2f} KB"


def quantize_cmd(
    model: ModelArg,
    out: Annotated[Path, out_option("folder")],
    data: DataOpt = "digits",
    max_acc_drop: Annotated[float, float_option("--max-acc-drop", help="accuracy tolerance, points below float",
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
    weight_bits: Annotated[str, typer.Option("--weight-bits", metavar="BITS",
                                             help="weight bit widths, e.g. 2..16 or 2,4,8")] = "2..16",
    neuron_bits: Annotated[str, typer.Option("--neuron-bits", metavar="BITS",
                                             help="neuron (membrane/threshold) bit widths")] = "4..24",
    rounding: Annotated[str, typer.Option(metavar="MODES", help="all | comma list of " + ", ".join(ROUNDING))] = "all",
    scheme: Annotated[str, typer.Option(metavar="SCHEME", help="ptq | qat | both")] = "both",
    per_layer: Annotated[bool, typer.Option("--per-layer", help="refine bit widths layer by layer")] = False,
    granularity: Annotated[str, typer.Option(metavar="GRAIN", help="weight scales per 'channel' or per 'tensor'")
                           ] = "channel",
    target: Annotated[str | None, target_option(
        "evaluate every candidate on this target: its simulation's accuracy, energy and latency")] = None,
    objective: Annotated[str | None, typer.Option(
        metavar="OBJECTIVE",
        help="memory | accuracy | energy | latency | edp (default: accuracy with --max-memory alone, energy with "
             "--target, else memory)")] = None,
    samples: Annotated[int | None, count_option("--samples", help="test samples to evaluate (default: all)")] = None,
    qat_epochs: Annotated[int, int_option("--qat-epochs", help="fine-tuning epochs per QAT configuration",
                                          min=0)] = 3,
    onnx: Annotated[bool, typer.Option("--onnx", help="also export the chosen synapses to ONNX (QCDQ)")] = False,
    seed: Annotated[int, seed_option("--seed", help="seed of stochastic rounding and QAT training (not the "
                                                    "data)")] = 0,
    split_seed: SplitSeedOpt = 0,
    trust_pickle: TrustOpt = False,
    weights: WeightsOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
    progress: ProgressOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Search weight/neuron precision, rounding and scheme; write search.json, model.pt, pareto.png."""
    from deploy.api.quantize import quantize

    runtime(progress, threads)
    result = quantize(model, out, data=data, max_acc_drop=max_acc_drop, max_memory=max_memory,
                      max_cores=max_cores, max_latency=max_latency, max_energy=max_energy,
                      weight_bits=weight_bits, neuron_bits=neuron_bits, rounding=rounding, scheme=scheme,
                      per_layer=per_layer, granularity=granularity, target=target, objective=objective,
                      samples=samples, qat_epochs=qat_epochs, onnx=onnx, seed=seed, split_seed=split_seed,
                      trust_pickle=trust_pickle, weights=weights, dt=dt, encoding=encoding, timesteps=timesteps)
    for w in result.warnings:
        say(f"warning: {w}")
    print_summary(result, console)
    onnx_dir = ", onnx/" if (Path(out) / "onnx").is_dir() else ""
    console.print(f"search written to [bold]{markup(out)}[/bold] (search.json, model.pt, pareto.png{onnx_dir})")


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
