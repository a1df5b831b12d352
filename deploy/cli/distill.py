"""``deploy distill``: train a student SNN from a teacher checkpoint (a thin wrapper over
:func:`deploy.training.distill`). The output is a native SNN checkpoint, written atomically."""

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


def distill_cmd(
    teacher: Annotated[Path, typer.Argument(metavar="TEACHER", help="teacher: neurodeploy-ann checkpoint, native SNN or NIR",
                                            show_default=False)],
    student: Annotated[Path, typer.Option("--student", metavar="PATH", show_default=False,
                                          help="student spec YAML (deploy.core.net.build format)")],
    out: Annotated[Path, out_option("file", "output native SNN checkpoint")],
    method: Annotated[str, typer.Option(metavar="METHOD", help="kd | hetero-kd | ta | ta-ensemble | hint")] = "kd",
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
    lr: Annotated[float, float_option("--lr", help="Adam learning rate", min=0, min_open=True)] = 2e-3,
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
    """Distill TEACHER into the student spec and write a native SNN checkpoint.

    --dt, --encoding and --timesteps apply to an SNN teacher (the student's come from its spec)."""
    from deploy.api.distill import distill

    runtime(progress)
    graph, meta = distill(teacher, student, out, method=method, data=data, epochs=epochs,
                          temperature=temperature, student_temperature=student_temperature, alpha=alpha,
                          spike_reg=spike_reg, assistant=assistant,
                          hetero=hetero, learn_temperature=learn_temperature, lr=lr, batch_size=batch_size,
                          seed=seed, threads=threads, dt=dt, encoding=encoding, timesteps=timesteps, hints=hints)
    console.print(f"{markup(graph.name)}: test accuracy {meta['test_accuracy']:.4f}, "
                  f"{meta['spikes_per_inference']:.1f} spikes per inference ({method}, {epochs} epochs, "
                  f"{meta['train_seconds']:.0f} s) -> {markup(out)}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``deploy distill`` to the CLI."""
    app.command("distill")(distill_cmd)
