"""Adder layers (AdderNet, Chen et al., CVPR 2020): outputs are negative L1 distances.

``AdderLinear``: ``y[b, o] = -sum_i |x[b, i] - w[o, i]|``; ``AdderConv2d`` the same over
every unfolded input patch. Forward runs as one ``torch.cdist(p=1)`` per call (patches
from ``F.unfold``); backward uses AdderNet's full-precision gradients instead of the
sign of the L1 distance::

    dy/dw = x - w                 (eq. 5)
    dy/dx = HardTanh(w - x)       (eq. 6, clipped to [-1, 1])

and the adaptive learning-rate scaling of eq. 10: each adder layer's weight gradient is
rescaled to ``eta * sqrt(k) / ||grad||_2`` times itself (``k`` weights), so layers with
small gradients (usual for L1 outputs) still learn.

:func:`hwmodels.digital.ann_cost.digital_cost` prices a network of these layers on the ``digital`` target's
constants: two additions per weight operand (the subtraction and the accumulation; the
absolute value selects add or subtract) and no multiplications, next to the CNN of the
same shape priced with multiply-accumulates. An adder network is not a spiking network.
The ``neurodeploy-ann`` checkpoint (:mod:`deploy.training.ann`) stores these layers as
``adder_conv2d`` and ``adder_linear``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: backward works on at most this many (rows x outputs x inputs) elements at once
_CHUNK = 1 << 24


class _AdderFn(torch.autograd.Function):
    """``-cdist(x, w, p=1)`` for x (N, K), w (O, K) with AdderNet's gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return -torch.cdist(x.unsqueeze(0), w.unsqueeze(0), p=1).squeeze(0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        grad_w = g.t() @ x - w * g.sum(0)[:, None]                   # sum_n g[n, o] (x[n] - w[o])
        grad_x = None
        if ctx.needs_input_grad[0]:
            rows = max(1, _CHUNK // max(w.numel(), 1))
            grad_x = torch.cat([
                torch.einsum("no,nok->nk", g[i:i + rows],
                             (w.unsqueeze(0) - x[i:i + rows].unsqueeze(1)).clamp(-1.0, 1.0))
                for i in range(0, len(x), rows)])
        return grad_x, grad_w


def adder(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Negative L1 distances (N, O) between rows of x (N, K) and w (O, K)."""
    return _AdderFn.apply(x, w)


def _adaptive_scale(eta: float, k: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * (eta * math.sqrt(k) / grad.norm().clamp_min(1e-12))
    return hook


class AdderLinear(nn.Module):
    """Fully connected adder layer; ``eta`` > 0 turns on the adaptive gradient scaling."""

    def __init__(self, in_features: int, out_features: int, eta: float = 0.1):
        super().__init__()
        self.in_features, self.out_features, self.eta = in_features, out_features, eta
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if eta > 0:
            self.weight.register_hook(_adaptive_scale(eta, self.weight.numel()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adder(x.flatten(1), self.weight)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, eta={self.eta}"


class AdderConv2d(nn.Module):
    """2-D adder convolution (square kernel, stride, zero padding); same shapes as ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, eta: float = 0.1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.eta = kernel_size, stride, padding, eta
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if eta > 0:
            self.weight.register_hook(_adaptive_scale(eta, self.weight.numel()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        cols = F.unfold(x, k, padding=p, stride=s).transpose(1, 2).reshape(b * oh * ow, -1)
        y = adder(cols, self.weight.flatten(1))                         # (B*L, O)
        return y.reshape(b, oh * ow, -1).transpose(1, 2).reshape(b, -1, oh, ow)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, eta={self.eta}")


# -- the small conv family used by PKKD ------------------------------------------------------
def conv_net(kind: str, channels: tuple[int, ...] = (8, 16), classes: int = 10, in_channels: int = 1,
             image: int = 28, eta: float = 0.1, seed: int = 0, adder_classifier: bool = False) -> nn.Sequential:
    """``[conv3x3 -> BN -> ReLU -> maxpool2] * len(channels) -> flatten -> fc -> BN`` with ``kind``
    ``"adder"`` (adder convolutions) or ``"cnn"`` (multiplications). The classifier ``fc`` stays a
    multiplication layer, as in AdderNet and PKKD, unless ``adder_classifier`` (an adder
    classifier learns far slower: 43 % vs 76 % after one epoch on 3000 MNIST images)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c = in_channels
    for out in channels:
        conv = (AdderConv2d(c, out, 3, padding=1, eta=eta) if kind == "adder"
                else nn.Conv2d(c, out, 3, padding=1, bias=False))
        layers += [conv, nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        c, image = out, image // 2
    feat = c * image * image
    fc = (AdderLinear(feat, classes, eta=eta) if kind == "adder" and adder_classifier
          else nn.Linear(feat, classes, bias=False))
    layers += [nn.Flatten(), fc, nn.BatchNorm1d(classes)]
    return nn.Sequential(*layers)
