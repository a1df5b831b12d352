"""The shipped trained DVSNet checkpoints: live on both IMC targets, accurate on imc.

The test samples are those of ``deploy compile --data events`` (``deploy.pipeline.load_test_set``),
the first ones of the synthetic event set's test split the models were evaluated on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy import pipeline
from deploy.core import data
from deploy.io import native
from hwmodels import get_target

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"
SAMPLES = 12
CLASSES = 11


def test_synthetic_events_are_prefix_stable():
    """Any n gives the same first samples, so compile's n samples are the test split's first n."""
    x8, y8 = data.synthetic_events(8, timesteps=3, size=16, classes=CLASSES, seed=1)
    x3, y3 = data.synthetic_events(3, timesteps=3, size=16, classes=CLASSES, seed=1)
    assert torch.equal(x8[:3], x3) and torch.equal(y8[:3], y3)
    assert not torch.equal(x8[3:6], x3)                       # and the samples differ from each other
    split = data.events(timesteps=3, size=16, classes=CLASSES, n_train=4, n_test=8, seed=0)
    assert torch.equal(split.x_test, x8) and not torch.equal(split.x_train, x8[:4])


@pytest.fixture(scope="module")
def imc_model():
    path = MODELS / "dvsnet_imc.pt"
    if not path.exists():
        pytest.skip("examples/models/dvsnet_imc.pt not shipped")
    return native.load(path)


@pytest.fixture(scope="module")
def runs(imc_model):
    """Simulated activity of the first SAMPLES compile test samples on imc and imc-adc."""
    torch.set_num_threads(1)
    ts = pipeline.load_test_set(imc_model, "events", SAMPLES)
    x, y = ts.x, ts.y
    out = {}
    for name in ("imc", "imc-adc"):
        tgt = get_target(name)
        out[name] = tgt.simulate(tgt.map(imc_model), x, batch_size=4)
    return out, y


@pytest.mark.parametrize("target", ["imc", "imc-adc"])
def test_dvsnet_imc_spikes_in_every_lif_layer(imc_model, runs, target):
    activity, _ = runs
    lif = [n.name for n in imc_model.nodes if n.kind == "lif"]
    assert len(lif) == 12                                      # 11 conv LIF layers + the output layer
    silent = [name for name in lif if activity[target].layers[name].spikes <= 0]
    assert not silent, f"silent layers on {target}: {silent}"


def test_dvsnet_imc_accuracy_well_above_chance(runs):
    activity, y = runs
    acc = float((activity["imc"].predictions == y).float().mean())
    # Chance is 1/11 (9 %). At chance, 6 or more right out of 12 has probability below 1e-3
    # (binomial tail), while the shipped model scores 98.4 % on the 128-stream test split.
    assert acc >= 0.5, f"imc accuracy {acc:.3f} on {len(y)} samples"


def _tiny_event_net():
    from deploy.core.net import build
    from deploy.training.arch.dvsnet import balance_thresholds

    spec = {"input_shape": [2, 8, 8], "timesteps": 3, "encoding": "events", "name": "tiny_events",
            "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                       {"type": "lif", "beta": 0.9}, {"type": "pool2d", "mode": "max", "kernel_size": 4},
                       {"type": "flatten"}, {"type": "linear", "out_features": CLASSES},
                       {"type": "lif", "beta": 0.9}]}
    net = build(spec, seed=0)
    x, _ = data.synthetic_events(8, 3, 8, CLASSES, seed=0)
    balance_thresholds(net, x, rate=0.2)
    return net, x


def test_match_rates_restores_the_reference_rates():
    """A copy of the net with every synapse halved fires less; matching scales each threshold
    so the copy fires at the reference's rates again (the first layer by exactly 1/2)."""
    from deploy.core.net import SpikingNet
    from deploy.training.finetune import match_rates

    ref, x = _tiny_event_net()
    graph = ref.to_graph()
    for node in graph.synapses():
        node.weight = node.weight * 0.5
        node.bias = node.bias * 0.5
    weak = SpikingNet(graph)
    with torch.no_grad():
        _, before = weak.run(x, record=True)
        _, want = ref.run(x, record=True)
    assert float(before["lif1"].mean()) < float(want["lif1"].mean())
    factors = match_rates(weak, ref, x)
    with torch.no_grad():
        _, after = weak.run(x, record=True)
    for name in ("lif1", "lif5"):
        assert abs(float(after[name].mean()) - float(want[name].mean())) <= 0.02
    assert torch.equal(after["lif1"], want["lif1"]) and abs(factors["lif1"] - 0.5) < 0.01


