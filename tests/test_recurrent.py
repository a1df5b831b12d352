"""Recurrent graphs: a NIR RNN (Input 8 -> Affine -> LIF 16 with a recurrent Affine 16 -> 16 ->
Affine -> LI 4) imported, simulated against a hand-written numpy loop, round-tripped through
NIR, compiled on digital (recurrent synops counted by hand), run on Loihi (reference vs float
and vs Lava) and refused by IMC with one line."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import deploy
from deploy.core import ir
from deploy.core.errors import ModelError, TargetError
from deploy.core.net import SpikingNet
from deploy.io import native, nir_io

T = 12


def _params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = lambda *s, sd=1.0: (rng.standard_normal(s) * sd).astype(np.float32)  # noqa: E731
    return {"w1": f(16, 8, sd=0.8), "b1": f(16, sd=0.1), "wr": f(16, 16, sd=0.5), "br": f(16, sd=0.1),
            "w2": f(4, 16, sd=0.6), "b2": f(4, sd=0.1)}


def nir_rnn(p: dict, tau: float = 10.0, r: float = 10.0, v_leak: float = 0.0, rec: bool = True) -> nir.NIRGraph:
    """The NIR paper's Braille-RNN shape, built by hand: two edges into the LIF, one of them back."""
    n = 16
    nodes = {
        "input": nir.Input(input_type={"input": np.array([8])}),
        "fc1": nir.Affine(weight=p["w1"], bias=p["b1"]),
        "lif1": nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak),
                        v_threshold=np.ones(n), v_reset=np.zeros(n)),
        "w_rec": nir.Affine(weight=p["wr"] if rec else 0 * p["wr"], bias=p["br"]),
        "fc2": nir.Affine(weight=p["w2"], bias=p["b2"]),
        "li": nir.LI(tau=np.full(4, 5.0), r=np.full(4, 5.0), v_leak=np.zeros(4)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"),
             ("fc2", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"timesteps": T})


def numpy_rnn(p: dict, x: np.ndarray, tau: float = 10.0, r: float = 10.0, v_leak: float = 0.0):
    """Forward-Euler NIR dynamics, dt = 1: the LIF reads its own spikes of the previous step."""
    beta, gain, drive = 1 - 1 / tau, r / tau, v_leak / tau
    v, s, u = np.zeros((len(x), 16)), np.zeros((len(x), 16)), np.zeros((len(x), 4))
    spikes, outs = [], []
    for _ in range(T):
        current = x @ p["w1"].T + p["b1"] + s @ p["wr"].T + p["br"]       # s: spikes of step t - 1
        v = beta * v + gain * current + drive
        s = (v > 1.0).astype(np.float64)
        v = v * (1 - s)
        u = 0.8 * u + s @ p["w2"].T + p["b2"]
        spikes.append(s)
        outs.append(u)
    return np.stack(spikes), np.stack(outs)


@pytest.fixture(scope="module")
def rnn():
    p = _params()
    return p, nir_io.from_nir(nir_rnn(p))


def _x(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 8, generator=torch.Generator().manual_seed(seed))


def test_import_marks_the_fed_back_edge(rnn):
    _, g = rnn
    assert [(n.name, n.kind, n.inputs, n.recurrent) for n in g.nodes] == [
        ("fc1", "linear", ["input"], []), ("w_rec", "linear", ["lif1"], ["lif1"]),
        ("lif1_sum", "add", ["fc1", "w_rec"], []), ("lif1", "lif", ["lif1_sum"], []),
        ("fc2", "linear", ["lif1"], []), ("li", "li", ["fc2"], [])]
    assert g.recurrent_edges() == [("lif1", "w_rec")]


def test_float_simulation_equals_numpy_loop(rnn):
    p, g = rnn
    x = _x()
    with torch.no_grad():
        out, rec = SpikingNet(g).run(x, record=True)
    spikes, ref = numpy_rnn(p, x.numpy().astype(np.float64))
    np.testing.assert_array_equal(rec["lif1"].numpy(), spikes)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    assert 0.05 < spikes.mean() < 0.9
    with torch.no_grad():   # the recurrent weights matter: without them the output changes
        flat = SpikingNet(nir_io.from_nir(nir_rnn(p, rec=False))).run(x)[0]
    assert (flat - out).abs().max() > 0.1


