"""snnTorch tutorial-style classes (a loop over time in forward) and snnTorch's delayed reset.

References are snnTorch's own runs of the same modules; the delayed reset is also
checked by hand on a short sequence and between the float and fixed-point neurons.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import deploy
from deploy.core import data, ir
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet
from deploy.core.neurons import LIF
from deploy.io.loader import load_model
from hwmodels.base import simulate_float
from quant.neurons import FixedPointLIF, NeuronFormat

torch.set_num_threads(1)

NET_PY = textwrap.dedent('''
    import snntorch as snn
    import torch
    from torch import nn

    num_steps = 8


    class Net(nn.Module):
        """snnTorch tutorial 5 style: defaults (reset "subtract", reset_delay=True)."""

        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.lif1 = snn.Leaky(beta=0.9)
            self.fc2 = nn.Linear(32, 10)
            self.lif2 = snn.Leaky(beta=0.9)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec, mem2_rec = [], []
            for step in range(num_steps):
                cur1 = self.fc1(x)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


    def build():
        return Net()
''')


def snntorch_run(net: nn.Module, x: torch.Tensor, neurons: dict[str, nn.Module]):
    """snnTorch's own evaluation: predictions from output spike counts, spikes per neuron layer."""
    spikes = {k: 0.0 for k in neurons}

    def count(k):
        return lambda mod, inp, out: spikes.__setitem__(k, spikes[k] + float(out[0].sum()))

    hooks = [m.register_forward_hook(count(k)) for k, m in neurons.items()]
    with torch.no_grad():
        spk, _ = net(x)
    for h in hooks:
        h.remove()
    return spk.sum(0).argmax(1), spikes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tutorial class trained for 3 epochs with snnTorch's loop (membrane CE at every step)."""
    folder = tmp_path_factory.mktemp("snntorch_class")
    (folder / "net.py").write_text(NET_PY)
    ns: dict = {}
    exec(compile(NET_PY, str(folder / "net.py"), "exec"), ns)
    torch.manual_seed(0)
    split = data.load("digits", seed=0)
    xtr, ytr = split.x_train.reshape(len(split.x_train), -1), split.y_train
    net = ns["build"]()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(3):
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            _, mem = net(xtr[idx])
            loss = sum(loss_fn(m, ytr[idx]) for m in mem)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    torch.save(net.state_dict(), folder / "state.pt")
    x_test = split.x_test.reshape(len(split.x_test), -1)
    return net, folder, x_test, split.y_test


def test_class_imports_as_chain_and_matches_snntorch(trained):
    net, _, x, y = trained
    graph = deploy.from_torch(net)
    assert [(n.name, n.kind, n.inputs) for n in graph.nodes] == [
        ("fc1", "linear", ["input"]), ("lif1", "lif", ["fc1"]), ("fc2", "linear", ["lif1"]),
        ("lif2", "lif", ["fc2"])]
    assert graph.timesteps == 8 and graph.input_shape == (64,)
    assert all(n.reset == "subtract" and n.reset_delay for n in graph.nodes if n.kind == "lif")

    pred, spikes = snntorch_run(net, x, {"lif1": net.lif1, "lif2": net.lif2})
    act = simulate_float(graph, x)
    assert torch.equal(act.predictions, pred)
    for name, count in spikes.items():
        assert act.layers[name].spikes * len(x) == pytest.approx(count, abs=1e-6), name
    acc = int((pred == y).sum()) / len(y)
    assert acc > 0.8, f"snnTorch net barely trained: {acc:.3f}"
    report = deploy.compile(net, data="digits")
    assert report.accuracy.samples == len(x)
    assert round(report.accuracy.reference * len(x)) == int((pred == y).sum())  # same count of correct samples

    # the same graph with the IR's immediate reset differs: the test can tell the two apart
    prompt = graph.copy()
    for n in prompt.nodes:
        if n.kind == "lif":
            n.reset_delay = False
    other = simulate_float(prompt, x)
    assert other.layers["lif1"].spikes * len(x) != pytest.approx(spikes["lif1"], abs=0.5)


