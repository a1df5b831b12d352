"""NIR import/export: exact round trips, and imports checked against NIR's Euler dynamics."""

from __future__ import annotations

import random
import re
import warnings

import nir
import numpy as np
import pytest
import torch

from deploy.core import ir
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet, build
from deploy.io.loader import load_model
from deploy.io.nir_io import from_nir, to_nir, write_nir

torch.set_num_threads(1)


def run(graph: ir.Graph, x: torch.Tensor, encoded: bool = False) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out, rec = SpikingNet(graph).run(x, record=True, encoded=encoded)
    return rec


def assert_same_run(a: ir.Graph, b: ir.Graph, x: torch.Tensor) -> None:
    ra, rb = run(a, x), run(b, x)
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    for name in ra:
        assert torch.equal(ra[name], rb[name]), f"layer {name} differs after the round trip"
    spikes = sum(float(ra[n.name].sum()) for n in a.nodes if n.kind == "lif")
    assert spikes > 0


def round_trip(graph: ir.Graph, tmp_path) -> list[ir.Graph]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        write_nir(graph, tmp_path / "model.nir")
        return [from_nir(to_nir(graph)), load_model(tmp_path / "model.nir")]


def test_mlp_round_trip_is_exact(tmp_path):
    net = build({"input_shape": [20], "timesteps": 10, "encoding": "rate", "layers": [
        {"type": "linear", "out_features": 32}, {"type": "lif", "beta": 0.85, "threshold": 0.7},
        {"type": "linear", "out_features": 24},
        {"type": "lif", "beta": 0.6, "alpha": 0.4, "reset": "zero",
         "threshold": np.linspace(0.2, 1.0, 24).astype(np.float32)},
        {"type": "linear", "out_features": 16, "bias": False}, {"type": "if", "threshold": 0.5},
        {"type": "linear", "out_features": 5}, {"type": "li", "beta": 0.9}]}, seed=3)
    graph = net.to_graph()
    graph["linear0"].precision = {"weight": 4}
    graph["linear0"].weight_scale = np.array([0.125], np.float32)
    for back in round_trip(graph, tmp_path):
        assert back.timesteps == 10 and back.encoding == "rate"
        assert back["lif1"].reset == "subtract" and back["lif3"].reset == "zero"
        assert back["lif3"].alpha == pytest.approx(0.4) and back["if5"].beta == 1.0
        assert back["linear4"].bias is None and back["linear0"].precision == {"weight": 4}
        np.testing.assert_array_equal(back["linear0"].weight_scale, [0.125])
        for a, b in zip(graph.nodes, back.nodes, strict=True):
            for key, arr in a.arrays().items():
                np.testing.assert_array_equal(arr, getattr(b, key))
        x = torch.rand(64, 20, generator=torch.Generator().manual_seed(0))
        xa = SpikingNet(graph).encode(x, torch.Generator().manual_seed(7))  # one rate-coded input
        ra, rb = run(graph, xa, encoded=True), run(back, xa, encoded=True)
        assert all(torch.equal(ra[k], rb[k]) for k in ra) and ra["lif1"].sum() > 0


