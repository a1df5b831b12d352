"""Spiking reinforcement learning: PL-SDQN (spiking deep Q-network with potential-based layer
normalisation), trained directly on gymnasium tasks and written as a native SNN checkpoint."""

from deploy.training.rl.pbln import PBLNLIF
from deploy.training.rl.sdqn import SDQN, scale_obs, to_graph

__all__ = ["PBLNLIF", "SDQN", "scale_obs", "to_graph"]
