"""Several teacher assistants combined by a weighted ensemble, the weights found by differential
evolution (``scipy.optimize.differential_evolution``).

Each assistant is the student spec widened by a factor (:func:`deploy.training.distill.distill.widen`)
and distilled from the teacher by ``kd``. The ensemble's logits are the weighted sum of the
assistants' logits (weights on the simplex); the weights minimise the ensemble's cross-entropy
on a validation set held out of the training split (the assistants never train on it). The
student is then distilled from the ensemble by ``kd``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import differential_evolution
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet
from deploy.training.distill.distill import distill, load_student_spec, widen
from deploy.training.distill.teachers import Teacher, as_teacher

DEFAULT_FACTORS = (3.0, 2.0, 1.5)


def hold_out(split: Split, fraction: float = 0.2) -> tuple[Split, tuple[torch.Tensor, torch.Tensor]]:
    """(training split without its last ``fraction``, the held-out (x, y) validation set)."""
    if not 0.0 < fraction < 1.0:
        raise DeployError(f"validation fraction must lie in (0, 1), got {fraction:g}")
    n_val = max(1, int(round(len(split.x_train) * fraction)))
    cut = len(split.x_train) - n_val
    train = replace(split, x_train=split.x_train[:cut], y_train=split.y_train[:cut])
    return train, (split.x_train[cut:], split.y_train[cut:])


def ensemble_logits(logits: torch.Tensor, weights: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Weighted sum over the first axis of (K, N, C) logits; weights are normalised to sum 1."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=logits.dtype).clamp_min(0)
    w = w / w.sum().clamp_min(1e-12)
    return torch.einsum("k,knc->nc", w, logits)


def de_weights(logits: torch.Tensor, y: torch.Tensor, seed: int = 0, maxiter: int = 100) -> np.ndarray:
    """Ensemble weights (K,) minimising the cross-entropy of :func:`ensemble_logits` on (logits, y)
    by differential evolution over [0, 1]^K (normalised to sum 1)."""
    logits = logits.detach().double()

    def loss(w: np.ndarray) -> float:
        if w.sum() <= 1e-9:
            return float("inf")
        return float(F.cross_entropy(ensemble_logits(logits, w), y))

    res = differential_evolution(loss, [(0.0, 1.0)] * logits.shape[0], seed=seed, maxiter=maxiter,
                                 tol=1e-7, polish=True)
    w = np.clip(res.x, 0, None)
    return w / w.sum()


class Ensemble(nn.Module):
    """Weighted logits of several spiking assistants; a frozen teacher for :func:`distill`."""

    def __init__(self, assistants: list[SpikingNet], weights: np.ndarray):
        super().__init__()
        self.assistants = nn.ModuleList(a.eval() for a in assistants)
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights), dtype=torch.float32))
        self.input_shape = tuple(assistants[0].graph.input_shape)
        self.name = f"ensemble of {len(assistants)} assistants"

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N, C) logits of every assistant."""
        outs = []
        for a in self.assistants:
            g = a.graph
            outs.append(a.logits(a(fit_to_model(x, g.input_shape, g.encoding))))
        return torch.stack(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_logits(self.all_logits(x), self.weights)


@dataclass
class EnsembleResult:
    student: SpikingNet
    weights: np.ndarray
    assistants: list[SpikingNet]
    assistant_acc: list[float]
    history: list[dict[str, Any]]


def train_assistants(teacher: Any, student_spec: Any, split: Split, factors=DEFAULT_FACTORS,
                     seed: int = 0, **kd: Any) -> list[SpikingNet]:
    """One assistant per width factor, each distilled from ``teacher`` by ``kd``."""
    spec = load_student_spec(student_spec)
    return [distill(teacher, widen(spec, f), split, method="kd", seed=seed, progress=False, **kd)[0]
            for f in factors]


def distill_ensemble(teacher: Any, student_spec: Any, split: Split, factors=DEFAULT_FACTORS,
                     val_fraction: float = 0.2, seed: int = 0,
                     assistants: list[SpikingNet] | None = None, **kd: Any) -> EnsembleResult:
    """Teacher -> several assistants -> DE-weighted ensemble -> student (``--method ta-ensemble``).

    ``kd`` passes options (epochs, temperature, alpha, spike_reg, lr, batch_size) to every
    :func:`distill` hop; ``assistants`` reuses already trained ones (trained on the same
    reduced split).
    """
    if len(factors) < 2 and assistants is None:
        raise DeployError("an ensemble needs at least two assistant widths")
    teacher = as_teacher(teacher)
    train, (x_val, y_val) = hold_out(split, val_fraction)
    if assistants is None:
        assistants = train_assistants(teacher, student_spec, train, factors, seed, **kd)
    ens = Ensemble(assistants, np.full(len(assistants), 1.0 / len(assistants)))
    with torch.no_grad():
        val_logits = ens.all_logits(x_val)
    weights = de_weights(val_logits, y_val, seed=seed)
    ens.weights.copy_(torch.as_tensor(weights, dtype=torch.float32))
    acc = [float((val_logits[k].argmax(-1) == y_val).float().mean()) for k in range(len(assistants))]
    student, history = distill(Teacher(ens, ens.name), student_spec, train, method="kd", seed=seed,
                               progress=False, **kd)
    return EnsembleResult(student, weights, assistants, acc, history)
