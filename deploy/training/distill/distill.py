"""Distill a teacher (ANN or SNN) into a student SNN built from a compact layer spec.

Methods:

- ``kd``: soft targets at one temperature plus cross-entropy on the labels;
- ``hetero-kd``: teacher temperatures per class or per sample (learned or fixed) and a
  lower, scheduled student temperature, so the student reaches the teacher's soft
  targets with smaller spike-count margins;
- ``ta``: teacher -> assistant -> student, each hop by ``kd`` (the assistant defaults
  to the student with twice the channels / features);
- ``hint``: ``kd`` plus a FitNets hint: a learned adapter maps the firing rates of a
  student layer onto a teacher layer's activations.

Every method can add the spike-count regulariser (``spike_reg`` times the mean firing
rate of the student's hidden spiking layers). Training is :func:`deploy.training.snn.fit`
through its ``loss_fn`` hook; the loss's own parameters (adapter, temperatures) train
alongside the student.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy.core import ir
from deploy.core.data import Split, fit_to_model
from deploy.core.errors import DataError, DeployError, ModelError
from deploy.core.metrics import activity_from_record, merge
from deploy.core.net import TIME_AWARE_KINDS, SpikingNet, build
from deploy.io.yamlfile import read_yaml
from deploy.training.distill.losses import (
    HeteroTemperature,
    HintLoss,
    check_temperature,
    kd_loss,
    spike_rate_loss,
)
from deploy.training.distill.teachers import Teacher, as_teacher, default_hint_layer
from deploy.training.snn import fit

METHODS = ("kd", "hetero-kd", "ta", "hint")


# -- specs ----------------------------------------------------------------------------
def load_student_spec(spec: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A student spec from a dict or a YAML file (the compact format of ``deploy.core.net.build``)."""
    if isinstance(spec, dict):
        return copy.deepcopy(spec)
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"{path}: no such student spec file")
    doc = read_yaml(path, ModelError)
    if not isinstance(doc, dict) or "layers" not in doc or "input_shape" not in doc:
        raise ModelError(f"{path}: a student spec needs 'input_shape' and 'layers'")
    return doc


def build_student(spec: dict[str, Any] | str | Path, seed: int = 0) -> SpikingNet:
    """Build an untrained student, turning malformed specs into one ModelError line."""
    spec = load_student_spec(spec)
    try:
        return build(spec, seed=seed)
    except DeployError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"student spec '{spec.get('name', 'model')}': malformed layer ({exc})") from None


def widen(spec: dict[str, Any], factor: float = 2.0) -> dict[str, Any]:
    """The spec with every hidden layer ``factor`` times wider (the default assistant)."""
    spec = load_student_spec(spec)
    layers = spec["layers"]
    last_syn = max((i for i, layer in enumerate(layers) if layer.get("type") in ("linear", "conv2d")),
                   default=-1)
    for i, layer in enumerate(layers):
        if i == last_syn:
            continue
        for key in ("out_channels", "out_features"):
            if key in layer:
                layer[key] = max(1, int(round(layer[key] * factor)))
    spec["name"] = f"{spec.get('name', 'model')}_assistant"
    return spec


def classes_of(graph: ir.Graph) -> int:
    return int(np.prod(graph.shapes()[graph.output.name]))


def check_pair(teacher: Teacher, student: SpikingNet, split: Split | None = None) -> None:
    """Raise one clear error when teacher, student and data do not fit together."""
    g = student.graph
    n_student = classes_of(g)
    if teacher.classes != n_student:
        raise ModelError(f"teacher '{teacher.name}' has {teacher.classes} classes but student "
                         f"'{g.name}' has {n_student}")
    if math.prod(teacher.input_shape) != math.prod(g.input_shape):
        raise ModelError(f"teacher '{teacher.name}' takes inputs of shape {tuple(teacher.input_shape)} "
                         f"but student '{g.name}' takes {tuple(g.input_shape)}")
    if split is not None:
        fit_to_model(split.x_test[:1], g.input_shape, g.encoding)
        if split.classes > n_student:
            raise DataError(f"dataset '{split.name}' has {split.classes} classes, student "
                            f"'{g.name}' outputs {n_student}")


