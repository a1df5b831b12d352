"""Spiking neurons as ordinary torch modules with surrogate gradients.

Inputs and outputs are time-major, shaped ``(T, B, *features)``; the loop over
time lives here, everything else in the network is applied to all timesteps at
once. The dynamics are those of :mod:`deploy.core.ir`: reset right after the spike,
or with ``reset_delay`` snnTorch's delayed, undecayed subtraction.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ATanSpike(torch.autograd.Function):
    """Heaviside forward (strict ``x > 0``), arctangent surrogate backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def spike(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    return ATanSpike.apply(x, alpha)


def _param(value, learn: bool) -> torch.Tensor | nn.Parameter:
    t = torch.as_tensor(value, dtype=torch.float32).clone()
    return nn.Parameter(t) if learn else t


def broadcast_to_features(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a scalar, per-channel ``(C,)`` or per-neuron parameter against ``x`` of shape (B, C, ...)."""
    if p.dim() == 1 and x.dim() > 2 and p.numel() == x.shape[1]:
        return p.view(-1, *[1] * (x.dim() - 2))
    return p


class LIF(nn.Module):
    """Leaky integrate-and-fire (IF with ``beta=1``), optional synaptic current ``alpha``.

    ``reset_delay=True`` (reset "subtract" only) subtracts the threshold of a spike
    at the next step, undecayed: ``v[t] = beta v[t-1] + i[t] - s[t-1] thr``.
    """

    def __init__(self, beta=0.9, threshold=1.0, reset: str = "subtract", alpha=0.0,
                 learn_threshold: bool = False, learn_beta: bool = False, surrogate_alpha: float = 2.0,
                 reset_delay: bool = False):
        super().__init__()
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
        self.reset, self.surrogate_alpha = reset, surrogate_alpha
        self.reset_delay = bool(reset_delay) and reset == "subtract"  # a delayed zero reset is the same
        for name, val, learn in (("beta", beta, learn_beta), ("threshold", threshold, learn_threshold),
                                 ("alpha", alpha, False)):
            p = _param(val, learn)
            if isinstance(p, nn.Parameter):
                self.register_parameter(name, p)
            else:
                self.register_buffer(name, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = broadcast_to_features(self.beta.clamp(0, 1), x[0])
        thr = broadcast_to_features(self.threshold, x[0])
        alpha = broadcast_to_features(self.alpha, x[0])
        use_current = bool(torch.any(self.alpha != 0))
        v = torch.zeros_like(x[0])
        i = torch.zeros_like(x[0])
        r = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            if use_current:
                i = alpha * i + x_t
                x_t = i
            v = beta * v + x_t
            if self.reset_delay:
                v = v - r * thr
            s = spike(v - thr, self.surrogate_alpha)
            r = s.detach()
            if not self.reset_delay:
                v = v - r * thr if self.reset == "subtract" else v * (1 - r)
            out.append(s)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"reset={self.reset}" + (", reset_delay=True" if self.reset_delay else "")


class LI(nn.Module):
    """Leaky integrator readout: outputs the membrane potential at every step."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = broadcast_to_features(self.beta, x[0])
        v = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            v = beta * v + x_t
            out.append(v)
        return torch.stack(out)
