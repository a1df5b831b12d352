"""BatchNorm through time (BNTT, Kim & Panda 2021) and the ``timescale`` IR node it folds into.

Training uses :class:`BNTT`: a separate BatchNorm per timestep. Its trained statistics
fold into a per-timestep, per-channel affine map, the IR node :class:`TimeScale`::

    y[t] = x[t] * scale[t, c] + shift[t, c]
    scale[t] = gamma_t / sqrt(var_t + eps),  shift[t] = beta_t - mean_t * scale[t]

Importing this module registers the node with :func:`deploy.ir.register_node` and its
simulator with :mod:`deploy.snn.net` (``EXTRA_MODULES``, ``EXTRA_WRITEBACK``,
``TIME_AWARE_KINDS``). A target runs it only if it lists ``"timescale"`` in its
``supported_kinds``; others reject the layer by name in ``check``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deploy import ir
from deploy.errors import ModelError
from deploy.snn import net as snn_net

KIND = "timescale"


@dataclass
class TimeScale(ir.Node):
    """Per-timestep, per-channel affine map; ``scale`` and ``shift`` are (T, C)."""

    kind = KIND
    scale: np.ndarray = None  # type: ignore[assignment]
    shift: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.scale is None:
            raise ValueError("timescale needs a (T, C) scale array")
        self.scale = np.asarray(self.scale, dtype=np.float32)
        self.shift = (np.zeros_like(self.scale) if self.shift is None
                      else np.asarray(self.shift, dtype=np.float32))

    @property
    def timesteps(self) -> int:
        return int(self.scale.shape[0])

    def validate(self, in_shapes):
        super().validate(in_shapes)
        if self.scale.ndim != 2 or self.shift.shape != self.scale.shape:
            raise ModelError(f"layer '{self.name}': scale and shift must both be (T, C), got "
                             f"{self.scale.shape} and {self.shift.shape}")
        if self.scale.shape[1] != in_shapes[0][0]:
            raise ModelError(f"layer '{self.name}': {self.scale.shape[1]} channels, input has "
                             f"{in_shapes[0][0]} (shape {in_shapes[0]})")


def timescale_node(name: str, inputs: list[str], channels: int, timesteps: int) -> TimeScale:
    """An identity timescale node (scale 1, shift 0)."""
    return TimeScale(name, inputs, scale=np.ones((timesteps, channels), np.float32),
                     shift=np.zeros((timesteps, channels), np.float32))


def spec_layer(channels: int, timesteps: int, name: str | None = None) -> dict:
    """A layer entry for :func:`deploy.snn.net.build` (identity init)."""
    out = {"type": KIND, "scale": np.ones((timesteps, channels), np.float32),
           "shift": np.zeros((timesteps, channels), np.float32)}
    if name:
        out["name"] = name
    return out


def _check_steps(name: str, trained: int, x: torch.Tensor) -> None:
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
        _check_steps(self.name, self.scale.shape[0], x)
        return x * _view(self.scale, x) + _view(self.shift, x)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale.detach(), self.shift.detach()


class BNTT(nn.Module):
    """Training layer: one BatchNorm per timestep (1d for (C,) features, 2d for (C, H, W))."""

    def __init__(self, channels: int, timesteps: int, spatial: bool = True, eps: float = 1e-4,
                 momentum: float = 0.1, bias: bool = True, name: str = KIND):
        super().__init__()
        self.name = name
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        self.bns = nn.ModuleList(cls(channels, eps=eps, momentum=momentum) for _ in range(timesteps))
        if not bias:   # the BNTT paper learns only the per-timestep gain
            for bn in self.bns:
                bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_steps(self.name, len(self.bns), x)
        return torch.stack([bn(x_t) for bn, x_t in zip(self.bns, x, strict=True)])

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each (T, C), of the BatchNorms in eval mode."""
        scale = torch.stack([bn.weight / torch.sqrt(bn.running_var + bn.eps) for bn in self.bns])
        shift = torch.stack([bn.bias - bn.running_mean * s for bn, s in zip(self.bns, scale, strict=True)])
        return scale.detach(), shift.detach()


def attach(net: snn_net.SpikingNet, **kwargs) -> snn_net.SpikingNet:
    """Swap every timescale module of ``net`` for a :class:`BNTT` trainer (in place).

    ``net.to_graph()`` then folds the trained statistics into the timescale nodes.
    """
    shapes = net.graph.shapes()
    for node in net.graph.nodes:
        if node.kind == KIND:
            in_shape = shapes[node.inputs[0]]
            net.layers[node.name] = BNTT(in_shape[0], node.timesteps, spatial=len(in_shape) == 3,
                                         name=node.name, **kwargs)
    return net


def _writeback(node: TimeScale, module: nn.Module) -> None:
    scale, shift = module.folded()
    node.scale = scale.cpu().numpy().astype(np.float32)
    node.shift = shift.cpu().numpy().astype(np.float32)


ir.register_node(TimeScale)
snn_net.EXTRA_MODULES[KIND] = TimeScaleModule
snn_net.EXTRA_WRITEBACK[KIND] = _writeback
snn_net.TIME_AWARE_KINDS.add(KIND)