def test_gain_and_leak_fold_into_both_inputs_of_the_sum():
    p = _params(1)
    g = nir_io.from_nir(nir_rnn(p, tau=8.0, r=4.0, v_leak=0.5))
    x = _x(seed=1)
    with torch.no_grad():
        out, rec = SpikingNet(g).run(x, record=True)
    spikes, ref = numpy_rnn(p, x.numpy().astype(np.float64), tau=8.0, r=4.0, v_leak=0.5)
    np.testing.assert_array_equal(rec["lif1"].numpy(), spikes)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_gradients_flow_through_the_recurrent_weights(rnn):
    _, g = rnn
    net = SpikingNet(g)
    net(_x()).mean(0).sum().backward()
    assert net.layers["w_rec"].weight.grad.abs().sum() > 0


def test_nir_round_trip_keeps_the_loop_and_the_outputs(rnn, tmp_path):
    _, g = rnn
    path = nir_io.write_nir(g, tmp_path / "rnn.nir")
    back_nir = nir.read(path, type_check=False)
    assert ("lif1", "w_rec") in [tuple(e) for e in back_nir.edges]
    back = nir_io.from_nir(path)
    assert [(n.name, n.inputs, n.recurrent) for n in back.nodes] == [(n.name, n.inputs, n.recurrent) for n in g.nodes]
    x = _x(seed=2)
    with torch.no_grad():
        assert torch.equal(SpikingNet(back)(x), SpikingNet(g)(x))


def test_native_checkpoint_round_trip_and_old_archs(rnn, tmp_path, shipped_graph):
    _, g = rnn
    native.save(g, tmp_path / "rnn.pt")
    back = native.load(tmp_path / "rnn.pt")
    assert back["w_rec"].recurrent == ["lif1"]
    arch, _ = shipped_graph.to_dict()   # feed-forward graphs serialize exactly as before
    assert all("recurrent" not in layer for layer in arch["layers"])


def test_bad_recurrent_graphs_fail_with_one_line():
    lin = lambda name, src, n_in, rec=(): ir.Linear(name, [src], recurrent=list(rec),  # noqa: E731
                                                    weight=np.ones((4, n_in), np.float32))
    lif = ir.LIF("n", ["s"], threshold=1.0)
    cases = {
        "has no neuron layer": [lin("a", "b", 4, ["b"]), lin("b", "a", 4)],              # linear loop
        "list it in 'recurrent'": [lin("a", "input", 4), lin("r", "n", 4), ir.Add("s", ["a", "r"]), lif],
        "weight expects 3 inputs": [lin("a", "input", 4), lin("r", "n", 3, ["n"]), ir.Add("s", ["a", "r"]), lif],
    }
    for needle, nodes in cases.items():
        with pytest.raises(ModelError, match=needle) as exc:
            ir.Graph((4,), nodes).validate()
        assert "\n" not in str(exc.value)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "a": nir.Affine(weight=np.eye(4), bias=np.zeros(4)), "b": nir.Linear(weight=np.eye(4)),
             "output": nir.Output(output_type={"output": np.array([4])})}
    loop = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")])
    with pytest.raises(ModelError, match="no neuron to delay it: a -> b -> a"):
        nir_io.from_nir(loop)


def test_digital_compile_counts_the_recurrent_synops(rnn):
    p, g = rnn
    x, y = _x(8, seed=3), torch.arange(8) % 4
    report = deploy.compile(g, target="digital", data=(x, y))
    rows = {r.name: r for r in report.layers}
    spikes, _ = numpy_rnn(p, x.numpy().astype(np.float64))
    per_sample = spikes.sum(axis=(0, 2)).mean()
    delivered = spikes[:-1].sum(axis=(0, 2)).mean()      # the last step's spikes never reach w_rec
    assert rows["w_rec"].synops == pytest.approx(16 * delivered)
    assert rows["fc2"].synops == pytest.approx(4 * per_sample)
    assert rows["fc1"].synops == pytest.approx(16 * 8 * T)   # analog input: every value, every step
    assert report.totals.synops == pytest.approx(16 * 8 * T + 16 * delivered + 4 * per_sample)


