"""A user's snnTorch model file, written the way snnTorch's tutorial 5 writes networks.

``deploy compile snn_class.py:build --weights state.pt`` imports this file, calls ``build()``
and traces one forward pass: the loop over ``num_steps`` becomes the timesteps.
"""

import snntorch as snn
import torch
from torch import nn

num_steps = 10
beta = 0.9


class Net(nn.Module):
    """64 pixels -> 128 Leaky -> 10 Leaky; snnTorch defaults (reset "subtract", reset_delay=True)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(128, 10)
        self.lif2 = snn.Leaky(beta=beta)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _step in range(num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def build():
    return Net()
