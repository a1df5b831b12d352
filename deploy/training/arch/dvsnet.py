"""A DVSNet-like spiking CNN for 64x64 two-channel event input (built-in architecture "dvsnet").

The topology of the DVS network in the ADC-less IMC study (NeuroSim fork
mapolinario94/DNN_NeuroSim_V1.3, ``NetWork_DVSNet.csv``): eleven 3x3
convolutions of 32 channels (padding 1), a 2x2 max-pool after convolutions 3,
5, 7, 9 and 11 (64 -> 2 pixels), and a 128 -> 11 classifier. The original gates
each block with ``(1 - x1) * x``; here the blocks are plain feed-forward, so every
layer stays in the IR and max-pooled spikes stay binary. ``build(dvsnet())``
gives an untrained :class:`deploy.core.net.SpikingNet`.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "dvsnet"


def dvsnet(timesteps: int = 5, beta: float = 0.9, threshold: float = 1.0, classes: int = 11,
           size: int = 64) -> dict[str, Any]:
    """The ``build()`` spec: (2, size, size) event frames over ``timesteps`` steps (5-10 in the study)."""
    layers: list[dict[str, Any]] = []
    for i in range(1, 12):
        layers.append({"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1, "name": f"conv{i}"})
        layers.append({"type": "lif", "beta": beta, "threshold": threshold, "name": f"lif{i}"})
        if i % 2 == 1 and i > 1:
            layers.append({"type": "pool2d", "mode": "max", "kernel_size": 2, "stride": 2, "name": f"pool{i // 2}"})
    layers += [{"type": "flatten", "name": "flatten"},
               {"type": "linear", "out_features": classes, "name": "fc"},
               {"type": "lif", "beta": beta, "threshold": threshold, "name": "out"}]
    return {"input_shape": [2, size, size], "timesteps": int(timesteps), "encoding": "events",
            "name": NAME, "layers": layers}


@torch.no_grad()
def balance_thresholds(net, x: torch.Tensor, rate: float = 0.1, iters: int = 12) -> None:
    """Set every LIF layer's (scalar) threshold, in order, so that it fires at about ``rate``
    on the batch ``x``: gives an untrained network realistic activity for cost studies."""
    for node in net.graph.nodes:
        if node.kind != "lif":
            continue
        _, values = net.run(x, record=True)
        current, lif = values[node.inputs[0]], net.layers[node.name]
        lo, hi = 1e-4, float(current.abs().max()) * len(current) + 1e-3
        for _ in range(iters):
            mid = (lo * hi) ** 0.5
            lif.threshold.fill_(mid)
            if float(lif(current).mean()) > rate:
                lo = mid
            else:
                hi = mid
        lif.threshold.fill_((lo * hi) ** 0.5)
