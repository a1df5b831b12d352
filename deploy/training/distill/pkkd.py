"""Progressive kernel-based knowledge distillation (PKKD) of an adder network.

Xu et al., "Kernel Based Progressive Distillation for Adder Neural Networks" (NeurIPS 2020):
an adder student (:mod:`deploy.training.adder`) and a CNN teacher of the same architecture are
initialised and trained at the same time. The adder layers' outputs are negative L1
distances (Laplacian-like), the CNN's inner products (Gaussian-like), so each pair of layer
outputs is compared after a kernel mapping:

- ``gaussian``: the teacher's ``x . w`` becomes ``exp(-||x - w||^2 / (2 s_c^2))`` (from
  ``||x||^2 + ||w||^2 - 2 x . w``), the student's ``-||x - w||_1`` becomes
  ``exp(-||x - w||_1 / s_a)``; ``s_c^2`` and ``s_a`` are the batch means of the distances;
- ``linear``: both outputs standardised per layer;

then a learned 1x1 convolution (linear map for the classifier) maps the student's mapped
features onto the teacher's, with a mean squared error. The student's loss moves
progressively from teacher-guided to label-guided::

    L = (1 - a) CE(student, y) + a (KD(student, teacher, T) + lam * sum_l feature_l),
    a = a0 (1 - progress)

and the teacher learns from the labels alone (cross-entropy), ahead of the student.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.errors import DeployError
from deploy.core.repro import reproducible
from deploy.training.adder import AdderConv2d, AdderLinear, conv_net
from deploy.training.distill.losses import kd_loss

KERNELS = ("gaussian", "linear")
_SYNAPSES = (AdderConv2d, AdderLinear, nn.Conv2d, nn.Linear)


def _synapses(net: nn.Sequential) -> list[nn.Module]:
    return [m for m in net if isinstance(m, _SYNAPSES)]


class _Taps:
    """Inputs and outputs of a network's conv/linear/adder layers, kept by forward hooks."""

    def __init__(self, net: nn.Sequential):
        self.layers = _synapses(net)
        self.values: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self.hooks = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def keep(module, args, output):
            self.values[i] = (args[0], output)
        return keep

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def _patch_sq_norms(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||patch||^2 at every output position of a conv (or of the input row of a linear layer)."""
    if isinstance(layer, nn.Conv2d):
        ones = torch.ones(1, *layer.weight.shape[1:], dtype=x.dtype)
        return F.conv2d(x * x, ones, stride=layer.stride, padding=layer.padding)
    return (x.flatten(1) ** 2).sum(1, keepdim=True)


def kernel_map(layer: nn.Module, x: torch.Tensor, y: torch.Tensor, kernel: str) -> torch.Tensor:
    """The kernel-mapped output ``y`` of ``layer`` (input ``x``): see the module docstring."""
    if kernel == "linear":
        return (y - y.mean()) / y.std().clamp_min(1e-6)
    if isinstance(layer, (AdderConv2d, AdderLinear)):
        d = -y                                                        # L1 distances
        return torch.exp(-d / d.mean().detach().clamp_min(1e-6))
    w_sq = layer.weight.flatten(1).pow(2).sum(1)
    w_sq = w_sq.view(1, -1, 1, 1) if y.dim() == 4 else w_sq.view(1, -1)
    d2 = (_patch_sq_norms(layer, x) + w_sq - 2 * y).clamp_min(0)    # squared L2 distances
    return torch.exp(-d2 / (2 * d2.mean().detach().clamp_min(1e-6)))


class FeatureMatch(nn.Module):
    """Learned maps (1x1 conv or linear) from the student's mapped features to the teacher's."""

    def __init__(self, student: nn.Sequential, kernel: str = "gaussian"):
        super().__init__()
        if kernel not in KERNELS:
            raise DeployError(f"unknown PKKD kernel {kernel!r} (choose from {', '.join(KERNELS)})")
        self.kernel = kernel
        maps = []
        for m in _synapses(student):
            n = m.out_channels if isinstance(m, AdderConv2d) else m.out_features
            maps.append(nn.Conv2d(n, n, 1) if isinstance(m, AdderConv2d) else nn.Linear(n, n))
        self.maps = nn.ModuleList(maps)

    def forward(self, s_taps: _Taps, t_taps: _Taps) -> torch.Tensor:
        loss = torch.zeros(())
        for proj, ls, lt, sv, tv in zip(self.maps, s_taps.layers, t_taps.layers, s_taps.values, t_taps.values, strict=True):
            fs = kernel_map(ls, sv[0], sv[1], self.kernel)
            ft = kernel_map(lt, tv[0], tv[1], self.kernel).detach()
            loss = loss + F.mse_loss(proj(fs), ft)
        return loss / max(len(self.maps), 1)


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of a frame-based network on images (N, ...) reshaped to (N, 1, H, W)."""
    net.eval()
    hits = sum(int((net(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / max(len(x), 1)


@reproducible
def train(split: Split, method: str = "pkkd", epochs: int = 3, channels: tuple[int, ...] = (8, 16),
          kernel: str = "gaussian", alpha0: float = 0.5, temperature: float = 4.0, feature_weight: float = 1.0,
          lr: float = 1e-2, batch_size: int = 64, eta: float = 0.1, seed: int = 0,
          ) -> tuple[nn.Sequential, list[dict[str, Any]], nn.Sequential | None]:
    """Train one network on ``split`` and return (network, per-epoch history, teacher or None).

    ``method``: ``"cnn"`` (the multiplication network alone), ``"adder"`` (the adder network
    alone, cross-entropy) or ``"pkkd"`` (adder student with a CNN teacher trained alongside).
    """
    if method not in ("cnn", "adder", "pkkd"):
        raise DeployError(f"unknown PKKD run {method!r} (choose from cnn, adder, pkkd)")
    if not 0.0 <= alpha0 <= 1.0:
        raise DeployError(f"alpha0 must lie in [0, 1], got {alpha0:g}")
    side = int(math.isqrt(split.x_train[0].numel()))
    shape = (1, side, side)
    x, y = fit_to_model(split.x_train, shape), split.y_train
    xt = fit_to_model(split.x_test, shape)
    net = conv_net("cnn" if method == "cnn" else "adder", channels, split.classes, image=side, eta=eta, seed=seed)
    teacher = conv_net("cnn", channels, split.classes, image=side, seed=seed) if method == "pkkd" else None
    match = FeatureMatch(net, kernel) if teacher is not None else None
    params = list(net.parameters())
    if teacher is not None:
        params += list(teacher.parameters()) + list(match.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    s_taps = _Taps(net) if teacher is not None else None
    t_taps = _Taps(teacher) if teacher is not None else None
    g = torch.Generator().manual_seed(seed)
    steps, step, history = max(epochs * math.ceil(len(x) / batch_size), 1), 0, []
    try:
        for epoch in range(epochs):
            net.train()
            if teacher is not None:
                teacher.train()
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                xb, yb = x[idx], y[idx]
                logits = net(xb)
                ce = F.cross_entropy(logits, yb)
                if teacher is None:
                    loss = ce
                else:
                    a = alpha0 * (1 - step / steps)
                    t_logits = teacher(xb)
                    guide = kd_loss(logits, t_logits.detach(), temperature) + feature_weight * match(s_taps, t_taps)
                    loss = (1 - a) * ce + a * guide + F.cross_entropy(t_logits, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
            sched.step()
            rec = {"epoch": epoch + 1, "test_acc": accuracy(net, xt, split.y_test)}
            if teacher is not None:
                rec["teacher_acc"] = accuracy(teacher, xt, split.y_test)
            history.append(rec)
    finally:
        for taps in (s_taps, t_taps):
            if taps is not None:
                taps.close()
    return net.eval(), history, (teacher.eval() if teacher is not None else None)