def test_conv_round_trip_is_exact(tmp_path):
    net = build({"input_shape": [2, 10, 10], "timesteps": 6, "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
        {"type": "lif", "beta": np.linspace(0.5, 0.95, 6).astype(np.float32), "threshold": 0.4},
        {"type": "pool2d", "mode": "avg"},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "bias": False},
        {"type": "lif", "beta": 0.9, "threshold": 0.3, "reset": "zero"},
        {"type": "pool2d", "mode": "sum", "kernel_size": 2, "stride": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": 4}, {"type": "lif", "beta": 0.8}]}, seed=1)
    graph = net.to_graph()
    x = torch.rand(16, 2, 10, 10)
    for back in round_trip(graph, tmp_path):
        assert [n.kind for n in back.nodes] == [n.kind for n in graph.nodes]
        assert back["conv2d3"].bias is None and back["pool2d5"].mode == "sum"
        np.testing.assert_array_equal(back["lif1"].beta, graph["lif1"].beta)
        assert_same_run(graph, back, x)


def test_residual_dag_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    w = lambda o, i: rng.normal(0, 0.6, (o, i)).astype(np.float32)  # noqa: E731
    nodes = [ir.Linear("fc1", ["input"], weight=w(8, 6), bias=np.zeros(8, np.float32)),
             ir.LIF("n1", ["fc1"], beta=0.9, threshold=0.5),
             ir.Linear("fc2", ["n1"], weight=w(8, 8)),
             ir.Add("res", ["n1", "fc2"]),
             ir.LIF("n2", ["res"], beta=0.8, threshold=0.6, reset="zero"),
             ir.Linear("out", ["n2"], weight=w(3, 8), bias=np.ones(3, np.float32) * 0.1),
             ir.LIF("n3", ["out"], beta=0.7, threshold=0.4)]
    graph = ir.Graph((6,), nodes, timesteps=8).validate()
    with pytest.warns(UserWarning, match="n1, n3 keep 'subtract'"):
        nir_graph = to_nir(graph)
    assert sorted(e for e in nir_graph.edges if e[1] == "res") == [("fc2", "res"), ("n1", "res")]
    for back in round_trip(graph, tmp_path):
        assert back["res"].kind == "add" and back["res"].inputs == ["n1", "fc2"]
        assert_same_run(graph, back, torch.rand(32, 6))


def test_exported_constants_follow_snntorch_convention():
    graph = build({"input_shape": [3], "layers": [
        {"type": "linear", "out_features": 2}, {"type": "lif", "beta": 0.75, "alpha": 0.5, "reset": "zero"},
        {"type": "linear", "out_features": 2}, {"type": "lif", "beta": 0.9, "threshold": 2.0, "reset": "zero"},
        {"type": "linear", "out_features": 2}, {"type": "if", "reset": "zero"}]}).to_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reset "zero" everywhere: nothing to warn about
        n = to_nir(graph).nodes
    assert isinstance(n["lif1"], nir.CubaLIF) and isinstance(n["lif3"], nir.LIF) and isinstance(n["if5"], nir.IF)
    for key, value in (("tau_mem", 4), ("tau_syn", 2), ("w_in", 2), ("r", 4)):
        np.testing.assert_array_equal(getattr(n["lif1"], key), [value, value])
    np.testing.assert_allclose(n["lif3"].tau, [10, 10], rtol=1e-6)
    np.testing.assert_allclose(n["lif3"].r, [10, 10], rtol=1e-6)
    np.testing.assert_array_equal(n["lif3"].v_threshold, [2, 2])
    np.testing.assert_array_equal(n["lif3"].v_reset, [0, 0])
    assert "reset" not in n["lif3"].metadata


def test_subtractive_reset_warns_and_is_kept_in_metadata():
    graph = build({"input_shape": [3], "layers": [{"type": "linear", "out_features": 2},
                                                  {"type": "lif", "beta": 0.5}]}).to_graph()
    with pytest.warns(UserWarning, match="lif1 keep 'subtract'"):
        nir_graph = to_nir(graph)
    assert nir_graph.nodes["lif1"].metadata["reset"] == "subtract"
    nir_graph.nodes["lif1"].metadata.clear()  # what another tool would see
    assert from_nir(nir_graph)["lif1"].reset == "zero"


# -- imports checked against a hand-written simulation of NIR's forward-Euler dynamics ------------
def euler_reference(kind, p, w, b, spikes, dt=1.0):
    """NIR dynamics, explicitly: I = W s + b; CubaLIF current, then membrane; v > thr; v = v_reset."""
    steps, batch, _ = spikes.shape
    n = w.shape[0]
    v, cur = np.zeros((batch, n)), np.zeros((batch, n))
    out, margin = [], np.inf
    for t in range(steps):
        inp = spikes[t] @ w.T + b
        if kind == "LIF":
            v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * inp)
        else:
            cur = cur + dt / p["tau_syn"] * (-cur + p["w_in"] * inp)
            v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * cur)
        margin = min(margin, np.abs(v - p["v_threshold"]).min())
        s = v > p["v_threshold"]
        v = np.where(s, p["v_reset"], v)
        out.append(s)
    return np.stack(out).astype(np.float32), margin


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF"])
def test_handmade_nir_graph_matches_euler_simulation(kind, tmp_path):
    rng = np.random.default_rng(4)
    n_in, n = 10, 7
    w = rng.normal(0.3, 0.5, (n, n_in)).astype(np.float32)
    b = rng.normal(0, 0.1, n).astype(np.float32)
    tau = np.where(np.arange(n) % 2, 4.0, 2.5)
    thr = np.full(n, 0.93)
    if kind == "LIF":
        p = {"tau": tau, "r": np.full(n, 3.0), "v_leak": np.linspace(-0.2, 0.3, n),
             "v_threshold": thr, "v_reset": np.zeros(n)}
        neuron = nir.LIF(**p)
    else:
        p = {"tau_syn": np.full(n, 2.0), "tau_mem": tau, "r": np.full(n, 1.5), "v_leak": np.zeros(n),
             "v_threshold": thr, "v_reset": np.zeros(n), "w_in": np.full(n, 0.8)}
        neuron = nir.CubaLIF(**p)
    items = [("inp", nir.Input(input_type={"input": np.array([n_in])})), ("fc", nir.Affine(weight=w, bias=b)),
             ("lif", neuron), ("out", nir.Output(output_type={"output": np.array([n])}))]
    random.Random(0).shuffle(items)  # nodes in any order, edges in any order
    graph = nir.NIRGraph(nodes=dict(items), edges=[("lif", "out"), ("inp", "fc"), ("fc", "lif")])
    nir.write(tmp_path / "hand.nir", graph)
    imported = load_model(tmp_path / "hand.nir")
    assert [m.kind for m in imported.nodes] == ["linear", "lif"] and imported["lif"].reset == "zero"
    spikes = (rng.random((16, 8, n_in)) < 0.4).astype(np.float32)
    ref, margin = euler_reference(kind, p, w.astype(np.float64), b.astype(np.float64), spikes)
    assert margin > 1e-4  # no near-ties, so float32 rounding cannot flip a spike
    ours = run(imported, torch.from_numpy(spikes), encoded=True)["lif"].numpy()
    np.testing.assert_array_equal(ours, ref)
    assert 0.05 < ref.mean() < 0.8


