"""A CIFAR-10-shaped spiking VGG (built-in architecture "vgg_cifar"): the scale workload.

3x32x32 analog input over T = 8 steps (direct encoding), six 3x3 convolutions
(64, 64, 128, 128, 256, 256 channels, padding 1) each followed by a LIF layer, a
2x2 max-pool after every second convolution (32 -> 4 pixels), then
4096 -> 256 -> 10 linear layers with LIF neurons. About 1.2 M weights and 230 k
neurons; a float forward costs about 1.2 G multiply-accumulates per sample over
the 8 steps. :func:`model` gives seeded random weights with thresholds balanced
to a target rate on synthetic inputs (:func:`synthetic_inputs`): realistic activity
for speed, memory and cost studies, chance accuracy.
"""

from __future__ import annotations

from typing import Any

import torch

from deploy.training.arch.dvsnet import balance_thresholds

NAME = "vgg_cifar"
CHANNELS = (64, 64, 128, 128, 256, 256)


def vgg_cifar(timesteps: int = 8, beta: float = 0.9, threshold: float = 1.0, classes: int = 10,
              hidden: int = 256, channels: tuple[int, ...] = CHANNELS, size: int = 32,
              pool: str = "max") -> dict[str, Any]:
    """The ``build()`` spec: (3, size, size) images over ``timesteps`` steps. Loihi runs each max
    pool as a relay population (about 32,000 cores, 251 Loihi chips at the default size).
    ``pool="avg"``: average pooling, which Loihi folds into the next layer; the first linear layer
    then reads 16,384 neurons, more than a Loihi core has input axons."""
    layers: list[dict[str, Any]] = []
    for i, ch in enumerate(channels, start=1):
        layers.append({"type": "conv2d", "out_channels": int(ch), "kernel_size": 3, "padding": 1,
                       "name": f"conv{i}"})
        layers.append({"type": "lif", "beta": beta, "threshold": threshold, "name": f"lif{i}"})
        if i % 2 == 0:
            layers.append({"type": "pool2d", "mode": pool, "kernel_size": 2, "stride": 2, "name": f"pool{i // 2}"})
    layers += [{"type": "flatten", "name": "flatten"},
               {"type": "linear", "out_features": int(hidden), "name": "fc1"},
               {"type": "lif", "beta": beta, "threshold": threshold, "name": "lif_fc1"},
               {"type": "linear", "out_features": int(classes), "name": "fc2"},
               {"type": "lif", "beta": beta, "threshold": threshold, "name": "out"}]
    return {"input_shape": [3, size, size], "timesteps": int(timesteps), "encoding": "direct",
            "name": NAME, "layers": layers}


def synthetic_inputs(n: int, size: int = 32, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` CIFAR-shaped images in [0, 1] (smooth random fields, as natural images are) and labels."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=gen)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0, 1), torch.randint(0, classes, (n,), generator=gen)


def model(timesteps: int = 8, rate: float = 0.1, seed: int = 0, calib_samples: int = 2, **spec: Any):
    """The VGG as a :class:`~deploy.core.net.SpikingNet` with seeded random weights, every LIF
    threshold set so that the layer fires at about ``rate`` on ``calib_samples`` synthetic images."""
    from deploy.core.net import build

    net = build(vgg_cifar(timesteps=timesteps, **spec), seed=seed)
    x, _ = synthetic_inputs(calib_samples, size=int(spec.get("size", 32)), seed=seed + 1)
    balance_thresholds(net, x, rate=rate)
    return net
