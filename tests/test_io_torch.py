"""Torch / snnTorch import, checked spike for spike against snnTorch's own forward."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import deploy
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet, build
from deploy.io.loader import from_torch, load_model

torch.set_num_threads(1)
T = 12


def run_snntorch(net: nn.Sequential, x: torch.Tensor, check_membrane: bool = False):
    """Run an snnTorch Sequential (init_hidden=True) over time; spikes of every neuron layer."""
    neurons = {name.replace(".", "_"): m for name, m in net.named_modules()
               if isinstance(m, (snn.Leaky, snn.Synaptic))}
    for m in neurons.values():
        m.reset_mem()
    out = {k: [] for k in neurons}
    hooks = [m.register_forward_hook(lambda mod, inp, o, k=k: out[k].append(o)) for k, m in neurons.items()]
    with torch.no_grad():
        for t in range(x.shape[0]):
            net(x[t])
            if check_membrane:  # the documented precondition of an exact match for "subtract"
                for m in neurons.values():
                    assert torch.all(m.mem <= m.threshold), "membrane above threshold after reset"
    for h in hooks:
        h.remove()
    return {k: torch.stack(v) for k, v in out.items()}


def run_ir(net: nn.Module, x: torch.Tensor, sample) -> dict[str, torch.Tensor]:
    graph = from_torch(net, sample, timesteps=x.shape[0])
    with torch.no_grad():
        _, rec = SpikingNet(graph).run(x, record=True, encoded=True)
    return rec


def assert_same_spikes(ref: dict, ours: dict) -> None:
    total = 0
    for name, spikes in ref.items():
        assert torch.equal(spikes, ours[name]), f"layer {name}: {int((spikes != ours[name]).sum())} spikes differ"
        total += int(spikes.sum())
    n = sum(s.numel() for s in ref.values())
    assert 0.02 * n < total < 0.8 * n, f"test input too weak or too strong: {total}/{n} spikes"


def mlp(neuron) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 24), neuron(24), nn.Sequential(nn.Linear(24, 8), neuron(8)))


@pytest.mark.parametrize("reset,delay,beta", [("subtract", False, 0.8), ("zero", False, 0.8),
                                              ("zero", True, 0.7), ("subtract", True, 1.0),
                                              ("subtract", True, 0.8), ("subtract", True, "per-neuron"),
                                              ("subtract", False, "per-neuron")])
def test_leaky_matches_snntorch(reset, delay, beta):
    def neuron(n):
        b = torch.linspace(0.5, 0.95, n) if beta == "per-neuron" else beta
        return snn.Leaky(beta=b, threshold=0.6, reset_mechanism=reset, reset_delay=delay, init_hidden=True)

    net = mlp(neuron)
    x = torch.rand(T, 5, 12) * (0.5 if reset == "subtract" and not delay else 1.2)
    ref = run_snntorch(net, x, check_membrane=(reset == "subtract" and not delay))
    assert_same_spikes(ref, run_ir(net, x, x[0]))
    assert from_torch(net)["1"].reset_delay == (reset == "subtract" and delay)


@pytest.mark.parametrize("reset,delay", [("subtract", False), ("zero", False), ("subtract", True)])
def test_synaptic_matches_snntorch(reset, delay):
    def neuron(n):
        return snn.Synaptic(alpha=0.5, beta=0.8, threshold=torch.linspace(0.8, 1.6, n),
                            learn_threshold=True, reset_mechanism=reset, reset_delay=delay, init_hidden=True)

    net = mlp(neuron)
    x = torch.rand(T, 5, 12) * (1.2 if delay else 0.5)
    ref = run_snntorch(net, x, check_membrane=(reset == "subtract" and not delay))
    assert_same_spikes(ref, run_ir(net, x, x[0]))
    graph = from_torch(net, x[0])
    assert graph["1"].alpha == pytest.approx(0.5) and graph["1"].threshold.shape == (24,)


def test_conv_net_matches_snntorch():
    torch.manual_seed(2)

    def leaky():
        return snn.Leaky(beta=0.9, threshold=1.0, reset_delay=False, init_hidden=True)

    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), leaky(), nn.AvgPool2d(2),
                        nn.Conv2d(6, 8, 3, padding="same"), leaky(), nn.MaxPool2d(2), nn.Dropout(0.1),
                        nn.Flatten(), nn.Linear(8 * 2 * 2, 5),
                        snn.Synaptic(alpha=0.6, beta=0.85, threshold=0.4, reset_mechanism="zero",
                                     reset_delay=False, init_hidden=True)).eval()
    x = torch.rand(T, 3, 1, 8, 8) * 0.5
    ref = run_snntorch(net, x, check_membrane=True)
    ours = run_ir(net, x, x[0])
    assert_same_spikes(ref, ours)
    graph = from_torch(net, (1, 8, 8))
    assert [n.kind for n in graph.nodes] == ["conv2d", "lif", "pool2d", "conv2d", "lif", "pool2d",
                                             "flatten", "linear", "lif"]
    assert graph["3"].padding == (1, 1)


def test_only_the_inexact_delayed_reset_warns():
    net = nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.5, beta=0.8, reset_mechanism="zero",
                                                      init_hidden=True))
    with pytest.warns(UserWarning, match="reset_delay"):
        from_torch(net)
    for neuron in (snn.Leaky(beta=0.8, init_hidden=True), snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert from_torch(nn.Sequential(nn.Linear(4, 3), neuron))["1"].reset_delay


def test_own_modules_and_spiking_net_round_trip():
    net = build({"input_shape": [1, 6, 6], "timesteps": 5,
                 "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                            {"type": "lif", "beta": 0.7, "threshold": 0.3}, {"type": "flatten"},
                            {"type": "linear", "out_features": 3}, {"type": "li", "beta": 0.9}]})
    g = deploy.from_torch(net)  # the public API
    assert g.timesteps == 5 and [n.kind for n in g.nodes] == ["conv2d", "lif", "flatten", "linear", "li"]
    seq = nn.Sequential(*[net.layers[n.name] for n in net.graph.nodes])
    g2 = from_torch(seq, (1, 6, 6), timesteps=5)
    x = torch.rand(7, 1, 6, 6)
    with torch.no_grad():
        ref = net(x)
        assert torch.equal(SpikingNet(g).run(x)[0], ref)
        assert torch.equal(SpikingNet(g2).run(x)[0], ref)


@pytest.mark.parametrize("layer,message", [
    (nn.ReLU(), "layer '1': ANN layer ReLU: convert it with `deploy convert`"),
    (nn.Upsample(scale_factor=2), "layer '1': unsupported layer type Upsample"),
    (nn.Flatten(start_dim=2), "layer '1': Flatten(start_dim=2"),
])
def test_rejected_layers(layer, message):
    net = nn.Sequential(nn.Linear(4, 4), layer)
    with pytest.raises(ModelError) as exc:
        from_torch(net)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_unknown_snntorch_layer_and_non_sequential():
    with pytest.raises(ModelError, match=r"layer '1_0': unsupported layer type Alpha"):
        from_torch(nn.Sequential(nn.Linear(4, 4), nn.Sequential(snn.Alpha(alpha=0.6, beta=0.5))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

    with pytest.raises(ModelError, match="model Net: forward.. failed on a sample of shape .1, 3. "
                                         r"\(NotImplementedError"):
        from_torch(Net())  # no forward()
    with pytest.raises(ModelError, match="input size unknown for Conv2d"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.5, init_hidden=True)))


FACTORY = textwrap.dedent('''
    import snntorch as snn
    from torch import nn

    INPUT_SHAPE = (1, 6, 6)
    TIMESTEPS = 6

    def build():
        return nn.Sequential(nn.Conv2d(1, 4, 3),
                             snn.Leaky(beta=0.8, threshold=0.5, reset_delay=False, init_hidden=True),
                             nn.Flatten(), nn.Linear(64, 3),
                             snn.Leaky(beta=0.9, threshold=0.3, reset_mechanism="zero", init_hidden=True))

    def broken():
        raise RuntimeError("no GPU here")
''')


def test_factory_with_weights(tmp_path):
    src = tmp_path / "net.py"
    src.write_text(FACTORY)
    ns: dict = {}
    exec(compile(FACTORY, str(src), "exec"), ns)  # the same model, trained elsewhere
    torch.manual_seed(5)
    trained = ns["build"]()
    for p in trained.parameters():
        p.data.normal_(0, 0.5)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    graph = load_model(f"{src}:build", weights=str(tmp_path / "w.pt"))
    assert graph.timesteps == 6 and graph.input_shape == (1, 6, 6)
    np.testing.assert_array_equal(graph["3"].weight, trained[3].weight.detach().numpy())
    x = torch.rand(6, 4, 1, 6, 6)
    ref = run_snntorch(trained, x)
    with torch.no_grad():
        _, ours = SpikingNet(graph).run(x, record=True, encoded=True)
    for name in ("1", "4"):
        assert torch.equal(ref[name], ours[name])
    assert ref["1"].sum() > 0


def test_factory_errors(tmp_path):
    src = tmp_path / "net.py"
    src.write_text(FACTORY)
    bad = {"fc.weight": torch.zeros(2, 2)}
    torch.save(bad, tmp_path / "bad.pt")
    cases = [(f"{src}:nothing", None, "has no function 'nothing'"),
             (f"{src}:broken", None, "broken() failed (RuntimeError: no GPU here)"),
             (f"{tmp_path / 'missing.py'}:build", None, "no such file"),
             (f"{src}:build", str(tmp_path / "bad.pt"), "weights do not fit the model: missing 0.weight")]
    for spec, weights, message in cases:
        with pytest.raises(ModelError) as exc:
            load_model(spec, weights=weights)
        assert message in str(exc.value) and "\n" not in str(exc.value)
