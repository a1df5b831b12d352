"""The DVSNet-like network of the ADC-less IMC study, ready for ``deploy compile``.

    deploy compile examples/dvsnet.py:model --target imc --compare imc-adc --data events --samples 16 -o out/dvsnet

``model()`` builds the built-in ``dvsnet`` architecture (64x64x2 event frames,
eleven 3x3 convolutions of 32 channels, 128 -> 11 classifier, T = 5) with seeded
random weights, and sets every LIF threshold so that the layer fires at about
15% on synthetic event streams of 50% input activity. The weights are untrained
(its accuracy is chance) and the activity of its deep layers is not that of a
trained network: on ``imc`` the 1-bit sense amplifiers leave it (nearly) silent
from the third LIF layer on. Use it for cost-only studies (array counts, memory,
area, assumed-rate estimates), not for accuracy or for comparing targets.

Trained models: ``examples/models/dvsnet.pt`` (float, ``python
examples/train_dvsnet.py``) and ``examples/models/dvsnet_imc.pt`` (fitted to
the 1-bit sense amplifiers layer by layer, then its last five layers trained jointly on
the target's own spikes)::

    deploy finetune examples/models/dvsnet.pt --target imc --data events --reconstruct 400 \
        --reconstruct-samples 512 --epochs 0 --train-samples 512 --test-samples 128 \
        --batch-size 16 --threads 2 -o out/dvsnet_imc_layerwise.pt
    deploy finetune out/dvsnet_imc_layerwise.pt --target imc --data events --tail 5 --tail-epochs 25 \
        --epochs 0 --train-samples 2048 --test-samples 128 --batch-size 16 --threads 2 -o out/dvsnet_imc.pt

The README's imc / imc-adc ratios come from the latter::

    deploy compile examples/models/dvsnet_imc.pt --target imc --compare imc-adc --data events -o out/dvs
"""

from __future__ import annotations

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.training.arch.dvsnet import balance_thresholds, dvsnet

TIMESTEPS = 5
ENCODING = "events"


def model(timesteps: int = TIMESTEPS, rate: float = 0.15, seed: int = 0) -> SpikingNet:
    """DVSNet with random weights and thresholds balanced to fire at ``rate``."""
    torch.manual_seed(seed)
    net = build(dvsnet(timesteps=timesteps), seed=seed)
    x, _ = data.synthetic_events(4, timesteps, 64, 11, activity=0.5, seed=seed + 1)
    balance_thresholds(net, x, rate=rate)
    return net
