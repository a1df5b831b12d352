"""``deploy distill``: train a student SNN from a teacher checkpoint, or (``--method pkkd``) an adder
network with its own CNN teacher (a thin wrapper over :func:`deploy.api.distill.distill`). The output
is a native SNN checkpoint, or for pkkd a ``neurodeploy-ann`` checkpoint, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy.cli.app import console, markup
from deploy.cli_options import (
    DtOpt,
    EncodingOpt,
    ProgressOpt,
    TimestepsOpt,
    count_option,
    float_option,
    out_option,
    runtime,
    seed_option,
)
from deploy.core.errors import DeployError

#: the parameters --method pkkd uses (the others shape SNN students and their teachers)
PKKD_PARAMS = ("out", "method", "data", "epochs", "lr", "batch_size", "seed", "threads", "progress")


def distill_cmd(
    ctx: typer.Context,
    out: Annotated[Path, out_option("file", "output checkpoint: native SNN (neurodeploy-ann adder network for "
                                            "pkkd)")],
    teacher: Annotated[Path | None, typer.Argument(
        metavar="TEACHER", show_default=False,
        help="teacher: neurodeploy-ann checkpoint, native SNN or NIR (not with --method pkkd)")] = None,
    student: Annotated[Path | None, typer.Option("--student", metavar="PATH", show_default=False,
                                                 help="student spec YAML (deploy.core.net.build format; "
                                                      "not with --method pkkd)")] = None,
    method: Annotated[str, typer.Option(metavar="METHOD", help=(
        "kd | hetero-kd | ta | ta-ensemble | hint | pkkd (an adder network trained with its own CNN "
        "teacher; uses only --data --epochs --lr --batch-size --seed --threads)"))] = "kd",
    data: Annotated[str, typer.Option(metavar="DATA", help="digits | mnist")] = "digits",
    epochs: Annotated[int, count_option("--epochs", help="training epochs (per stage for ta)")] = 10,
    temperature: Annotated[float, float_option("--temperature", help="teacher (soft-target) temperature",
                                               min=0, min_open=True)] = 2.0,
    student_temperature: Annotated[float | None, float_option(
        "--student-temperature", min=0, min_open=True,
        help="temperature dividing the student logits (default: --temperature; 1 for hetero-kd)")] = None,
    alpha: Annotated[float, float_option("--alpha", help="weight of the soft-target loss vs cross-entropy",
                                         min=0, max=1)] = 0.5,
    spike_reg: Annotated[float, float_option("--spike-reg", help="weight of the hidden-layer firing-rate penalty",
                                             min=0)] = 0.0,
    assistant: Annotated[Path | None, typer.Option(
        metavar="PATH", help="assistant spec YAML for --method ta (default: the student twice as wide)")] = None,
    hetero: Annotated[str, typer.Option(metavar="PER", help="hetero-kd teacher temperatures per 'class' or "
                                                            "'sample'")] = "class",
    learn_temperature: Annotated[bool, typer.Option(
        "--learn-temperature/--fixed-temperature", help="hetero-kd: learn the teacher temperatures")] = True,
    lr: Annotated[float, float_option("--lr", help="Adam learning rate (3e-3 for pkkd unless given)", min=0,
                                      min_open=True)] = 2e-3,
    batch_size: Annotated[int, count_option("--batch-size", help="training batch size, samples")] = 64,
    seed: Annotated[int, seed_option("--seed")] = 0,
    threads: Annotated[int, count_option("--threads", help="torch CPU threads (small SNNs train fastest on "
                                                           "one)")] = 1,
    hints: Annotated[str, typer.Option(metavar="HOW", help="hint layers of --method hint: 'fixed' (last hidden "
                                                           "layers) or 'auto' (clustered teacher layers)")] = "fixed",
    progress: ProgressOpt = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Distill TEACHER into the student spec and write a native SNN checkpoint; with --method pkkd,
    train an adder network (not spiking) with its own CNN teacher and price it on digital.

    --dt, --encoding and --timesteps apply to an SNN teacher (the student's come from its spec)."""
    from deploy.api.distill import PKKD, distill
    from deploy.report.units import human

    runtime(progress)
    if method == PKKD:
        _reject_unused(ctx)
        net, meta = distill(teacher, student, out, method=method, data=data, epochs=epochs,
                            lr=lr if _given(ctx, "lr") else None,
                            batch_size=batch_size, seed=seed, threads=threads)
        cost = meta["digital_cost"]["per_inference"]
        console.print(f"{markup(net.name)}: test accuracy {meta['test_accuracy']:.4f}, CNN teacher "
                      f"{meta['teacher_accuracy']:.4f}; per inference on digital: {cost['adds']:,} adds, "
                      f"{cost['mults']:,} mults, {human(cost['energy_j'], 'J')} (not a spiking network; "
                      f"{epochs} epochs, {meta['train_seconds']:.0f} s) -> {markup(out)}", highlight=False,
                      soft_wrap=True)
        return
    graph, meta = distill(teacher, student, out, method=method, data=data, epochs=epochs,
                          temperature=temperature, student_temperature=student_temperature, alpha=alpha,
                          spike_reg=spike_reg, assistant=assistant,
                          hetero=hetero, learn_temperature=learn_temperature, lr=lr, batch_size=batch_size,
                          seed=seed, threads=threads, dt=dt, encoding=encoding, timesteps=timesteps, hints=hints)
    console.print(f"{markup(graph.name)}: test accuracy {meta['test_accuracy']:.4f}, "
                  f"{meta['spikes_per_inference']:.1f} spikes per inference ({method}, {epochs} epochs, "
                  f"{meta['train_seconds']:.0f} s) -> {markup(out)}", highlight=False)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the parameter ``name`` was given (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _reject_unused(ctx: typer.Context) -> None:
    """One-line error for an option --method pkkd does not use (TEACHER and --student: the api's)."""
    for param in ctx.command.params:
        if param.name in (*PKKD_PARAMS, "teacher", "student") or param.name is None:
            continue
        if _given(ctx, param.name):
            flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            raise DeployError(f"{flag} does not apply to --method pkkd (it uses --data, --epochs, --lr, "
                              "--batch-size, --seed and --threads)")


def register(app: typer.Typer) -> None:
    """Add ``deploy distill`` to the CLI."""
    app.command("distill")(distill_cmd)
