"""The simulator of the ``timescale`` node (:class:`deploy.core.ir.TimeScale`):
a per-timestep, per-channel affine map on a time-major (T, B, C, ...) tensor."""

from __future__ import annotations

import torch
from torch import nn

from deploy.core.errors import ModelError
from deploy.core.ir import TimeScale


def check_steps(name: str, trained: int, x: torch.Tensor) -> None:
    if x.shape[0] != trained:
        raise ModelError(f"layer '{name}': per-timestep scaling is defined for {trained} timesteps, "
                         f"the network runs {x.shape[0]}")


def _view(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(T, C) parameters against x of shape (T, B, C, ...)."""
    return p.view(p.shape[0], 1, p.shape[1], *[1] * (x.dim() - 3))


class TimeScaleModule(nn.Module):
    """The simulator of a :class:`TimeScale` node (input (T, B, C, ...))."""

    def __init__(self, node: TimeScale):
        super().__init__()
        self.name = node.name
        self.scale = nn.Parameter(torch.from_numpy(node.scale.copy()))
        self.shift = nn.Parameter(torch.from_numpy(node.shift.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_steps(self.name, self.scale.shape[0], x)
        return x * _view(self.scale, x) + _view(self.shift, x)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale.detach(), self.shift.detach()