def test_summed_edges_and_flatten_and_pool_against_numpy():
    rng = np.random.default_rng(1)
    conv_w = rng.normal(0, 0.5, (3, 1, 3, 3)).astype(np.float32)
    a = rng.normal(0, 0.4, (4, 12)).astype(np.float32)
    c = rng.normal(0, 0.4, (4, 12)).astype(np.float32)
    nodes = {"in": nir.Input(input_type={"input": np.array([1, 4, 4])}),
             "conv": nir.Conv2d(input_shape=(4, 4), weight=conv_w, stride=1, padding="same", dilation=1,
                                groups=1, bias=np.zeros(3, np.float32)),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0),
             "a": nir.Linear(weight=a), "c": nir.Linear(weight=c),
             "if": nir.IF(r=np.ones(4), v_threshold=np.full(4, 0.77)),
             "out": nir.Output(output_type={"output": np.array([4])})}
    edges = [("if", "out"), ("c", "if"), ("a", "if"), ("flat", "c"), ("flat", "a"), ("pool", "flat"),
             ("conv", "pool"), ("in", "conv")]
    g = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert [m.kind for m in g.nodes] == ["conv2d", "pool2d", "flatten", "linear", "linear", "add", "lif"]
    x = rng.random((6, 5, 1, 4, 4)).astype(np.float32)
    conv = torch.nn.functional.conv2d(torch.from_numpy(x.reshape(30, 1, 4, 4)), torch.from_numpy(conv_w), padding=1)
    pooled = conv.numpy().reshape(30, 3, 2, 2, 2, 2).sum(axis=(3, 5)).reshape(6, 5, 12)
    cur = pooled @ (a + c).T.astype(np.float64)
    v, ref = np.zeros((5, 4)), []
    for t in range(6):
        v = v + cur[t]
        ref.append(v > 0.77)
        v = np.where(ref[-1], 0.0, v)
    ours = run(g, torch.from_numpy(x), encoded=True)["if"].numpy()
    np.testing.assert_array_equal(ours, np.stack(ref))


def test_dt_is_honoured_for_files_from_other_tools():
    beta, dt = 0.9, 1e-4  # snnTorch's export convention
    tau = dt / (1 - beta)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32)),
        nir.LIF(tau=np.full(3, tau), r=np.full(3, tau / dt), v_leak=np.zeros(3), v_threshold=np.ones(3)))
    with pytest.raises(ModelError, match=r"layer 'lif': tau = 0.001 s .* --dt SECONDS"):
        from_nir(graph)
    g = from_nir(graph, dt=dt)
    assert g["lif"].beta == pytest.approx(beta) and np.allclose(g["affine"].weight, np.eye(3))


def _chain(neuron):
    return nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 2), np.float32), bias=np.zeros(2, np.float32)),
                                  neuron)


