"""Potential-based layer normalisation (PBLN) for spiking layers (PL-SDQN).

Sun, Zeng and Li, "Solving the spiking feature information vanishing problem in spiking
deep Q network with potential based normalization" (Front. Neurosci. 2022): the membrane
potential of a spiking layer is layer-normalised before it meets the threshold, so deep
spiking Q-networks keep firing whatever the scale of their inputs::

    v[t]  = beta * v[t-1] + i[t]                    (reset to 0 after a spike)
    n[t]  = gamma * (v[t] - mean(v[t])) / sqrt(var(v[t]) + eps) + shift
    s[t]  = H(n[t] - theta)

with ``mean`` and ``var`` over the layer's neurons per sample and step, ``gamma > 0``
and ``shift`` learned per neuron. ``mode="layer"`` uses these per-sample statistics
(training, as the paper does) and keeps their running averages; ``mode="frozen"`` uses
the running averages, so the test ``n[t] > theta`` becomes ``v[t] > thr_i`` with one
fixed threshold per neuron (:meth:`PBLNLIF.thresholds`), which a plain LIF layer with
rescaled weights computes exactly (the deployable form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.neurons import spike

#: frozen thresholds stay at least this large (a plain LIF needs a positive threshold)
MIN_THRESHOLD = 1e-3


class PBLNLIF(nn.Module):
    """LIF neurons (zero reset) whose potential is layer-normalised before the threshold test.

    Input and output are time-major ``(T, B, features)``.
    """

    def __init__(self, features: int, beta: float = 0.8, threshold: float = 0.5, eps: float = 1e-5,
                 momentum: float = 0.01, surrogate_alpha: float = 2.0):
        super().__init__()
        self.features, self.beta, self.theta, self.eps = int(features), float(beta), float(threshold), eps
        self.momentum, self.surrogate_alpha = momentum, surrogate_alpha
        self.log_gamma = nn.Parameter(torch.zeros(self.features))
        self.shift = nn.Parameter(torch.zeros(self.features))
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_std", torch.ones(()))
        self.mode = "layer"
        self.collect: list[torch.Tensor] | None = None   # a list gathers the potentials (calibration)

    @property
    def gamma(self) -> torch.Tensor:
        return F.softplus(self.log_gamma) / F.softplus(torch.zeros(()))   # positive, 1 at init

    def normalise(self, v: torch.Tensor, gamma: torch.Tensor | None = None) -> torch.Tensor:
        """PBLN of potentials ``v`` (B, features) with per-sample layer statistics."""
        var, mu = torch.var_mean(v, -1, unbiased=False, keepdim=True)
        gamma = self.gamma if gamma is None else gamma
        return gamma * (v - mu) * torch.rsqrt(var + self.eps) + self.shift

    def thresholds(self) -> torch.Tensor:
        """Per-neuron potential thresholds of the frozen form: ``mu + sd (theta - shift) / gamma``."""
        thr = self.running_mean + self.running_std * (self.theta - self.shift) / self.gamma
        return thr.clamp_min(MIN_THRESHOLD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x[0])
        frozen = self.mode == "frozen"
        gamma = self.gamma
        if frozen:
            thr, scale = self.thresholds(), gamma / self.running_std
        stats = []
        out = []
        for x_t in x:
            v = self.beta * v + x_t
            if frozen:
                s = spike((v - thr) * scale, self.surrogate_alpha)
            else:
                s = spike(self.normalise(v, gamma) - self.theta, self.surrogate_alpha)
                stats.append(v.detach())
            v = v * (1 - s.detach())
            out.append(s)
        if stats and self.training:
            self._update_running(torch.stack(stats))
        if stats and self.collect is not None:
            self.collect.append(torch.stack(stats))
        return torch.stack(out)

    @torch.no_grad()
    def _update_running(self, v: torch.Tensor) -> None:
        mean = v.mean(-1).mean()
        std = torch.sqrt(v.var(-1, unbiased=False) + self.eps).mean()
        self.running_mean.lerp_(mean, self.momentum)
        self.running_std.lerp_(std, self.momentum)

    @torch.no_grad()
    def calibrate(self, v_stats: torch.Tensor) -> None:
        """Set the running statistics from potentials ``v_stats`` (T, B, features) of the layer mode."""
        self.running_mean.copy_(v_stats.mean(-1).mean())
        self.running_std.copy_(torch.sqrt(v_stats.var(-1, unbiased=False) + self.eps).mean())
