"""Policy distillation of a Q-network into the deployable (frozen) PL-SDQN, with DAgger.

Rusu et al., "Policy distillation" (ICLR 2016): the student learns the teacher's policy by
minimising ``KL(softmax(q_teacher / tau) || softmax(q_student))`` on states the teacher labels
(``loss="mse"`` regresses the Q-values instead). Ross, Gordon and Bagnell, "A reduction of
imitation learning ... to no-regret online learning" (DAgger, AISTATS 2011): round 0 collects
the states the teacher visits; every later round the student plays and the states *it* visits
are added, always labelled by the teacher, so the student learns to recover from its own
mistakes. No reward is used: the student is trained by supervised learning only. Every
``eval_every`` gradient steps the greedy student plays selection episodes (seeds from
``dqn.SELECT_SEED``, disjoint from the reported ``dqn.EVAL_SEED`` ones); the best student is
kept, and the run stops once one is confirmed at the solved return.

The student is an :class:`~deploy.training.rl.sdqn.SDQN` in the frozen PBLN mode, i.e. plain
LIF layers with one threshold per neuron, which :func:`~deploy.training.rl.sdqn.to_graph`
writes exactly, or a :class:`NetQ`: any network of the graph form, e.g. a target's trainable
forward (the 1-bit crossbar of ``imc``), learning the deployable graph's policy on the target.
The teacher is any network from inputs to Q-values (the layer-PBLN net, or the float graph).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from deploy.training.rl import dqn
from deploy.training.rl.sdqn import SDQN

ROLLOUT_SEED = 40_000   # distillation rollouts play seeds ROLLOUT_SEED + 1000 * round + i

QFunction = Callable[[torch.Tensor], torch.Tensor]   # inputs (B, obs) -> Q-values (B, actions)


@dataclass
class DistillConfig:
    rounds: int = 8             # DAgger rounds; round 0 plays the teacher, later ones the student
    episodes: int = 10          # episodes played per round
    updates: int = 500          # gradient steps per round on all states gathered so far
    eval_every: int = 100       # gradient steps between greedy evaluations (candidates for the kept student)
    batch_size: int = 256
    lr: float = 1e-3
    loss: str = "kl"            # "kl" (policy distillation) or "mse" (Q regression)
    tau: float = 0.005          # temperature of the teacher's softmax (KL loss), in units of Q
    explore: float = 0.1        # probability of a random action in the rollouts
    eval_episodes: int = 20     # greedy episodes (seeds from dqn.SELECT_SEED) that select the kept student
    final_episodes: int = 100   # a student reaching ``solved`` there is confirmed on this many
    solved: float = 475.0
    seed: int = 0


class NetQ(torch.nn.Module):
    """A student from a graph-form network (a :class:`~deploy.core.net.SpikingNet` or a target's
    trainable forward): Q-values = its readout's logits (the LI readout's mean membrane)."""

    def __init__(self, net: torch.nn.Module, actions: int):
        super().__init__()
        self.net, self.actions = net, int(actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(self.net(x))


@dataclass
class DistillResult:
    net: SDQN | NetQ
    best_return: float          # selection return of the kept student
    states: int                 # states gathered over all rounds
    history: list[dict[str, float]] = field(default_factory=list)


def distill_loss(q_student: torch.Tensor, q_teacher: torch.Tensor, loss: str = "kl",
                 tau: float = 0.005) -> torch.Tensor:
    """KL divergence of the student's softmax from the teacher's at temperature ``tau``, or the
    mean squared error of the Q-values (``loss="mse"``)."""
    if loss == "mse":
        return F.mse_loss(q_student, q_teacher)
    if loss != "kl":
        raise ValueError(f"distillation loss must be 'kl' or 'mse', got {loss!r}")
    target = F.softmax(q_teacher / tau, -1)
    return F.kl_div(F.log_softmax(q_student, -1), target, reduction="batchmean")


def agreement(student: QFunction, teacher: QFunction, x: torch.Tensor) -> float:
    """Fraction of inputs ``x`` on which the greedy actions of the two networks agree."""
    with torch.no_grad():
        return float((student(x).argmax(-1) == teacher(x).argmax(-1)).float().mean())


def _noisy(policy: dqn.Policy, actions: int, explore: float, gen: torch.Generator) -> dqn.Policy:
    def act(x: torch.Tensor) -> torch.Tensor:
        a = policy(x)
        flip = torch.rand(len(a), generator=gen) < explore
        return torch.where(flip, torch.randint(0, actions, a.shape, generator=gen), a)
    return act


def distill(teacher: QFunction, student: SDQN | NetQ, cfg: DistillConfig = DistillConfig(),
            env_name: str = "CartPole-v1", log: Callable[[str], None] | None = None) -> DistillResult:
    """DAgger policy distillation of ``teacher`` into ``student`` (trained in its PBLN mode as set);
    returns the student with the best selection return seen."""
    if cfg.rounds < 1 or cfg.updates < 1 or cfg.eval_every < 1:
        raise ValueError("distillation needs at least one round, one update and eval_every >= 1")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    xs: list[torch.Tensor] = []
    qs: list[torch.Tensor] = []
    best, best_state, history = -math.inf, None, []
    for rnd in range(cfg.rounds):
        actor = dqn.greedy(student.eval()) if rnd else (lambda x: teacher(x).argmax(-1))
        seen: list[np.ndarray] = []
        played = dqn.evaluate(_noisy(actor, student.actions, cfg.explore, gen), cfg.episodes, env_name,
                              ROLLOUT_SEED + 1000 * rnd + cfg.seed, record=seen)
        x = torch.from_numpy(np.stack(seen))
        with torch.no_grad():
            q = teacher(x)
        before = agreement(student, teacher, x)
        xs.append(x)
        qs.append(q)
        data_x, data_q = torch.cat(xs), torch.cat(qs)
        scores = []
        for update in range(1, cfg.updates + 1):
            student.train()
            idx = torch.randint(0, len(data_x), (cfg.batch_size,), generator=gen)
            loss = distill_loss(student(data_x[idx]), data_q[idx], cfg.loss, cfg.tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if update % cfg.eval_every == 0 or update == cfg.updates:
                scores.append(dqn.selection_return(student.eval(), cfg.eval_episodes, cfg.final_episodes,
                                                   cfg.solved, env_name))
                if scores[-1] > best:
                    best, best_state = scores[-1], copy.deepcopy(student.state_dict())
                if best >= cfg.solved:
                    break
        history.append({"round": rnd, "states": len(data_x), "rollout_return": float(np.mean(played)),
                        "agreement_before": before, "loss": loss.item(), "return": max(scores)})
        if log:
            log(f"distill round {rnd}: {len(data_x)} states, rollout return {np.mean(played):.1f}, "
                f"agreement on new states {before:.3f}, loss {loss.item():.4f}, greedy returns "
                + " ".join(f"{s:.0f}" for s in scores))
        if best >= cfg.solved:
            break
    if best_state is not None:
        student.load_state_dict(best_state)
    return DistillResult(student.eval(), best, sum(len(x) for x in xs), history)
