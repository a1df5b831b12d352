"""Train a PL-SDQN on a gymnasium task with double DQN, evaluate it, record observations.

Direct training (no ANN conversion): BPTT through the spiking layers with the arctangent
surrogate, Huber TD loss, Adam, a replay buffer, a periodically copied target network and
epsilon-greedy exploration. Every ``eval_every`` steps the greedy policy plays
``eval_episodes`` episodes; a policy reaching ``solved`` there is checked on
``final_episodes`` episodes (CartPole-v1 is solved at an average of 475 over 100), and the
best policy seen is kept. Selection plays seeds ``eval_seed + i``, disjoint from the seeds of
the reported evaluation (``EVAL_SEED``) and of training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from deploy.training.rl.sdqn import SDQN, scale_obs

EVAL_SEED = 10_000     # reported evaluations use seeds EVAL_SEED + i; training uses the run's seed
SELECT_SEED = 50_000   # checkpoint selection during training plays seeds SELECT_SEED + i (disjoint)


def make_env(name: str = "CartPole-v1"):
    import gymnasium as gym

    return gym.make(name)


Policy = Callable[[torch.Tensor], torch.Tensor]   # inputs (B, obs) in [0, 1] -> actions (B,)


def greedy(net: SDQN) -> Policy:
    """The greedy policy of ``net``."""
    def act(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x).argmax(-1)
    return act


def evaluate(policy: Policy, episodes: int = 100, env_name: str = "CartPole-v1", seed: int = EVAL_SEED,
             record: list[np.ndarray] | None = None) -> list[float]:
    """Undiscounted return of each of ``episodes`` greedy episodes (seeds ``seed + i``), played
    side by side with one batched policy call per step; ``record`` collects the network inputs
    (scaled observations) seen, step by step across the running episodes."""
    envs = [make_env(env_name) for _ in range(episodes)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    returns = [0.0] * episodes
    active = list(range(episodes))
    while active:
        x = scale_obs(np.stack([obs[i] for i in active]))
        if record is not None:
            record.extend(x.numpy())
        actions = policy(x).tolist()
        still = []
        for i, action in zip(active, actions, strict=True):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += float(reward)
            if not (terminated or truncated):
                still.append(i)
        active = still
    for env in envs:
        env.close()
    return returns


def selection_return(net: torch.nn.Module, episodes: int, confirm: int, solved: float,
                     env_name: str = "CartPole-v1", seed: int = SELECT_SEED) -> float:
    """Average greedy return of ``net`` over ``episodes`` selection episodes (seeds ``seed + i``);
    a score reaching ``solved`` is confirmed on ``confirm`` episodes when they are more."""
    score = float(np.mean(evaluate(greedy(net), episodes, env_name, seed)))
    if score >= solved and confirm > episodes:
        score = float(np.mean(evaluate(greedy(net), confirm, env_name, seed)))
    return score


@dataclass
class DQNConfig:
    steps: int = 100_000
    lr: float = 5e-4
    lr_end: float | None = None   # the learning rate falls linearly to this over ``steps`` (None: constant)
    gamma: float = 0.99
    batch_size: int = 64
    buffer: int = 50_000
    warmup: int = 1_000
    target_every: int = 500
    train_every: int = 1
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_steps: int = 10_000
    eval_every: int = 5_000
    eval_episodes: int = 10
    final_episodes: int = 100
    solved: float = 475.0
    grad_clip: float = 10.0
    seed: int = 0
    eval_seed: int = SELECT_SEED


@dataclass
class TrainResult:
    net: SDQN
    best_return: float          # average over final_episodes of the kept policy (or eval_episodes)
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)


class Replay:
    """A ring buffer of transitions, sampled uniformly with a seeded generator."""

    def __init__(self, size: int, obs_dim: int, seed: int):
        self.x = np.zeros((size, obs_dim), np.float32)
        self.x2 = np.zeros((size, obs_dim), np.float32)
        self.a = np.zeros(size, np.int64)
        self.r = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.size, self.n, self.i = size, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, x, a, r, x2, done) -> None:
        self.x[self.i], self.a[self.i], self.r[self.i], self.x2[self.i], self.done[self.i] = x, a, r, x2, done
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, k: int):
        idx = self.rng.integers(0, self.n, k)
        return (torch.from_numpy(self.x[idx]), torch.from_numpy(self.a[idx]), torch.from_numpy(self.r[idx]),
                torch.from_numpy(self.x2[idx]), torch.from_numpy(self.done[idx]))


def train(net: SDQN, cfg: DQNConfig = DQNConfig(), env_name: str = "CartPole-v1",
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Double-DQN training of ``net`` (its PBLN mode as set); returns the best policy found."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env = make_env(env_name)
    target = copy.deepcopy(net).eval()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    replay = Replay(cfg.buffer, net.observations, cfg.seed)
    obs, _ = env.reset(seed=cfg.seed)
    x = scale_obs(obs)
    best, best_state, history, episode_return, episode = -math.inf, None, [], 0.0, 0
    for step in range(1, cfg.steps + 1):
        eps = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * step / cfg.eps_steps)
        if rng.random() < eps:
            action = int(rng.integers(net.actions))
        else:
            net.eval()
            with torch.no_grad():
                action = int(net(x[None]).argmax(-1))
        obs, reward, terminated, truncated, _ = env.step(action)
        x2 = scale_obs(obs)
        replay.add(x.numpy(), action, reward, x2.numpy(), float(terminated))
        episode_return += float(reward)
        x = x2
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=cfg.seed + episode)
            x, episode_return = scale_obs(obs), 0.0
        if replay.n >= cfg.warmup and step % cfg.train_every == 0:
            if cfg.lr_end is not None:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr + (cfg.lr_end - cfg.lr) * step / cfg.steps
            _update(net, target, opt, replay, cfg)
        if step % cfg.target_every == 0:
            target.load_state_dict(net.state_dict())
        if step % cfg.eval_every == 0:
            net.eval()
            score = selection_return(net, cfg.eval_episodes, cfg.final_episodes, cfg.solved, env_name, cfg.eval_seed)
            history.append({"step": step, "return": score, "eps": eps})
            if log:
                log(f"step {step}: greedy return {score:.1f}")
            if score > best:
                best, best_state = score, copy.deepcopy(net.state_dict())
            if best >= cfg.solved:
                break
    env.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return TrainResult(net.eval(), best, step, history)


def _update(net: SDQN, target: SDQN, opt: torch.optim.Optimizer, replay: Replay, cfg: DQNConfig) -> None:
    x, a, r, x2, done = replay.sample(cfg.batch_size)
    net.train()
    q = net(x).gather(1, a[:, None])[:, 0]
    with torch.no_grad():
        a2 = net(x2).argmax(-1, keepdim=True)
        q2 = target(x2).gather(1, a2)[:, 0]
        y = r + cfg.gamma * (1 - done) * q2
    loss = F.smooth_l1_loss(q, y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()


def record_observations(net: SDQN, episodes: int = 5, env_name: str = "CartPole-v1",
                        seed: int = EVAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs seen by the greedy policy over ``episodes`` episodes, and the actions it took
    (the labels a compile run compares the deployed decisions with)."""
    seen: list[np.ndarray] = []
    evaluate(greedy(net), episodes, env_name, seed, record=seen)
    x = torch.from_numpy(np.stack(seen))
    with torch.no_grad():
        y = net(x).argmax(-1)
    return x.numpy().astype(np.float32), y.numpy().astype(np.int64)