@pytest.mark.parametrize("make,message", [
    (lambda: _chain(nir.LIF(tau=np.full(2, 5.0), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                            v_reset=np.full(2, -0.5))), "v_reset must be 0"),
    (lambda: _chain(nir.Threshold(threshold=np.ones(2))), "NIR node type Threshold is not supported"),
    (lambda: nir.NIRGraph(nodes={"i": nir.Input(input_type={"input": np.array([2])}),
                                 "a": nir.Linear(weight=np.eye(2)), "b": nir.Linear(weight=np.eye(2)),
                                 "o": nir.Output(output_type={"output": np.array([2])})},
                          edges=[("i", "a"), ("a", "b"), ("b", "a"), ("b", "o")], type_check=False),
     "cycle through node 'a'"),
    (lambda: nir.NIRGraph.from_list(nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1,
                                               padding=0, dilation=1, groups=1, bias=np.zeros(2)),
                                    nir.LIF(tau=np.full((2, 2, 2), 2.0), r=np.arange(8.0).reshape(2, 2, 2),
                                            v_leak=np.zeros((2, 2, 2)), v_threshold=np.ones((2, 2, 2)))),
     "constant per channel"),
])
def test_bad_nir_graphs(make, message):
    with pytest.raises(ModelError, match=message) as exc:
        from_nir(make())
    assert "\n" not in str(exc.value)


def test_export_refuses_max_pool_and_leaves_no_file(tmp_path):
    graph = build({"input_shape": [1, 4, 4], "layers": [
        {"type": "pool2d", "mode": "max"}, {"type": "flatten"}, {"type": "linear", "out_features": 2},
        {"type": "lif"}]}).to_graph()
    with pytest.raises(ModelError, match="layer 'pool2d0': NIR has no max pooling"):
        write_nir(graph, tmp_path / "m.nir")
    assert list(tmp_path.iterdir()) == []


# -- what other exporters write: batch dimensions, 0-d parameters, v_reset arrays, missing dt -------
def _lif_graph(n_in, n, shape_of, in_type, out_type, dt=1.0, **params):
    """Affine -> LIF with every neuron parameter reshaped by ``shape_of`` (0-d, (1,), (n,), (1, n))."""
    rng = np.random.default_rng(5)
    w = rng.normal(0.4, 0.5, (n, n_in)).astype(np.float32)
    b = rng.normal(0, 0.1, n).astype(np.float32)
    p = {"tau": 4.0 * dt, "r": 2.0, "v_leak": 0.0, "v_threshold": 0.9, "v_reset": 0.0, **params}
    nodes = {"in": nir.Input(input_type={"input": np.array(in_type)}), "fc": nir.Affine(weight=w, bias=b),
             "lif": nir.LIF(**{k: shape_of(v) for k, v in p.items()}),
             "out": nir.Output(output_type={"output": np.array(out_type)})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")], type_check=False), w, b, p


@pytest.mark.parametrize("form", ["0-d", "1-element", "per-neuron", "per-neuron with batch dim"])
def test_parameter_forms_and_batch_dims_match_euler_simulation(form, tmp_path):
    n_in, n = 6, 5
    shape_of = {"0-d": lambda v: np.array(v, np.float64),
                "1-element": lambda v: np.full(1, v, np.float64),
                "per-neuron": lambda v: np.full(n, v, np.float64),
                "per-neuron with batch dim": lambda v: np.full((1, n), v, np.float64)}[form]
    graph, w, b, p = _lif_graph(n_in, n, shape_of, [1, n_in], [1, n])  # norse/nirtorch-style types
    if form != "0-d":  # nir.write cannot store 0-d arrays; the others go through a file
        nir.write(tmp_path / "m.nir", graph)
        graph = tmp_path / "m.nir"
    imported = from_nir(graph)
    assert imported.input_shape == (n_in,) and [m.kind for m in imported.nodes] == ["linear", "lif"]
    assert isinstance(imported["lif"].beta, float) and imported["lif"].beta == pytest.approx(0.75)
    spikes = (np.random.default_rng(2).random((10, 8, n_in)) < 0.5).astype(np.float32)
    full = {k: np.full(n, v) for k, v in p.items()}
    ref, margin = euler_reference("LIF", full, w.astype(np.float64), b.astype(np.float64), spikes)
    assert margin > 1e-4 and 0.05 < ref.mean() < 0.9
    np.testing.assert_array_equal(run(imported, torch.from_numpy(spikes), encoded=True)["lif"].numpy(), ref)


def test_leading_one_is_a_channel_when_the_first_layer_needs_it():
    conv = nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3), np.float32), stride=1, padding=1,
                      dilation=1, groups=1, bias=np.zeros(2, np.float32))
    flat = nir.Flatten(input_type={"input": np.array([1, 2, 4, 4])}, start_dim=1)  # counts the batch dim
    nodes = {"in": nir.Input(input_type={"input": np.array([1, 4, 4])}), "conv": conv, "flat": flat,
             "fc": nir.Linear(weight=np.ones((3, 32), np.float32)),
             "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
             "out": nir.Output(output_type={"output": np.array([1, 3])})}
    edges = [("in", "conv"), ("conv", "flat"), ("flat", "fc"), ("fc", "if"), ("if", "out")]
    g = from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    assert g.input_shape == (1, 4, 4) and [m.kind for m in g.nodes] == ["conv2d", "flatten", "linear", "lif"]
    nodes["in"] = nir.Input(input_type={"input": np.array([1, 1, 4, 4])})  # with a batch dimension
    assert from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)).input_shape == (1, 4, 4)