def loihi_rnn(seed: int = 0) -> ir.Graph:
    """IF neurons and weights on a 1/8 grid: with scale 64 the Loihi integers are exact multiples
    of the float values, so Loihi must equal the float simulation spike for spike."""
    rng = np.random.default_rng(seed)
    q = lambda *s, lim=12: (rng.integers(-lim, lim + 1, s) / 8).astype(np.float32)  # noqa: E731
    return ir.Graph((8,), [
        ir.Linear("fc1", ["input"], weight=q(16, 8), bias=(rng.integers(-4, 5, 16) / 64).astype(np.float32)),
        ir.Linear("rec", ["lif1"], recurrent=["lif1"], weight=q(16, 16, lim=6)),
        ir.Add("sum", ["fc1", "rec"]),
        ir.LIF("lif1", ["sum"], beta=1.0, threshold=1.0, reset="zero"),
        ir.Linear("fc2", ["lif1"], weight=q(4, 16)),
        ir.LIF("out", ["fc2"], beta=1.0, threshold=1.0, reset="zero"),
    ], timesteps=10, encoding="rate", name="loihi_rnn")


def _loihi_run(graph: ir.Graph, x: torch.Tensor):
    from hwmodels.loihi import Loihi1Target, reference
    from hwmodels.loihi.network import encode_input

    net = Loihi1Target(options={"scale": 64}).map(graph).network
    xq = encode_input(net, x, torch.Generator().manual_seed(0))
    return net, xq, reference.run(net, xq)


def test_loihi_reference_equals_the_float_simulation():
    g = loihi_rnn()
    net, xq, ref = _loihi_run(g, _x(6, seed=4))
    rec = [c for c in net.connections if c.name == "rec"][0]
    assert (rec.source, rec.target, rec.delay, rec.kind) == ("lif1", "lif1", 0, "dense")
    with torch.no_grad():
        _, fl = SpikingNet(g).run(xq[:g.timesteps].float(), record=True, encoded=True)
    for pop in net.populations:
        window = ref[pop.name][pop.start:pop.start + g.timesteps].float()
        assert torch.equal(window, fl[pop.name].reshape(window.shape)), pop.name
    assert 0 < float(fl["lif1"].mean()) < 0.9 and float(fl["out"].sum()) > 0
    g0 = g.copy()
    g0["rec"].weight[:] = 0
    with torch.no_grad():
        _, fl0 = SpikingNet(g0).run(xq[:g.timesteps].float(), record=True, encoded=True)
    assert not torch.equal(fl0["lif1"], fl["lif1"])          # the loop changes the spikes


def test_loihi_lava_runs_the_recurrent_dense_spike_for_spike():
    pytest.importorskip("lava")
    from hwmodels.loihi.lava_backend import run_lava

    net, xq, ref = _loihi_run(loihi_rnn(1), _x(3, seed=5))
    lava = run_lava(net, xq)
    for pop in net.populations:
        assert torch.equal(ref[pop.name], lava[pop.name]), pop.name
    assert int(ref["lif1"].sum()) > 0


def test_loihi_refuses_feedback_from_a_later_layer():
    g = loihi_rnn()
    g.nodes[1] = ir.Linear("rec", ["out"], recurrent=["out"], weight=np.ones((16, 4), np.float32))
    from hwmodels.loihi import Loihi1Target

    with pytest.raises(TargetError, match="feedback from the later layer 'out' into 'lif1'"):
        Loihi1Target().map(g.validate())


@pytest.mark.parametrize("target", ["imc", "imc-adc"])
def test_imc_says_it_does_not_run_recurrent_connections(rnn, target):
    _, g = rnn
    with pytest.raises(TargetError) as exc:
        deploy.compile(g, target=target, data=(_x(4), torch.zeros(4, dtype=torch.long)))
    assert str(exc.value) == (f"target '{target}' does not run recurrent connections (layer 'w_rec' reads "
                              "'lif1' from the previous step)")
