"""The Loihi targets through the protocol (map / simulate / cost), the pipeline and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.metrics import assumed_activity
from deploy.core.net import SpikingNet
from deploy.io import native
from hwmodels import get_target
from hwmodels.loihi import Loihi1Target, reference
from hwmodels.loihi.activity import window
from hwmodels.loihi.network import encode_input
from hwmodels.spec import load_spec

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def tiny() -> ir.Graph:
    return ir.Graph((2,), [ir.Linear("fc", ["input"], weight=np.array([[1.5, 0.0], [0.0, 1.5]], np.float32)),
                           ir.LIF("n", ["fc"], beta=1.0, threshold=1.0, reset="zero")],
                    timesteps=2, encoding="rate")


def test_counters_and_cost_by_hand():
    tgt = get_target("loihi")
    m = tgt.map(tiny())
    act = tgt.simulate(m, torch.tensor([[1.0, 0.0]]), generator=torch.Generator().manual_seed(0))
    fc, n = act.layers["fc"], act.layers["n"]
    # input 0 spikes at both steps; one synapse each; neuron 0 fires at both steps of its window
    assert fc.extra["synaptic_ops"] == 2 and fc.extra["input_messages"] == 2
    assert n.spikes == 2 and n.extra["neuron_updates_active"] == 2 and n.extra["neuron_updates_inactive"] == 2
    assert act.predictions.tolist() == [0]
    cost = tgt.cost(m, act)
    s = {k: c.value for k, c in load_spec("loihi1").constants.items()}
    lfc, ln = cost.layers
    assert lfc.energy_j["synaptic_ops"] == pytest.approx(2 * s["e_syn_op_pj"] * 1e-12)
    assert lfc.energy_j["input_messages"] == pytest.approx(2 * s["e_spike_tile_pj"] * 1e-12)
    assert ln.energy_j["neuron_updates"] == pytest.approx(
        (2 * s["e_neuron_active_pj"] + 2 * s["e_neuron_inactive_pj"]) * 1e-12)
    assert ln.energy_j["spike_routing"] == 0
    busy = (2 * s["t_neuron_active_ns"] + 2 * s["t_neuron_inactive_ns"] + 2 * s["t_syn_op_ns"]
            + 2 * s["t_spike_tile_ns"]) * 1e-9
    steps = 3                                         # 2 input steps + 1 synaptic layer
    assert cost.latency_s == pytest.approx(steps * (busy / 2 + s["t_barrier_min_ns"] * 1e-9))
    assert lfc.memory_bytes == 2 * 8 / 8               # two nonzero 8-bit synapses
    assert ln.resources["cores"] == 1


def test_digits_activity_matches_independent_counts(shipped_graph, digits_split):
    tgt = Loihi1Target()
    m = tgt.map(shipped_graph)
    x = digits_split.x_test[:24]
    act = tgt.simulate(m, x, batch_size=10)
    net = m.network
    run = reference.run(net, encode_input(net, x))
    conv = net.connections[1]                         # conv2d2: lif1 -> lif3
    c_in, h, w = net.shape_of(conv.source)
    eye = torch.eye(c_in * h * w, dtype=torch.float64).reshape(-1, c_in, h, w)
    dense = F.conv2d(eye, torch.from_numpy(conv.weight).double(), None, conv.stride, conv.padding)
    fanout = (dense.reshape(c_in * h * w, -1) != 0).sum(1).double()
    events = window(net, "lif1", run["lif1"]).double().sum((0, 1))
    assert act.layers["conv2d2"].extra["synaptic_ops"] == pytest.approx(float(events @ fanout) / len(x))
    for pop in net.populations:
        la = act.layers[pop.name]
        assert la.extra["spikes"] == la.spikes
        assert la.extra["neuron_updates_active"] + la.extra["neuron_updates_inactive"] == pytest.approx(
            pop.size * net.timesteps)
    logits = window(net, net.output, run[net.output]).sum(0).float()
    assert torch.equal(act.logits, logits)


def test_deployed_accuracy_close_to_float(shipped_graph, digits_split):
    x, y = digits_split.x_test, digits_split.y_test
    tgt = Loihi1Target()
    acc = float((tgt.simulate(tgt.map(shipped_graph), x).predictions == y).float().mean())
    zero = shipped_graph.copy()
    for n in zero.nodes:
        if n.kind == "lif":
            n.reset = "zero"                                # what Loihi's LIF does
    ref = float((SpikingNet(zero).predict(x) == y).float().mean())
    assert abs(acc - ref) < 0.03 and acc > 0.9


def test_assumed_rate_cost_and_loihi2_proxy_label(shipped_graph):
    for name in ("loihi", "loihi2"):
        tgt = get_target(name)
        m = tgt.map(shipped_graph)
        cost = tgt.cost(m, assumed_activity(m.graph, 0.1))
        assert cost.energy_j > 0 and cost.latency_s > 0
    assert any("proxy" in a for a in cost.assumptions)
    assert "e_syn_op_pj" in tgt.describe()["spec"]


def test_lava_is_not_imported_by_the_target():
    code = ("import sys, torch; from hwmodels.loihi import Loihi1Target; from deploy.io import native; "
            "t = Loihi1Target(); m = t.map(native.load('examples/models/digits_snn.pt')); "
            "t.simulate(m, torch.rand(2, 1, 8, 8)); print(any(k.startswith('lava') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compile_with_comparison(shipped_path):
    from deploy.pipeline import compile

    rep = compile(shipped_path, target="loihi2", data="digits", samples=20, compare="loihi")
    assert rep.target.name == "loihi2" and rep.comparison.target == "loihi"
    assert all(np.isfinite(v) and v > 0 for v in rep.comparison.ratios.values())
    assert any("reset" in a for a in rep.assumptions) and any("proxy" in a for a in rep.assumptions)
    rows = {r.name: r for r in rep.layers}
    assert rows["lif1"].resources["cores"] == 1 and "quantization_error" in rows["lif1"].resources


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "deploy"), *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_cli_bad_input_exits_cleanly(tmp_path):
    g = ir.Graph((1, 4, 4), [ir.Pool2d("mp", ["input"], mode="max"), ir.Flatten("f", ["mp"]),
                             ir.Linear("fc", ["f"], weight=np.ones((2, 4), np.float32)), ir.LIF("n", ["fc"])])
    bad = native.save(g, tmp_path / "maxpool.pt")
    out = tmp_path / "rep"
    res = _cli("compile", str(bad), "--target", "loihi", "--data", "none", "-o", str(out), "--no-figures")
    assert res.returncode == 2 and "error: layer 'mp': max pooling" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr and not out.exists()
    big = native.save(ir.Graph((2,), [ir.Linear("fc", ["input"], weight=np.ones((129 * 1024, 2), np.float32)),
                                      ir.LIF("n", ["fc"])]), tmp_path / "big.pt")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("options:\n  chips: 1\n")
    res = _cli("compile", str(big), "--target", "loihi", "--data", "none", "--config", str(cfg), "-o", str(out),
               "--no-figures")
    assert res.returncode == 2 and "needs 129 cores in total" in res.stderr + res.stdout
    assert not out.exists()


def test_cli_compile_compare_imc(tmp_path, shipped_path):
    out = tmp_path / "rep"
    res = _cli("compile", str(shipped_path), "--target", "loihi", "--compare", "imc", "--samples", "12",
               "-o", str(out), "--no-figures")
    assert res.returncode == 0, res.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["target"]["name"] == "loihi" and rep["comparison"]["target"] == "imc"
    assert rep["totals"]["energy_j"] > 0


def test_vgg_with_max_pools_compiles_on_loihi_and_every_layer_fires():
    """The built-in VGG (max pools, relays on Loihi) at a small size through the whole pipeline: the
    report has a row per relay with its cores and energy, every population fires, and the relays' spike
    counts lie between their input's (pooled windows overlap nothing here) divided by 4 and equal to it."""
    from deploy import pipeline
    from deploy.training.arch import vgg

    g = vgg.model(channels=(4, 4, 8, 8, 8, 8), size=16, hidden=16, seed=1).to_graph()
    x, y = vgg.synthetic_inputs(3, size=16, seed=2)
    rep = pipeline.compile(g, target=Loihi1Target(options={"chips": 1}), data=(x, y), reference=False)
    rows = {r.name: r for r in rep.layers}
    for pool in ("pool1", "pool2", "pool3"):
        r = rows[pool]
        assert r.kind == "pool2d" and r.resources["cores"] >= 1 and r.energy_j > 0 and r.spike_rate > 0
        src = rows[g[pool].inputs[0]]
        pooled, unpooled = r.spike_rate * np.prod(r.shape), src.spike_rate * np.prod(src.shape)
        assert unpooled / 4 - 1e-9 <= pooled <= unpooled + 1e-9      # OR of four: at least a quarter, at most all
    assert all(r.spike_rate > 0 for r in rep.layers if r.kind == "lif")