# -- training plumbing -------------------------------------------------------------------
class SpikeRecorder:
    """Keeps the latest output (T, B, ...) of chosen layers of a SpikingNet via forward hooks."""

    def __init__(self, net: SpikingNet, names: list[str]):
        self.values: dict[str, torch.Tensor] = {}
        self._hooks = [net.layers[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def store(module, args, output):
            self.values[name] = output
        return store

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self.values.clear()


class _Trainee(nn.Module):
    """The student plus the loss's trainable parts, so that ``fit`` optimizes both."""

    def __init__(self, student: SpikingNet, extras: nn.ModuleDict):
        super().__init__()
        self.student, self.extras = student, extras
        self.graph = student.graph

    def run(self, *args, **kwargs):
        return self.student.run(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return self.student.logits(out)


def _distill_once(teacher: Teacher, student: SpikingNet, split: Split, kind: str, epochs: int,
                  temperature: float, alpha: float, spike_reg: float, seed: int, progress: bool,
                  lr: float, batch_size: int, student_temperature: float | None, hetero: str,
                  learn_temperature: bool, schedule: str, hint_layers: tuple[str, str] | None,
                  hint_weight: float) -> list[dict[str, float]]:
    """Train ``student`` against ``teacher`` with one loss (kd, hetero-kd or hint)."""
    g = student.graph
    hidden = [n.name for n in g.nodes if n.kind == "lif" and n is not g.output]
    torch.manual_seed(seed)
    extras = nn.ModuleDict()
    if kind == "hetero-kd":
        extras["temperature"] = HeteroTemperature(teacher.classes, temperature, student_temperature,
                                                  per=hetero, learnable=learn_temperature,
                                                  schedule=schedule)
    s_hint = t_hint = None
    if kind == "hint":
        s_hint, t_hint = hint_layers or (default_hint_layer(g), teacher.hint_layer())
        t_shapes, s_shapes = teacher.feature_shapes(), g.shapes()
        if s_hint not in s_shapes or s_hint == "input":
            raise ModelError(f"student '{g.name}' has no layer '{s_hint}' for the hint")
        if t_hint not in t_shapes:
            raise ModelError(f"teacher '{teacher.name}' has no layer '{t_hint}' for the hint "
                             f"(layers: {', '.join(t_shapes)})")
        extras["hint"] = HintLoss(s_shapes[s_hint], t_shapes[t_hint])
    recorder = SpikeRecorder(student, sorted(set(hidden) | ({s_hint} if s_hint else set())))
    steps = max(epochs * math.ceil(len(split.x_train) / batch_size), 1)
    state = {"step": 0}
    tau_s = temperature if student_temperature is None else student_temperature

    def loss_fn(net, logits, y, out, x):
        progress_frac = state["step"] / steps
        state["step"] += 1
        t_logits, t_feats = teacher.forward_features(x)
        if kind == "hetero-kd":
            soft = extras["temperature"](logits, t_logits, progress_frac)
        else:
            soft = kd_loss(logits, t_logits, temperature, tau_s)
        loss = alpha * soft + (1 - alpha) * F.cross_entropy(logits, y)
        if kind == "hint":
            s_out = recorder.values[s_hint]
            if g[s_hint].kind not in TIME_AWARE_KINDS:      # stateless layers run on (T*B, ...)
                s_out = s_out.reshape(g.timesteps, -1, *s_out.shape[1:])
            s_feat = s_out.float().mean(0)
            loss = loss + hint_weight * extras["hint"](s_feat, t_feats[t_hint])
        if spike_reg:
            loss = loss + spike_reg * spike_rate_loss([recorder.values[n] for n in hidden])
        return loss

    try:
        history = fit(_Trainee(student, extras), split, epochs=epochs, lr=lr, batch_size=batch_size,
                      loss_fn=loss_fn, seed=seed, progress=progress)
    finally:
        recorder.close()
    return [{**rec, "stage": g.name, "method": kind} for rec in history]


def distill(teacher: Any, student_spec: dict[str, Any] | str | Path, split: Split,
            method: str = "kd", epochs: int = 5, temperature: float = 2.0, alpha: float = 0.5,
            spike_reg: float = 0.0, assistant_spec: dict[str, Any] | str | Path | None = None,
            seed: int = 0, progress: bool = True, *, lr: float = 2e-3, batch_size: int = 64,
            student_temperature: float | None = None, hetero: str = "class",
            learn_temperature: bool = True, schedule: str = "linear",
            hint_layers: tuple[str, str] | None = None, hint_weight: float = 1.0,
            ) -> tuple[SpikingNet, list[dict[str, float]]]:
    """Distill ``teacher`` (path, ANN, SpikingNet or Graph) into a student built from ``student_spec``.

    ``alpha`` weighs the soft-target loss against cross-entropy on the labels;
    ``spike_reg`` weighs the mean firing rate of the student's hidden layers.
    ``student_temperature`` divides the student logits (default: ``temperature``,
    and 1 for ``hetero-kd``); ``hetero`` ("class" | "sample"), ``learn_temperature``
    and ``schedule`` ("linear" | "constant") shape the heterogeneous temperatures;
    ``hint_layers`` = (student layer, teacher layer) for ``hint``. Returns the trained
    student and one history record per epoch (``stage`` names the network trained).
    """
    if method not in METHODS:
        raise DeployError(f"unknown distillation method {method!r} (choose from {', '.join(METHODS)})")
    check_temperature(temperature)
    if student_temperature is not None:
        check_temperature(student_temperature, "student temperature")
    if not 0.0 <= float(alpha) <= 1.0:
        raise DeployError(f"alpha must lie in [0, 1], got {alpha:g}")
    if not float(spike_reg) >= 0.0:
        raise DeployError(f"spike regulariser weight must be >= 0, got {spike_reg:g}")
    if int(epochs) < 1:
        raise DeployError(f"epochs must be >= 1, got {epochs}")
    teacher = as_teacher(teacher)
    student = build_student(student_spec, seed=seed)
    check_pair(teacher, student, split)
    if method == "hetero-kd" and student_temperature is None:
        student_temperature = 1.0
    opts = dict(epochs=int(epochs), temperature=float(temperature), alpha=float(alpha),
                spike_reg=float(spike_reg), seed=seed, progress=progress, lr=lr, batch_size=batch_size,
                student_temperature=student_temperature, hetero=hetero,
                learn_temperature=learn_temperature, schedule=schedule, hint_layers=hint_layers,
                hint_weight=hint_weight)
    history: list[dict[str, float]] = []
    if method == "ta":
        assistant = build_student(assistant_spec or widen(load_student_spec(student_spec)), seed=seed)
        check_pair(teacher, assistant, split)
        history += _distill_once(teacher, assistant, split, "kd", **opts)
        teacher = Teacher(assistant, f"assistant of {teacher.source}")
    history += _distill_once(teacher, student, split, "kd" if method == "ta" else method, **opts)
    return student.eval(), history


# -- measuring ----------------------------------------------------------------------------
@torch.no_grad()
def measure(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Test accuracy and spikes per inference (all spiking layers, all timesteps) of ``net``."""
    net.eval()
    g = net.graph
    xs = fit_to_model(x, g.input_shape, g.encoding)
    parts = []
    for i in range(0, len(xs), batch_size):
        out, values = net.run(xs[i:i + batch_size], record=True)
        parts.append(activity_from_record(g, values, out))
    act = merge(parts)
    accuracy = float((act.predictions == y).float().mean())
    return {"accuracy": accuracy, "spikes": act.total("spikes"),
            "synops": act.total("synops_effective"), "sparsity": act.sparsity()}