def test_cli_compiles_factory_class_with_weights(trained):
    net, folder, x, y = trained
    n = 100
    out = folder / "out"
    proc = subprocess.run([str(Path(sys.executable).parent / "deploy"), "compile", "net.py:build", "--weights",
                           "state.pt", "--data", "digits", "--samples", str(n), "-o", str(out), "--no-figures"],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    pred, _ = snntorch_run(net, x[:n], {})
    assert report["accuracy"]["samples"] == n
    assert round(report["accuracy"]["reference"] * n) == int((pred == y[:n]).sum())
    assert report["model"]["timesteps"] == 8
    # --timesteps overrides the loop's count
    assert load_model(f"{folder / 'net.py'}:build", weights=str(folder / "state.pt"), timesteps=3).timesteps == 3


class ResidualConv(nn.Module):
    """Conv -> Leaky -> view(B, -1) -> Linear -> Synaptic, a residual add, 6 steps, init_hidden=False."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lif1 = snn.Leaky(beta=0.8, threshold=0.5)
        self.fc1 = nn.Linear(256, 32)
        self.syn1 = snn.Synaptic(alpha=0.5, beta=0.9, threshold=0.7)
        self.fc2 = nn.Linear(32, 32)
        self.lif2 = snn.Leaky(beta=0.7, threshold=0.6)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(32, 5)
        self.lif3 = snn.Leaky(beta=0.9, threshold=0.5, reset_mechanism="zero")

    def forward(self, x):
        m1, m2, m3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        s1, n1 = self.syn1.init_synaptic()
        rec = []
        for _ in range(6):
            a, m1 = self.lif1(self.conv(x), m1)
            b, s1, n1 = self.syn1(self.fc1(a.view(a.shape[0], -1)), s1, n1)
            c, m2 = self.lif2(self.fc2(b), m2)
            d, m3 = self.lif3(self.out(self.drop(c + b)), m3)
            rec.append(d)
        return torch.stack(rec), None


def test_residual_conv_class_matches_snntorch_spike_for_spike():
    torch.manual_seed(3)
    net = ResidualConv().eval()
    x = torch.rand(16, 1, 8, 8)
    graph = deploy.from_torch(net, x[:2])
    assert net.lif1.mem.numel() == 0, "tracing left snnTorch's hidden state behind"
    assert graph.timesteps == 6
    assert [n.kind for n in graph.nodes] == ["conv2d", "lif", "flatten", "linear", "lif", "linear", "lif",
                                             "add", "linear", "lif"]
    assert graph["add"].inputs == ["lif2", "syn1"] and graph["out"].inputs == ["add"]
    assert graph["syn1"].alpha == pytest.approx(0.5) and graph["syn1"].reset_delay
    assert not graph["lif3"].reset_delay  # a delayed reset to zero is the IR's reset to zero

    neurons = {k: getattr(net, k) for k in ("lif1", "syn1", "lif2", "lif3")}
    pred, spikes = snntorch_run(net, x, neurons)
    with torch.no_grad():
        out, rec = SpikingNet(graph).run(x, record=True)
    assert torch.equal(out.sum(0).argmax(1), pred)
    for name, count in spikes.items():
        assert float(rec[name].sum()) == count, name
    assert all(0 < c < 0.9 * rec[k].numel() for k, c in spikes.items()), spikes


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa, self.fb = nn.Linear(8, 4), nn.Linear(8, 4)
        self.la, self.lb = snn.Leaky(beta=0.9), snn.Leaky(beta=0.9)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        a, _ = self.la(self.fa(x))
        b, _ = self.lb(self.fb(x))
        return self.head(torch.cat([a, b], 1))


class Dangling(Concat):
    def forward(self, x):
        a, _ = self.la(self.fa(x))
        self.lb(self.fb(x))
        return self.head(torch.cat([a, a], 1))


class ReadoutAfterLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif, self.head = nn.Linear(8, 4), snn.Leaky(beta=0.9), nn.Linear(4, 2)

    def forward(self, x):
        mem = self.lif.init_leaky()
        for _ in range(4):
            spk, mem = self.lif(self.fc(x), mem)
        return self.head(spk)


@pytest.mark.parametrize("cls,message", [
    (Concat, "module 'head' (Linear): its input comes from cat()"),
    (Dangling, "module 'head' (Linear): its input comes from cat()"),
    (ReadoutAfterLoop, "module 'head' (Linear): runs once while the loop over time runs 4 times"),
])
def test_non_chain_forward_is_one_line_error(cls, message):
    with pytest.raises(ModelError) as exc:
        deploy.from_torch(cls())
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_branch_that_does_not_reach_the_output_is_named():
    class Branch(Concat):
        def forward(self, x):
            a, _ = self.la(self.fa(x))
            self.lb(self.fb(x))
            return a

    with pytest.raises(ModelError, match=r"^module 'lb' \(Leaky\): its output does not reach the network output 'la'"):
        deploy.from_torch(Branch())


def test_delayed_reset_by_hand_and_in_fixed_point():
    # thr 1, beta 0.5: delayed u = 1.5 (spike), 0.75 - 1 = -0.25, -0.125, 1.1875 (spike), 0.09375
    #                  immediate: 1.5 (spike) -> 0.5, 0.25, 0.125, 1.3125 (spike) -> 0.3125, 0.65625
    x = torch.tensor([1.5, 0.0, 0.0, 1.25, 0.5]).view(5, 1, 1)
    fmt = NeuronFormat(bits=16, lsb=2.0 ** -8, decay_bits=8)
    for delay, states in ((True, [1.5, -0.25, -0.125, 1.1875, 0.09375]), (False, [0.5, 0.25, 0.125, 0.3125, 0.65625])):
        fixed = FixedPointLIF(fmt, beta=0.5, threshold=1.0, reset="subtract", reset_delay=delay)
        spikes, v = fixed(x, return_state=True)
        assert (v.view(-1) * fmt.lsb).tolist() == states
        assert spikes.view(-1).tolist() == [1, 0, 0, 1, 0]
        assert torch.equal(LIF(0.5, 1.0, "subtract", reset_delay=delay)(x), spikes)

    # random currents on a grid the 32-bit registers hold exactly for 12 steps of halving:
    # float (float64) and fixed-point neurons agree step for step
    fine = NeuronFormat(bits=32, lsb=2.0 ** -24, decay_bits=8)
    x = torch.randint(-64, 400, (12, 3, 50), generator=torch.Generator().manual_seed(0)).double() * 2.0 ** -8
    for beta in (0.5, 1.0):
        fixed = FixedPointLIF(fine, beta=beta, threshold=1.0, alpha=0.5, reset="subtract", reset_delay=True)
        spikes = fixed(x)
        assert torch.equal(spikes, LIF(beta, 1.0, "subtract", alpha=0.5, reset_delay=True)(x))
        # the immediate reset differs unless beta = 1 (an undecayed subtraction is then the same)
        assert torch.equal(spikes, LIF(beta, 1.0, "subtract", alpha=0.5)(x)) == (beta == 1.0)
        assert 0.1 < float(spikes.mean()) < 0.9


def test_reset_delay_serializes_and_loihi_reports_it(tmp_path):
    from deploy.io import native, nir_io
    from hwmodels.loihi.target import Loihi1Target

    rng = np.random.default_rng(0)
    graph = ir.Graph((6,), [ir.Linear("fc", ["input"], weight=rng.normal(size=(4, 6)).astype(np.float32)),
                            ir.LIF("n", ["fc"], beta=0.9, threshold=1.0, reset_delay=True)], timesteps=4)
    graph.validate()
    assert graph.copy()["n"].reset_delay
    native.save(graph, tmp_path / "m.pt")
    assert native.load(tmp_path / "m.pt")["n"].reset_delay
    with pytest.warns(UserWarning, match="reset by subtraction"):
        nir_io.write_nir(graph, tmp_path / "m.nir")
    back = nir_io.from_nir(tmp_path / "m.nir")
    assert back["n"].reset == "subtract" and back["n"].reset_delay
    notes = Loihi1Target().map(graph).network.notes
    assert any("'subtract'" in n and "n" in n for n in notes)
    with pytest.raises(ModelError, match="reset_delay must be true or false"):
        ir.Graph((6,), [ir.LIF("n", ["input"], reset_delay="yes")]).validate()
