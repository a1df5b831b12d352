"""``deploy distill``: train a student SNN from a teacher (see :func:`deploy.training.distill.distill.distill`),
or with ``method="pkkd"`` an adder network with its own CNN teacher (:mod:`deploy.training.distill.pkkd`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from deploy.core import progress as bars
from deploy.core.errors import DeployError

DATA_CHOICES = ("digits", "mnist")
#: the method that trains an adder network with its own CNN teacher (no TEACHER, no student spec)
PKKD = "pkkd"
#: every ``method`` of :func:`distill`
METHODS = ("kd", "hetero-kd", "ta", "ta-ensemble", "hint", PKKD)
#: ``lr`` when none is given: for the SNN methods, and for PKKD
SNN_LR, PKKD_LR = 2e-3, 3e-3


def distill(teacher: str | Path | None, student: str | Path | None, out: str | Path | None = None, *,
            method: str = "kd",
            data: str = "digits", epochs: int = 10, temperature: float = 2.0,
            student_temperature: float | None = None, alpha: float = 0.5, spike_reg: float = 0.0,
            assistant: str | Path | None = None, hetero: str = "class", learn_temperature: bool = True,
            lr: float | None = None, batch_size: int = 64, seed: int = 0, threads: int = 1,
            progress: bool | None = None, dt: float | None = None, encoding: str | None = None,
            timesteps: int | None = None, hints: str = "fixed") -> tuple[Any, dict[str, Any]]:
    """Distill ``teacher`` (neurodeploy-ann checkpoint, native SNN or NIR) into the student spec
    YAML ``student``. Returns the student graph and its metadata (test accuracy, spikes per
    inference, training history); with ``out`` (.pt), also writes the native checkpoint.
    ``dt``/``encoding``/``timesteps`` apply to an SNN teacher; ``threads``: torch CPU threads.
    ``method="ta-ensemble"``: assistants 3x, 2x and 1.5x the student's width, weighted by
    differential evolution (:mod:`deploy.training.distill.ta_ensemble`); ``hints="auto"`` (``hint``
    only): the hint pair from clustered teacher layers (:mod:`deploy.training.distill.hint_selection`).
    ``method="pkkd"`` takes no teacher and no student and uses only ``data``, ``epochs``, ``lr``,
    ``batch_size``, ``seed`` and ``threads``: see :func:`pkkd`. ``lr``: default 2e-3 (3e-3 for pkkd)."""
    import torch

    from deploy.cli_options import check

    check(dt, encoding, timesteps)
    if method not in METHODS:
        raise DeployError(f"unknown distillation method {method!r} (choose from {', '.join(METHODS)})")
    if data not in DATA_CHOICES:
        raise DeployError(f"unknown dataset {data!r} for distill (choose from {', '.join(DATA_CHOICES)})")
    if out is not None and Path(out).suffix != ".pt":
        kind = "a neurodeploy-ann checkpoint" if method == PKKD else "a native SNN checkpoint"
        raise DeployError(f"output {out} must be a .pt file ({kind})")
    if threads < 1:
        raise DeployError(f"--threads must be >= 1, got {threads}")
    if hints not in ("fixed", "auto"):
        raise DeployError(f"--hints must be 'fixed' or 'auto', got {hints!r}")
    if hints == "auto" and method != "hint":
        raise DeployError(f"--hints auto chooses the hint layers of --method hint, not of {method}")
    if method == PKKD:
        if teacher is not None or student is not None:
            raise DeployError("--method pkkd trains its own CNN teacher alongside the adder student: "
                              "give neither TEACHER nor --student")
        torch.set_num_threads(threads)
        return pkkd(out, data=data, epochs=epochs, lr=PKKD_LR if lr is None else lr,
                    batch_size=batch_size, seed=seed)
    if teacher is None:
        raise DeployError(f"--method {method} distills from a TEACHER (only --method pkkd trains without one)")
    if student is None:
        raise DeployError(f"--method {method} needs --student (a student spec YAML)")
    from deploy.core import data as datasets
    from deploy.io import native
    from deploy.training.distill.distill import distill as run
    from deploy.training.distill.distill import load_student_spec, measure

    lr = SNN_LR if lr is None else lr
    torch.set_num_threads(threads)
    spec = load_student_spec(Path(student))
    assistant_spec = load_student_spec(Path(assistant)) if assistant is not None else None
    t = _teacher(Path(teacher), dt, encoding, timesteps)
    split = datasets.load(data, seed=0)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "ta-ensemble":
        from deploy.training.distill.ta_ensemble import distill_ensemble

        res = distill_ensemble(t, spec, split, seed=seed, epochs=epochs, temperature=temperature, alpha=alpha,
                               spike_reg=spike_reg, lr=lr, batch_size=batch_size)
        net, history = res.student, res.history
        extra = {"ensemble_weights": res.weights.tolist(), "assistant_val_acc": res.assistant_acc}
    else:
        hint_layers = None
        if hints == "auto":
            from deploy.training.distill.distill import build_student
            from deploy.training.distill.hint_selection import auto_hint_layers

            hint_layers = auto_hint_layers(t, build_student(spec, seed), split.x_train[:256], seed)
            extra = {"hint_layers": list(hint_layers)}
        net, history = run(t, spec, split, method=method, epochs=epochs, temperature=temperature, alpha=alpha,
                           spike_reg=spike_reg, assistant_spec=assistant_spec, seed=seed,
                           progress=bars.enabled() if progress is None else progress, lr=lr,
                           batch_size=batch_size, student_temperature=student_temperature, hetero=hetero,
                           learn_temperature=learn_temperature, hint_layers=hint_layers)
    seconds = time.perf_counter() - start
    result = measure(net, split.x_test, split.y_test)
    graph = net.to_graph()
    meta = {"dataset": data, "test_accuracy": result["accuracy"], "spikes_per_inference": result["spikes"],
            "distilled_from": str(teacher), "teacher_kind": t.kind, "method": method, "epochs": epochs,
            "temperature": temperature, "student_temperature": student_temperature, "alpha": alpha,
            "spike_reg": spike_reg, "seed": seed, "train_seconds": round(seconds, 1),
            "student_spec": str(student), "history": [dict(rec) for rec in history], **extra}
    if out is not None:
        native.save(graph, out, meta=meta)
    return graph, meta


def pkkd(out: str | Path | None = None, *, data: str = "digits", epochs: int = 10, lr: float = PKKD_LR,
         batch_size: int = 64, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Train an adder network by PKKD (a CNN teacher of the same architecture trained alongside) on
    ``data`` and price it on the ``digital`` target's constants. Returns the network (an
    :class:`deploy.training.ann.ANN`) and its metadata; with ``out`` (.pt), also writes it as a
    ``neurodeploy-ann`` checkpoint. The network is frame-based, not a spiking network."""
    from deploy.core import data as datasets
    from deploy.training import ann
    from deploy.training.distill.pkkd import train
    from hwmodels.digital.ann_cost import digital_cost

    split = datasets.load(data, seed=0)
    side = math.isqrt(split.x_train[0].numel())
    start = time.perf_counter()
    net, history, _ = train(split, PKKD, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    seconds = time.perf_counter() - start
    model = ann.ANN(list(net), (1, side, side), name=f"{data}_adder_pkkd").eval()
    cost = digital_cost(model, model.input_shape)
    meta = {"dataset": data, "method": PKKD, "test_accuracy": history[-1]["test_acc"],
            "teacher_accuracy": history[-1]["teacher_acc"], "teacher_kind": "cnn (same architecture, trained alongside)",
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "train_seconds": round(seconds, 1),
            "spiking": False, "note": cost["note"],
            "digital_cost": {"target": cost["target"], "bits": cost["bits"], "per_inference": cost["totals"]},
            "history": [dict(rec) for rec in history]}
    if out is not None:
        ann.save(model, out, meta=meta)
    return model, meta


def _teacher(path: Path, dt: float | None, encoding: str | None, timesteps: int | None):
    """The teacher: an ANN or native SNN checkpoint, or any SNN model with the shared options applied."""
    from deploy.cli_options import load
    from deploy.core.net import SpikingNet
    from deploy.pipeline import is_nir_source
    from deploy.training.distill.teachers import Teacher, load_teacher

    given = (dt, encoding, timesteps) != (None, None, None)
    if not is_nir_source(path):
        t = load_teacher(path)
        if not given:
            return t
        if t.kind == "ann":
            raise DeployError(f"{path}: --dt, --encoding and --timesteps apply to SNN teachers; this one is an ANN")
    return Teacher(SpikingNet(load(str(path), dt=dt, encoding=encoding, timesteps=timesteps)), str(path))