def test_per_neuron_v_reset_array(tmp_path):
    graph, *_ = _lif_graph(4, 3, lambda v: np.full(3, v, np.float64), [4], [3])
    nir.write(tmp_path / "m.nir", graph)
    assert from_nir(tmp_path / "m.nir")["lif"].reset == "zero"
    graph.nodes["lif"].v_reset = np.array([0.0, 0.0, 0.25])
    with pytest.raises(ModelError, match=r"^layer 'lif': v_reset must be 0 .* got 0.25$"):
        from_nir(graph)


def test_declared_shapes_are_checked():
    graph, *_ = _lif_graph(4, 3, lambda v: np.full(3, v, np.float64), [1, 4], [1, 7])
    with pytest.raises(ModelError, match=r"Output node 'out' declares shape \(7,\), but the layers before it "
                                         r"compute \(3,\)"):
        from_nir(graph)
    graph, *_ = _lif_graph(4, 3, lambda v: np.full(3, v, np.float64), [4], [3])
    graph.nodes["lif"].tau = np.full(2, 4.0)
    with pytest.raises(ModelError, match=r"layer 'lif': tau of shape \(2,\) does not fit neurons of shape \(3,\)"):
        from_nir(graph)


def _suggested_dt(message: str) -> float:
    return float(re.search(r"\(--dt (\S+) gives decay", message).group(1))


@pytest.mark.parametrize("dt,where", [(None, r"dt = 1 \(the file stores no time step\)"),
                                      (5e-5, r"--dt 5e-05"), ("file", r"dt = 0.002 s from the file's metadata")])
def test_bad_dt_names_layer_tau_and_a_dt_that_works(dt, where):
    tau = 2e-5  # a norse-style time constant (pre-scaled by 1e-3)
    graph, *_ = _lif_graph(4, 3, lambda v: np.full(3, v, np.float64), [4], [3], tau=tau)
    graph.nodes["lif"].tau = np.array([tau, 3e-5, 4e-5])
    if dt == "file":
        graph.metadata["dt"], dt = 0.002, None
    with pytest.raises(ModelError) as exc:
        from_nir(graph, dt=dt)
    msg = str(exc.value)
    assert re.match(rf"layer 'lif': tau = 2e-05 s with {where} gives decay 1 - dt/tau = -?\d", msg), msg
    assert "--dt SECONDS" in msg and "\n" not in msg
    good = _suggested_dt(msg)
    assert good <= tau / 10  # the suggestion really works: a decay in (0, 1) for every neuron
    beta = from_nir(graph, dt=good)["lif"].beta
    assert np.all((np.asarray(beta) > 0) & (np.asarray(beta) < 1))
    np.testing.assert_allclose(beta, 1 - good / graph.nodes["lif"].tau, rtol=1e-6)


def test_dt_equal_to_tau_is_refused_only_when_dt_is_unknown():
    graph, *_ = _lif_graph(4, 3, lambda v: np.full(3, v, np.float64), [4], [3], tau=1.0)
    with pytest.raises(ModelError, match=r"gives decay 1 - dt/tau = 0 \(no memory\)"):
        from_nir(graph)
    assert from_nir(graph, dt=1.0)["lif"].beta == 0.0  # an explicit step is taken at its word
    for bad in (0.0, -1e-3, float("nan"), "fast"):
        with pytest.raises(ModelError, match="dt must be a positive number of seconds"):
            from_nir(graph, dt=bad)
