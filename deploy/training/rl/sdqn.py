"""The PL-SDQN Q-network: spiking hidden layers with PBLN and a non-spiking readout.

``obs -> scale to [0, 1] -> Linear -> PBLN-LIF -> Linear -> PBLN-LIF -> Linear -> LI``;
the input is applied at every one of ``timesteps`` steps (direct encoding) and the
Q-values are the readout's mean membrane over time (the ``li`` readout of
:mod:`deploy.core.net`). The observation scaling is the agent's fixed preprocessing
(stored in the checkpoint's meta), so the network sees inputs in [0, 1] as the
hardware targets' graded inputs expect.

:func:`to_graph` writes the frozen form as a plain :class:`deploy.core.ir.Graph`: each
PBLN-LIF layer becomes a LIF layer (zero reset, threshold 1) whose incoming weights
and bias are divided by its per-neuron frozen thresholds, which is exact because the
potential is linear in them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.io import native
from deploy.training.rl.pbln import PBLNLIF

#: CartPole-v1 observation ranges mapped to [0, 1] (cart position and pole angle at the
#: termination limits, velocities at a range the upright policy stays inside); values clip.
CARTPOLE_LOW = (-2.4, -3.0, -0.2095, -3.5)
CARTPOLE_HIGH = (2.4, 3.0, 0.2095, 3.5)


def scale_obs(obs: np.ndarray | torch.Tensor, low=CARTPOLE_LOW, high=CARTPOLE_HIGH) -> torch.Tensor:
    """Observations (..., 4) to network inputs in [0, 1]."""
    lo, hi = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
    x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


class SDQN(nn.Module):
    """Spiking Q-network; ``forward(x)`` maps inputs (B, obs) in [0, 1] to Q-values (B, actions)."""

    def __init__(self, observations: int = 4, actions: int = 2, hidden: tuple[int, ...] = (64, 64),
                 timesteps: int = 4, beta: float = 0.8, threshold: float = 0.5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.observations, self.actions, self.timesteps = int(observations), int(actions), int(timesteps)
        sizes = (self.observations, *[int(h) for h in hidden])
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.neurons = nn.ModuleList(PBLNLIF(b, beta=beta, threshold=threshold) for b in sizes[1:])
        self.readout = nn.Linear(sizes[-1], self.actions)

    def set_mode(self, mode: str) -> SDQN:
        """``"layer"`` (per-sample PBLN statistics) or ``"frozen"`` (running statistics)."""
        if mode not in ("layer", "frozen"):
            raise ValueError(f"PBLN mode must be 'layer' or 'frozen', got {mode!r}")
        for n in self.neurons:
            n.mode = mode
        return self

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(Q-values (B, actions), spikes (T, B, hidden) of every hidden layer)."""
        h = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        spikes = []
        for fc, neuron in zip(self.fcs, self.neurons, strict=True):
            h = neuron(fc(h))
            spikes.append(h)
        membrane = torch.cumsum(self.readout(h), dim=0)          # LI readout, beta = 1
        return membrane.mean(0), spikes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0]

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Freeze the PBLN statistics at their averages over inputs ``x`` (B, obs), in layer mode."""
        self.set_mode("layer").eval()
        for n in self.neurons:
            n.collect = []
        self(x)
        for n in self.neurons:
            n.calibrate(torch.cat(n.collect, dim=1))
            n.collect = None


#: threshold of the spiking readout (a fraction of a typical Q-value difference)
SPIKE_READOUT_THRESHOLD = 1e-3


def to_graph(net: SDQN, name: str = "pl_sdqn_cartpole", readout: str = "li") -> ir.Graph:
    """The frozen form of ``net`` as a plain LIF graph (see the module docstring).

    ``readout="spikes"`` writes the variant for targets that read decisions from spike
    counts (Loihi): the Q-layer's weights and bias are centred over the actions (the argmax
    is unchanged) and drive integrate-and-fire neurons (zero reset, a small threshold), so
    the action whose centred Q-current is positive fires and the others stay silent.
    """
    if readout not in ("li", "spikes"):
        raise ValueError(f"readout must be 'li' or 'spikes', got {readout!r}")
    nodes: list[ir.Node] = []
    prev = "input"
    for i, (fc, neuron) in enumerate(zip(net.fcs, net.neurons, strict=True)):
        thr = neuron.thresholds().detach()
        w = (fc.weight.detach() / thr[:, None]).numpy().astype(np.float32)
        b = (fc.bias.detach() / thr).numpy().astype(np.float32)
        nodes.append(ir.Linear(f"fc{i + 1}", [prev], weight=w, bias=b))
        nodes.append(ir.LIF(f"lif{i + 1}", [f"fc{i + 1}"], beta=neuron.beta, threshold=1.0, reset="zero"))
        prev = f"lif{i + 1}"
    nodes.append(ir.Linear("q", [prev], weight=net.readout.weight.detach().numpy().astype(np.float32),
                           bias=net.readout.bias.detach().numpy().astype(np.float32)))
    nodes.append(ir.LI("readout", ["q"], beta=1.0))
    graph = ir.Graph(input_shape=(net.observations,), nodes=nodes, timesteps=net.timesteps,
                     encoding="direct", name=name)
    graph.validate()
    return spiking_readout(graph) if readout == "spikes" else graph


def spiking_readout(graph: ir.Graph) -> ir.Graph:
    """A copy of an SDQN graph whose LI readout is replaced by the spike-count readout of
    :func:`to_graph` (``readout="spikes"``)."""
    g = graph.copy()
    q, out = g.nodes[-2], g.nodes[-1]
    if not isinstance(q, ir.Linear) or out.kind != "li":
        raise ir.ModelError(f"model '{g.name}': expected a linear Q-layer and an LI readout at the end")
    q.weight = (q.weight - q.weight.mean(0, keepdims=True)).astype(np.float32)
    if q.bias is not None:
        q.bias = (q.bias - q.bias.mean()).astype(np.float32)
    g.nodes[-1] = ir.LIF(out.name, list(out.inputs), beta=1.0, threshold=SPIKE_READOUT_THRESHOLD, reset="zero")
    return g.validate()


def save(net: SDQN, path: str | Path, meta: dict[str, Any] | None = None, readout: str = "li") -> Path:
    """Write the frozen form of ``net`` as a native SNN checkpoint (``deploy compile`` reads it)."""
    how = ("mean membrane of the LI readout" if readout == "li"
           else "spike counts of IF neurons on the action-centred Q-current")
    info = {"task": "CartPole-v1", "kind": "pl-sdqn", "obs_low": list(CARTPOLE_LOW),
            "obs_high": list(CARTPOLE_HIGH), "q_readout": f"{how}; action = argmax"}
    return native.save(to_graph(net, readout=readout), path, meta={**info, **(meta or {})})
