"""Policy distillation into the frozen PL-SDQN: the loss against its formula, a tiny DAgger run
that makes a plain-LIF student take a hand-written controller's actions on held-out states, the
written graph against the distilled student, and the recipe's ``tune`` option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.core.net import SpikingNet
from deploy.training.rl import dqn
from deploy.training.rl.distill import DistillConfig, agreement, distill, distill_loss
from deploy.training.rl.sdqn import SDQN, to_graph


def test_distill_loss_is_kl_of_the_tempered_teacher_or_mse():
    qs = torch.tensor([[0.2, -0.1, 0.0], [1.0, 2.0, 3.0]])
    qt = torch.tensor([[0.01, 0.0, 0.02], [0.5, 0.4, 0.3]])
    tau = 0.01
    p = torch.exp(qt / tau) / torch.exp(qt / tau).sum(-1, keepdim=True)
    log_s = qs - torch.log(torch.exp(qs).sum(-1, keepdim=True))
    kl = float((p * (torch.log(p) - log_s)).sum() / 2)                 # batch mean of sum over actions
    assert float(distill_loss(qs, qt, "kl", tau)) == pytest.approx(kl, rel=1e-5)
    assert float(distill_loss(qs, qt, "mse")) == pytest.approx(float(((qs - qt) ** 2).mean()))
    assert float(distill_loss(qt / tau, qt, "kl", tau)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="'kl' or 'mse'"):
        distill_loss(qs, qt, "huber")


def _controller(x: torch.Tensor) -> torch.Tensor:
    """Q-values of a hand-written CartPole controller on scaled inputs: push towards the side
    the pole falls to (pole angle plus its angular velocity)."""
    angle = (x[:, 2] - 0.5) * 2 * 0.2095
    velocity = (x[:, 3] - 0.5) * 2 * 3.5
    z = angle + 0.5 * velocity
    return torch.stack([-z, z], -1)


def _frozen_student(seed: int = 0) -> SDQN:
    net = SDQN(hidden=(16, 16), timesteps=4, seed=seed)
    net.calibrate(torch.rand(256, 4) * 0.4 + 0.3)
    return net.set_mode("frozen").eval()


def test_dagger_distillation_teaches_the_frozen_student_the_teacher_policy():
    pytest.importorskip("gymnasium")
    torch.set_num_threads(1)
    held: list[np.ndarray] = []
    dqn.evaluate(lambda x: _controller(x).argmax(-1), 3, seed=77_000, record=held)   # held-out states
    x = torch.from_numpy(np.stack(held))
    q = _controller(x)
    x = x[(q[:, 1] - q[:, 0]).abs() > 0.05]                  # states with a clear preferred action
    assert len(x) > 500
    student = _frozen_student()
    before = agreement(student, _controller, x)
    cfg = DistillConfig(rounds=2, episodes=2, updates=150, batch_size=64, lr=3e-3, tau=0.01,
                        eval_episodes=2, final_episodes=0, seed=0)
    res = distill(_controller, student, cfg)
    after = agreement(res.net, _controller, x)
    assert before < 0.75 < 0.9 < after
    assert len(res.history) == 2 and res.states == res.history[-1]["states"] > 0
    assert res.history[1]["rollout_return"] > 0            # round 1 played the student


def test_graph_of_the_distilled_student_reproduces_its_q_values():
    torch.manual_seed(0)
    student = _frozen_student(seed=2)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    x = torch.rand(64, 4)
    for _ in range(20):                                   # move thresholds, gains and weights off init
        loss = distill_loss(student.train()(x), _controller(x), "kl", 0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.eval()
    held = torch.rand(50, 4)
    snn = SpikingNet(to_graph(student)).eval()
    with torch.no_grad():
        assert torch.allclose(snn.logits(snn(held)), student(held), atol=1e-5)


def test_recipe_tune_option(monkeypatch):
    pytest.importorskip("gymnasium")
    from deploy.training.rl import recipe

    with pytest.raises(ValueError, match="tune must be one of distill, dqn, none"):
        recipe.train_pl_sdqn(tune="ppo")
    calls = []
    real = recipe.distill

    def spy(teacher, student, cfg, log=None):
        calls.append((teacher.neurons[0].mode, student.neurons[0].mode, cfg.rounds))
        return real(teacher, student, cfg, log=log)

    monkeypatch.setattr(recipe, "distill", spy)
    cfg = DistillConfig(rounds=1, episodes=1, updates=2, batch_size=8, eval_episodes=1, final_episodes=0)
    net, info = recipe.train_pl_sdqn(seed=0, steps=50, eval_every=50, eval_episodes=1, tune="distill",
                                     distill_cfg=cfg)
    assert calls == [("layer", "frozen", 1)]               # teacher in the layer form, student frozen
    assert info["tune"] == "distill" and info["distill"]["rounds"] == 1
    assert net.neurons[0].mode == "frozen"


def test_a_graph_form_student_learns_the_teacher_policy():
    """NetQ: the student is a network of the graph form (as a target's trainable forward is),
    its Q-values the readout's logits; DAgger teaches it the controller's actions too."""
    pytest.importorskip("gymnasium")
    from deploy.training.rl.distill import NetQ

    torch.set_num_threads(1)
    held: list[np.ndarray] = []
    dqn.evaluate(lambda x: _controller(x).argmax(-1), 3, seed=77_000, record=held)
    x = torch.from_numpy(np.stack(held))
    q = _controller(x)
    x = x[(q[:, 1] - q[:, 0]).abs() > 0.05]
    student = NetQ(SpikingNet(to_graph(_frozen_student())), actions=2)
    assert torch.allclose(student(x[:8]), _frozen_student()(x[:8]), atol=1e-5)   # same Q as the SDQN
    before = agreement(student, _controller, x)
    cfg = DistillConfig(rounds=2, episodes=2, updates=150, batch_size=64, lr=3e-3, tau=0.01,
                        eval_episodes=2, final_episodes=0, seed=0)
    res = distill(_controller, student, cfg)
    assert res.net is student and before < 0.75 < 0.9 < agreement(student, _controller, x)
