"""Distillation losses: soft-target KD, heterogeneous temperatures, hints, spike counts.

Soft-target KD (Hinton et al. 2015) with teacher logits ``t`` and student logits
``s`` (spike counts or mean membrane of the readout)::

    KD = tau_t * tau_s * KL( softmax(t / tau_t) || softmax(s / tau_s) )

averaged over the batch; with one temperature ``tau_t = tau_s = T`` this is the
usual ``T^2``-scaled loss. Heterogeneous temperatures let the two sides differ
(a student temperature below the teacher's asks for smaller spike-count margins,
hence fewer spikes, as in Lee et al., "Energy-efficient knowledge distillation
for spiking neural networks", 2021), and let the teacher temperature differ per
class or per sample (learned with the student, bounded, or fixed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.errors import DeployError

_MAX_RATIO = 4.0  # learned temperatures stay within [T / 4, 4 T]


def check_temperature(value: float, what: str = "temperature") -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise DeployError(f"{what} must be a positive number, got {value:g}")
    return value


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float | torch.Tensor = 4.0,
            student_temperature: float | torch.Tensor | None = None) -> torch.Tensor:
    """Soft-target KD between (B, C) logits, scaled by ``tau_t * tau_s``.

    Temperatures are scalars or tensors broadcastable to (B, C): per class (C,)
    or per sample (B, 1). ``student_temperature`` defaults to ``temperature``.
    """
    tau_t = torch.as_tensor(temperature, dtype=student_logits.dtype)
    tau_s = tau_t if student_temperature is None else torch.as_tensor(student_temperature,
                                                                      dtype=student_logits.dtype)
    log_p_s = F.log_softmax(student_logits / tau_s, dim=-1)
    p_t = F.softmax(teacher_logits / tau_t, dim=-1)
    kl = (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)).sum(-1)        # (B,)
    # the scale only restores gradient magnitude; learned temperatures follow the KL alone
    scale = (tau_t * tau_s).detach().expand(student_logits.shape).mean(-1)   # (B,)
    return (kl * scale).mean()


class HeteroTemperature(nn.Module):
    """Teacher temperatures per class or per sample, and a (scheduled) student temperature.

    - ``per="class"``: ``tau_t[c] = T * 4**tanh(theta[c])`` (theta starts at 0, so all equal T);
    - ``per="sample"``: ``tau_t[i] = T * 4**tanh(gain * (0.5 - H_i))`` with ``H_i`` the teacher's
      normalized entropy at ``T``: confident samples get softer targets;
    - ``learnable``: theta (or the gain) is trained adversarially with the student, as in
      curriculum temperature KD (Li et al., AAAI 2023): its gradient is reversed and
      scaled by ``(1 - cos(pi * progress)) / 2``, so the targets grow harder over training
      within the bounds; otherwise theta stays fixed;
    - ``schedule="linear"``: the student temperature moves from ``T`` to
      ``student_temperature`` over training (``progress`` 0..1); ``"constant"`` holds it.
    """

    def __init__(self, classes: int, temperature: float, student_temperature: float | None = None,
                 per: str = "class", learnable: bool = True, schedule: str = "linear",
                 gain: float = 1.0):
        super().__init__()
        if per not in ("class", "sample"):
            raise DeployError(f"heterogeneous temperature is per 'class' or per 'sample', got {per!r}")
        if schedule not in ("linear", "constant"):
            raise DeployError(f"temperature schedule must be 'linear' or 'constant', got {schedule!r}")
        self.temperature = check_temperature(temperature)
        self.student_temperature = check_temperature(
            temperature if student_temperature is None else student_temperature, "student temperature")
        self.per, self.schedule = per, schedule
        init = torch.zeros(classes) if per == "class" else torch.tensor(float(gain))
        self.theta = nn.Parameter(init, requires_grad=learnable)

    def teacher(self, teacher_logits: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
        """Teacher temperature broadcastable to (B, C)."""
        theta = self.theta
        if theta.requires_grad:
            theta = _ReverseGrad.apply(theta, 0.5 * (1 - math.cos(math.pi * min(max(progress, 0.0), 1.0))))
        if self.per == "class":
            return self.temperature * _MAX_RATIO ** torch.tanh(theta)
        p = F.softmax(teacher_logits / self.temperature, dim=-1)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1, keepdim=True)
        h = entropy / math.log(teacher_logits.shape[-1])
        return self.temperature * _MAX_RATIO ** torch.tanh(theta * (0.5 - h))

    def student(self, progress: float) -> float:
        """Student temperature at training progress 0..1."""
        if self.schedule == "constant":
            return self.student_temperature
        f = min(max(progress, 0.0), 1.0)
        return self.temperature + (self.student_temperature - self.temperature) * f

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                progress: float = 1.0) -> torch.Tensor:
        return kd_loss(student_logits, teacher_logits, self.teacher(teacher_logits, progress),
                       self.student(progress))


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; gradient times ``-scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def _adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    if len(student_shape) == 3 and len(teacher_shape) == 3:
        return nn.Sequential(nn.Conv2d(student_shape[0], teacher_shape[0], 1),
                             nn.AdaptiveAvgPool2d(teacher_shape[1:]))
    n_in, n_out = math.prod(student_shape), math.prod(teacher_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out), nn.Unflatten(1, teacher_shape))


class HintLoss(nn.Module):
    """FitNets-style hint: a learned adapter maps student features onto the teacher's.

    Student features are firing rates (B, ...) of a spiking layer; teacher features
    are activations (B, ...) of an ANN layer or rates of an SNN layer. Feature maps
    (C, H, W) on both sides use a 1x1 convolution plus adaptive average pooling to
    the teacher's size; anything else a linear map. The loss is the mean squared error
    to the teacher features normalized by their per-sample RMS.
    """

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]):
        super().__init__()
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)
        self.adapter = _adapter(self.student_shape, self.teacher_shape)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        pred = self.adapter(student_feat)
        target = teacher_feat.detach()
        rms = target.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-6)
        diff = (pred - target).flatten(1) / rms[:, None]
        return diff.pow(2).mean()


def spike_rate_loss(spikes: list[torch.Tensor]) -> torch.Tensor:
    """Mean firing rate over all neurons, timesteps and samples of the given (T, B, ...) spike trains.

    Proportional to the spikes per inference of these layers, so its weight trades
    accuracy for spikes independently of the network size.
    """
    if not spikes:
        return torch.zeros(())
    total = sum(s.sum() for s in spikes)
    count = sum(s.numel() for s in spikes)
    return total / count
