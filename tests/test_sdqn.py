"""PL-SDQN: PBLN against its formula, the frozen form against the plain LIF graph it is written
as, DQN on a tiny budget, and the written checkpoint through deploy compile (--data none and a
file of recorded observations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.core.net import SpikingNet
from deploy.training.rl import dqn
from deploy.training.rl.pbln import PBLNLIF
from deploy.training.rl.sdqn import SDQN, save, scale_obs, to_graph


def test_pbln_normalises_as_the_formula():
    torch.manual_seed(0)
    layer = PBLNLIF(5, beta=0.5, threshold=0.3)
    with torch.no_grad():
        layer.log_gamma.copy_(torch.randn(5))
        layer.shift.copy_(torch.randn(5))
    x = torch.randn(3, 4, 5)                                    # (T, B, features)
    out = layer.eval()(x)
    gamma = torch.nn.functional.softplus(layer.log_gamma) / np.log(2.0)
    v = torch.zeros(4, 5)
    for t in range(3):                                          # hand loop of the module docstring
        v = 0.5 * v + x[t]
        mu, var = v.mean(-1, keepdim=True), ((v - v.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
        n = gamma * (v - mu) / torch.sqrt(var + 1e-5) + layer.shift
        s = (n > 0.3).float()
        assert torch.equal(out[t], s)
        v = v * (1 - s)
    normed = layer.normalise(v)
    assert torch.allclose(((normed - layer.shift) / gamma).mean(-1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(((normed - layer.shift) / gamma).pow(2).mean(-1), torch.ones(4), atol=1e-3)


def _trained_like_net() -> SDQN:
    net = SDQN(hidden=(16, 16), timesteps=4, seed=1)
    with torch.no_grad():
        for n in net.neurons:
            n.shift.normal_(0, 0.3)
    net.calibrate(torch.rand(64, 4))
    return net.set_mode("frozen").eval()


def test_frozen_form_equals_the_plain_lif_graph():
    net = _trained_like_net()
    x = torch.rand(100, 4)
    q, spikes = net.run(x)
    graph = to_graph(net)
    out, values = SpikingNet(graph).eval().run(x, record=True)
    assert torch.allclose(SpikingNet(graph).logits(out), q, atol=1e-5)
    assert torch.equal(values["lif1"], spikes[0]) and torch.equal(values["lif2"], spikes[1])
    assert 0 < float(spikes[0].detach().mean()) < 1
    # frozen thresholds: mu + sd (theta - shift) / gamma
    n = net.neurons[0]
    ref = n.running_mean + n.running_std * (n.theta - n.shift) / n.gamma
    assert torch.allclose(n.thresholds(), ref.clamp_min(1e-3))


def test_scale_obs_clips_to_unit_range():
    x = scale_obs(np.array([[0.0, 0.0, 0.0, 0.0], [10.0, -10.0, 0.2095, -3.5]]))
    assert torch.allclose(x[0], torch.full((4,), 0.5))
    assert torch.allclose(x[1], torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_dqn_tiny_budget_and_recording():
    pytest.importorskip("gymnasium")
    net = SDQN(hidden=(8, 8), timesteps=2, seed=0)
    cfg = dqn.DQNConfig(steps=120, warmup=60, batch_size=16, eval_every=120, eval_episodes=1, final_episodes=1)
    res = dqn.train(net, cfg)
    assert res.steps == 120 and len(res.history) == 1 and res.best_return >= 8
    x, y = dqn.record_observations(net, episodes=1)
    assert x.shape[1] == 4 and x.min() >= 0 and x.max() <= 1 and len(y) == len(x)
    assert np.array_equal(y, net(torch.from_numpy(x)).argmax(-1).numpy())


@pytest.mark.parametrize("target", ["digital", "imc"])
def test_checkpoint_compiles_without_and_with_observations(tmp_path, target):
    from deploy.cli import main

    net = _trained_like_net()
    path = save(net, tmp_path / "sdqn.pt", meta={"return_frozen_100": 0.0})
    rep = tmp_path / "rep_none"
    assert main(["compile", str(path), "--target", target, "--data", "none", "-o", str(rep), "--no-figures"]) == 0
    x = torch.rand(32, 4)
    y = net(x).argmax(-1)
    np.savez(tmp_path / "obs.npz", x=x.numpy(), y=y.numpy())
    rep2 = tmp_path / "rep_obs"
    assert main(["compile", str(path), "--target", target, "--data", str(tmp_path / "obs.npz"),
                 "-o", str(rep2), "--no-figures"]) == 0
    import json

    doc = json.loads((rep2 / "report.json").read_text())
    assert doc["accuracy"]["reference"] == pytest.approx(1.0)   # the float graph takes the recorded actions
    assert doc["totals"]["energy_j"] > 0


def test_spiking_readout_compiles_on_loihi(tmp_path):
    from deploy.cli import main

    net = _trained_like_net()
    x = torch.rand(32, 4)
    graph = to_graph(net, readout="spikes")
    snn = SpikingNet(graph).eval()
    with torch.no_grad():
        counts = snn.logits(snn(x))
    q = net(x)
    fired = counts.sum(-1) > 0
    # the action-centred current drives the better action's neuron: where a neuron fires and
    # the Q gap is clear, the spike-count decision is the Q-value decision
    clear = (q[:, 0] - q[:, 1]).abs() > 0.05
    agree = counts.argmax(-1) == q.argmax(-1)
    assert bool(agree[fired & clear].float().mean() > 0.9)
    path = save(net, tmp_path / "sdqn_spikes.pt", readout="spikes")
    y = q.argmax(-1)
    np.savez(tmp_path / "obs.npz", x=x.numpy(), y=y.numpy())
    assert main(["compile", str(path), "--target", "loihi", "--data", str(tmp_path / "obs.npz"),
                 "-o", str(tmp_path / "rep"), "--no-figures"]) == 0


def test_pl_sdqn_is_a_registered_recipe():
    from deploy.training import recipes
    from deploy.training.rl import recipe

    rec = recipes.get("pl-sdqn")
    assert rec.train_fn() is recipe.train and not rec.needs_ann and "Sun" in rec.paper


def test_shipped_model_compiles_on_its_recorded_observations(tmp_path):
    import json

    from deploy.cli import main

    root = "examples/models/"
    assert main(["compile", root + "cartpole_pl_sdqn.pt", "--data", root + "cartpole_obs.npz",
                 "-o", str(tmp_path / "rep"), "--no-figures"]) == 0
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["accuracy"]["reference"] == 1.0 and doc["accuracy"]["deployed"] == 1.0   # float digital target
    assert main(["compile", root + "cartpole_pl_sdqn_spike_readout.pt", "--target", "loihi", "--data", "none",
                 "-o", str(tmp_path / "rep_loihi"), "--no-figures"]) == 0
