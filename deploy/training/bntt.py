"""BatchNorm through time (BNTT, Kim & Panda 2021), trained in place of a ``timescale`` node.

Training uses :class:`BNTT`: a separate BatchNorm per timestep. Its trained statistics
fold into a per-timestep, per-channel affine map, the IR node :class:`deploy.core.ir.TimeScale`::

    y[t] = x[t] * scale[t, c] + shift[t, c]
    scale[t] = gamma_t / sqrt(var_t + eps),  shift[t] = beta_t - mean_t * scale[t]

``SpikingNet.to_graph()`` writes the folded statistics back (every timescale module has
``folded()``). A target runs the node only if it lists ``"timescale"`` in its
``supported_kinds``; others reject the layer by name in ``check``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deploy.core import net as snn_net
from deploy.core.timescale import check_steps

KIND = "timescale"


def spec_layer(channels: int, timesteps: int, name: str | None = None) -> dict:
    """A layer entry for :func:`deploy.core.net.build` (identity init)."""
    out = {"type": KIND, "scale": np.ones((timesteps, channels), np.float32),
           "shift": np.zeros((timesteps, channels), np.float32)}
    if name:
        out["name"] = name
    return out


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
        check_steps(self.name, len(self.bns), x)
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