def test_cli_finetune_on_events(tmp_path):
    """``deploy finetune --data events`` trains an event model on the synthetic event set."""
    from deploy.cli import main

    net, _ = _tiny_event_net()
    model, out = tmp_path / "ev.pt", tmp_path / "ev_imc.pt"
    native.save(net.to_graph(), model)
    assert main(["finetune", str(model), "-o", str(out), "--data", "events", "--epochs", "1",
                 "--train-samples", "8", "--test-samples", "6", "--batch-size", "4", "--match-rates"]) == 0
    tuned = native.load(out)
    assert tuned.meta["train_samples"] == 8 and tuned.meta["test_samples"] == 6
    assert tuned.meta["match_rates"] is True and "imc" in tuned.meta


def test_reconstruct_fits_each_layer_and_restores_the_float_rates():
    """Layer-wise reconstruction on the 1-bit crossbar: the conv layer's output error falls,
    the LIF it feeds fires at the float rate again, and the recorded error is the one a
    separate full run of the network gives."""
    import torch.nn.functional as F

    from deploy.core.net import SpikingNet
    from deploy.training.finetune import reconstruct

    ref, x = _tiny_event_net()
    y = torch.arange(len(x)) % CLASSES
    tgt = get_target("imc")
    net = tgt.trainable(ref.to_graph(), noise=False, learn_steps=True, learn_scales=True)
    net.set_resolution(1)
    with torch.no_grad():
        net.calibrate(x)
    records = reconstruct(net, SpikingNet(ref.to_graph()), x, y, iters=40, seed=0)
    assert [r["layer"] for r in records] == [n.name for n in net.graph.synapses()]
    conv, fc = records
    assert conv["loss"] == "mse" and fc["loss"] == "cross-entropy"
    assert conv["nmse_after"] < conv["nmse_before"]
    with torch.no_grad():
        _, mine = net.run(x, record=True)
        _, want = ref.run(x, record=True)
    first = net.graph.synapses()[0].name
    nmse = float(F.mse_loss(mine[first], want[first])) / float(want[first].var())
    assert abs(nmse - conv["nmse_after"]) < 1e-3
    assert abs(float(mine["lif1"].mean()) - float(want["lif1"].mean())) <= 0.02


def test_reconstruct_refuses_recurrent_networks():
    from deploy.core import ir
    from deploy.core.errors import DeployError
    from deploy.core.net import SpikingNet
    from deploy.training.finetune import reconstruct

    w = np.ones((3, 3), np.float32)
    net = SpikingNet(ir.Graph((3,), [ir.Linear("fc", ["input"], weight=w), ir.Linear("rec", ["lif"], recurrent=["lif"],
                                                                                    weight=w),
                                     ir.Add("sum", ["fc", "rec"]), ir.LIF("lif", ["sum"])], timesteps=2))
    with pytest.raises(DeployError, match="feed-forward"):
        reconstruct(net, net, torch.rand(2, 3), torch.zeros(2, dtype=torch.long), iters=1)


def test_cli_finetune_reconstruct_without_training(tmp_path):
    """``--reconstruct N --epochs 0``: reconstruction alone, recorded in the checkpoint; ``--epochs 0``
    alone is one error line."""
    from deploy.cli import main

    net, _ = _tiny_event_net()
    model, out = tmp_path / "ev.pt", tmp_path / "ev_imc.pt"
    native.save(net.to_graph(), model)
    args = ["finetune", str(model), "-o", str(out), "--data", "events", "--train-samples", "8",
            "--test-samples", "6", "--batch-size", "4"]
    assert main(args + ["--epochs", "0"]) != 0 and not out.exists()
    assert main(args + ["--epochs", "0", "--reconstruct", "5"]) == 0
    tuned = native.load(out)
    assert tuned.meta["reconstruct"] == 5 and tuned.meta["history"] == []
    assert [r["layer"] for r in tuned.meta["reconstruction"]] == [n.name for n in tuned.synapses()]


def test_match_rates_in_one_walk_equals_rerunning_the_network_per_layer():
    """The node-by-node pass gives the factors of the whole-network rerun before every layer."""
    from deploy.core.net import SpikingNet
    from deploy.training.finetune import _match_rate, match_rates

    ref, x = _tiny_event_net()
    graph = ref.to_graph()
    for node in graph.synapses():
        node.weight = node.weight * 0.6
    walked, rerun = SpikingNet(graph), SpikingNet(graph.copy())
    factors = match_rates(walked, ref, x)
    with torch.no_grad():
        _, want = ref.run(x, record=True)
        expected = {}
        for node in rerun.graph.nodes:
            if node.kind == "lif" and float(want[node.name].mean()) > 0:
                _, values = rerun.run(x, record=True)
                expected[node.name] = _match_rate(rerun.layers[node.name], values[node.inputs[0]],
                                                  float(want[node.name].mean()))
    assert factors.keys() == expected.keys() == {"lif1", "lif5"}
    for name, f in expected.items():
        assert factors[name] == pytest.approx(f, rel=1e-6), name
