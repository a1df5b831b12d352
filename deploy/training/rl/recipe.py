"""The PL-SDQN recipe (``deploy train --recipe pl-sdqn``): train on CartPole-v1 with per-sample
PBLN, freeze the PBLN statistics at their averages over the policy's own observations, check
the frozen policy and, if it fell below the solved return, recover it in the frozen form:
by policy distillation from the layer-PBLN network with DAgger (``tune="distill"``,
:mod:`deploy.training.rl.distill`) or by DQN fine-tuning (``tune="dqn"``)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deploy.training.rl import dqn
from deploy.training.rl.distill import DistillConfig, distill
from deploy.training.rl.sdqn import SDQN, to_graph

#: environment steps per ``epoch`` of the recipe interface (one evaluation period)
STEPS_PER_EPOCH = 2_500
#: ways of recovering the frozen form's return
TUNERS = ("distill", "dqn", "none")


def train_pl_sdqn(seed: int = 0, steps: int = 50_000, lr: float = 1e-3, timesteps: int = 4,
                  log: Callable[[str], None] | None = None, eval_every: int = STEPS_PER_EPOCH,
                  eval_episodes: int = 10, finetune_steps: int | None = None, tune: str = "distill",
                  distill_cfg: DistillConfig | None = None) -> tuple[SDQN, dict[str, Any]]:
    """Train a PL-SDQN on CartPole-v1; returns the frozen network and what was measured
    (returns over 100 greedy episodes in the layer-PBLN and the frozen form, steps, seconds).
    A frozen form below the solved return is recovered by ``tune`` (one of :data:`TUNERS`):
    ``"distill"`` with ``distill_cfg`` (default :class:`DistillConfig` with the run's seed),
    ``"dqn"`` for ``finetune_steps`` (default ``steps // 2``)."""
    if tune not in TUNERS:
        raise ValueError(f"tune must be one of {', '.join(TUNERS)}, got {tune!r}")
    net = SDQN(timesteps=timesteps, seed=seed)
    cfg = dqn.DQNConfig(steps=steps, lr=lr, batch_size=128, train_every=4, target_every=1_000,
                        eval_every=eval_every, eval_episodes=eval_episodes, seed=seed)
    start = time.perf_counter()
    res = dqn.train(net.set_mode("layer"), cfg, log=log)
    layer_returns = dqn.evaluate(dqn.greedy(net), 100)
    teacher = copy.deepcopy(net).eval()
    x, _ = dqn.record_observations(net, episodes=20, seed=20_000)
    net.calibrate(torch.from_numpy(x))
    net.set_mode("frozen").eval()
    frozen_returns = dqn.evaluate(dqn.greedy(net), 100)
    if log:
        log(f"returns over 100 episodes: layer PBLN {np.mean(layer_returns):.1f}, frozen {np.mean(frozen_returns):.1f}")
    tuned_steps, distilled = 0, None
    frozen_before = float(np.mean(frozen_returns))
    if frozen_before < cfg.solved and tune == "distill":
        res_d = distill(teacher, net, distill_cfg or DistillConfig(seed=seed), log=log)
        distilled = {"rounds": len(res_d.history), "states": res_d.states, "history": res_d.history}
    elif frozen_before < cfg.solved and tune == "dqn":
        tune_cfg = dqn.DQNConfig(steps=finetune_steps or max(steps // 2, eval_every), lr=lr / 3, batch_size=128,
                                 train_every=4, eval_every=eval_every, eval_episodes=eval_episodes,
                                 eps_start=0.05, eps_end=0.02, warmup=2_000, seed=seed + 1)
        tuned_steps = dqn.train(net, tune_cfg, log=log).steps
    if frozen_before < cfg.solved and tune != "none":
        frozen_returns = dqn.evaluate(dqn.greedy(net), 100)
        if log:
            log(f"frozen policy after {tune}: {np.mean(frozen_returns):.1f}")
    info = {"task": "CartPole-v1", "seed": seed, "train_steps": res.steps, "finetune_steps": tuned_steps,
            "tune": tune, "return_layer_pbln_100": float(np.mean(layer_returns)),
            "return_frozen_before_tuning_100": frozen_before,
            "return_frozen_100": float(np.mean(frozen_returns)),
            "train_seconds": round(time.perf_counter() - start, 1), "history": res.history}
    if distilled is not None:
        info["distill"] = distilled
    return net, info


def train(split: Any, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: Any = None, progress: bool = False):
    """The recipe interface of :mod:`deploy.training.recipes`: the data split is not used (the agent learns
    from the environment); ``epochs`` counts evaluation periods of 2500 environment steps
    (default 20)."""
    from deploy.training.recipes.common import RecipeResult

    steps = (epochs or 20) * STEPS_PER_EPOCH
    net, info = train_pl_sdqn(seed, steps, timesteps=timesteps or 4, log=print if progress else None)
    return RecipeResult(to_graph(net), {**info, "test_accuracy": None,
                                        "q_readout": "mean membrane of the LI readout; action = argmax"})
