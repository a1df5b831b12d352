"""``deploy distill``: train a student SNN from a teacher checkpoint (a thin wrapper over
:func:`deploy.train.distill.distill`). The output is a native SNN checkpoint, written atomically."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from deploy.cli_options import (
    DtOpt,
    EncodingOpt,
    TimestepsOpt,
    count_option,
    float_option,
    out_option,
    seed_option,
)
from deploy.core.errors import DeployError

DATA_CHOICES = ("digits", "mnist")


def distill_cmd(
    teacher: Annotated[Path, typer.Argument(help="teacher: neurodeploy-ann checkpoint, native SNN or NIR")],
    student: Annotated[Path, typer.Option("--student", help="student spec YAML (deploy.core.net.build format)")],
    out: Annotated[Path, out_option("file", "output native SNN checkpoint")],
    method: Annotated[str, typer.Option(help="kd | hetero-kd | ta | hint")] = "kd",
    data: Annotated[str, typer.Option(help="digits | mnist")] = "digits",
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
        help="assistant spec YAML for --method ta (default: the student twice as wide)")] = None,
    hetero: Annotated[str, typer.Option(help="hetero-kd teacher temperatures per 'class' or 'sample'")] = "class",
    learn_temperature: Annotated[bool, typer.Option(
        "--learn-temperature/--fixed-temperature", help="hetero-kd: learn the teacher temperatures")] = True,
    lr: Annotated[float, float_option("--lr", help="Adam learning rate", min=0, min_open=True)] = 2e-3,
    batch_size: Annotated[int, count_option("--batch-size", help="training batch size")] = 64,
    seed: Annotated[int, seed_option("--seed")] = 0,
    threads: Annotated[int, count_option("--threads", help="torch CPU threads (small SNNs train fastest on "
                                                           "one)")] = 1,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="progress bars (default: when stderr is a terminal)")] = None,
    dt: DtOpt = None,
    encoding: EncodingOpt = None,
    timesteps: TimestepsOpt = None,
) -> None:
    """Distill TEACHER into the student spec and write a native SNN checkpoint.

    --dt, --encoding and --timesteps apply to an SNN teacher (the student's come from its spec)."""
    from deploy.cli_options import check
    from deploy.core import data as datasets
    from deploy.io import native
    from deploy.train.distill.distill import distill, load_student_spec, measure

    check(dt, encoding, timesteps)
    if data not in DATA_CHOICES:
        raise DeployError(f"unknown dataset {data!r} for distill (choose from {', '.join(DATA_CHOICES)})")
    if out.suffix != ".pt":
        raise DeployError(f"output {out} must be a .pt file (a native SNN checkpoint)")
    if threads < 1:
        raise DeployError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    show = sys.stderr.isatty() if progress is None else progress
    spec = load_student_spec(student)
    assistant_spec = load_student_spec(assistant) if assistant is not None else None
    t = _teacher(teacher, dt, encoding, timesteps)
    split = datasets.load(data, seed=0)
    start = time.perf_counter()
    net, history = distill(t, spec, split, method=method, epochs=epochs, temperature=temperature,
                           alpha=alpha, spike_reg=spike_reg, assistant_spec=assistant_spec, seed=seed,
                           progress=show, lr=lr, batch_size=batch_size,
                           student_temperature=student_temperature, hetero=hetero,
                           learn_temperature=learn_temperature)
    seconds = time.perf_counter() - start
    result = measure(net, split.x_test, split.y_test)
    graph = net.to_graph()
    meta = {"dataset": data, "test_accuracy": result["accuracy"], "spikes_per_inference": result["spikes"],
            "distilled_from": str(teacher), "teacher_kind": t.kind, "method": method, "epochs": epochs,
            "temperature": temperature, "student_temperature": student_temperature, "alpha": alpha,
            "spike_reg": spike_reg, "seed": seed, "train_seconds": round(seconds, 1),
            "student_spec": str(student), "history": [{k: v for k, v in rec.items()} for rec in history]}
    native.save(graph, out, meta=meta)
    print(f"{graph.name}: test accuracy {result['accuracy']:.4f}, {result['spikes']:.1f} spikes per "
          f"inference ({method}, {epochs} epochs, {seconds:.0f} s) -> {out}")


def _teacher(path: Path, dt: float | None, encoding: str | None, timesteps: int | None):
    """The teacher: an ANN or native SNN checkpoint, or any SNN model with the shared options applied."""
    from deploy.cli_options import load
    from deploy.core.net import SpikingNet
    from deploy.pipeline import is_nir_source
    from deploy.train.distill.teachers import Teacher, load_teacher

    given = (dt, encoding, timesteps) != (None, None, None)
    if not is_nir_source(path):
        t = load_teacher(path)
        if not given:
            return t
        if t.kind == "ann":
            raise DeployError(f"{path}: --dt, --encoding and --timesteps apply to SNN teachers; this one is an ANN")
    return Teacher(SpikingNet(load(str(path), dt=dt, encoding=encoding, timesteps=timesteps)), str(path))


def register(app: typer.Typer) -> None:
    """Add ``deploy distill`` to the CLI."""
    app.command("distill")(distill_cmd)
