"""SNN families from the literature: BNTT, residual blocks, one-timestep models, on every target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.errors import ModelError, TargetError
from deploy.core.net import SpikingNet, build
from deploy.core.timescale import TimeScaleModule
from deploy.io import native
from deploy.training import bntt

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
FAMILIES = {"converted": "digits_converted_snn.pt", "bntt": "digits_bntt_snn.pt",
            "resnet": "digits_resnet_snn.pt", "one_step": "digits_one_step_snn.pt"}


# -- BatchNorm through time -----------------------------------------------------------------------
def test_bntt_fold_equals_per_timestep_batchnorm():
    torch.manual_seed(0)
    t_steps, c = 3, 4
    layer = bntt.BNTT(c, t_steps, spatial=True)
    layer.train()
    for _ in range(5):   # give every timestep its own running statistics
        layer(torch.randn(t_steps, 8, c, 5, 5) * torch.arange(1, t_steps + 1).view(-1, 1, 1, 1, 1) + 0.3)
    for bn in layer.bns:
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    layer.eval()
    x = torch.randn(t_steps, 6, c, 5, 5)
    scale, shift = layer.folded()
    node = ir.TimeScale("ts", ["input"], scale=scale.numpy(), shift=shift.numpy())
    folded = TimeScaleModule(node)(x)
    # independent reference: torch's functional batch norm with each timestep's statistics
    ref = torch.stack([F.batch_norm(x[t], bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
                       for t, bn in enumerate(layer.bns)])
    torch.testing.assert_close(folded, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scale[0], scale[-1])


def test_bntt_trains_and_folds_inside_a_spiking_net(digits_split):
    t_steps = 3
    spec = {"input_shape": [64], "timesteps": t_steps, "layers": [
        {"type": "linear", "out_features": 32, "bias": False}, bntt.spec_layer(32, t_steps, "ts"),
        {"type": "lif", "beta": 0.9}, {"type": "linear", "out_features": 10}, {"type": "li"}]}
    net = bntt.attach(build(spec))
    from deploy.training.snn import evaluate, fit

    fit(net, digits_split, epochs=2, progress=False)
    graph = net.to_graph()
    ts = graph["ts"]
    assert ts.scale.shape == (t_steps, 32) and not np.allclose(ts.scale, 1.0)
    x = digits_split.x_test.reshape(-1, 64)[:100]
    with torch.no_grad():
        torch.testing.assert_close(SpikingNet(graph)(x), net.eval()(x))
    assert evaluate(SpikingNet(graph), digits_split.x_test, digits_split.y_test) > 0.5


def test_timescale_refuses_other_timesteps_and_loads_without_import(tmp_path):
    g = native.load(MODELS / FAMILIES["bntt"])
    g.timesteps = g.timesteps + 2
    with pytest.raises(ModelError, match="defined for 4 timesteps"):
        SpikingNet(g)(torch.rand(2, 1, 8, 8))
    code = ("from deploy.io import native; g = native.load('examples/models/digits_bntt_snn.pt'); "
            "print(sorted({n.kind for n in g.nodes}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "timescale" in out.stdout


# -- residual blocks ----------------------------------------------------------------------------
def _lif(x: torch.Tensor, beta: float, thr: float) -> torch.Tensor:
    v, out = torch.zeros_like(x[0]), []
    for x_t in x:
        v = beta * v + x_t
        s = (v > thr).float()
        v = v - s * thr
        out.append(s)
    return torch.stack(out)


def test_residual_block_builds_runs_and_matches_hand_written_forward():
    spec = {"input_shape": [2, 6, 6], "timesteps": 5, "layers": [
        {"type": "conv2d", "name": "stem", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "lif", "name": "a", "beta": 0.8},
        {"type": "conv2d", "name": "c1", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "lif", "name": "b", "beta": 0.8},
        {"type": "conv2d", "name": "c2", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "add", "name": "sum", "inputs": ["c2", "a"]},
        {"type": "lif", "name": "out", "beta": 0.8},
        {"type": "conv2d", "name": "proj", "inputs": ["a"], "out_channels": 3, "kernel_size": 1, "stride": 2},
        {"type": "flatten", "name": "flat"}, {"type": "linear", "name": "fc", "out_features": 3}]}
    net = build(spec, seed=3)
    g = net.graph
    assert g["proj"].weight.shape == (3, 4, 1, 1) and g["sum"].inputs == ["c2", "a"]
    x = torch.rand(7, 2, 6, 6)          # direct encoding clamps inputs to [0, 1]

    def conv(name, inp):
        n = g[name]
        flat = inp.reshape(-1, *inp.shape[2:])
        y = F.conv2d(flat, torch.from_numpy(n.weight), torch.from_numpy(n.bias), stride=n.stride, padding=n.padding)
        return y.reshape(*inp.shape[:2], *y.shape[1:])

    xs = x.unsqueeze(0).expand(5, *x.shape)
    a = _lif(conv("stem", xs), 0.8, 1.0)
    b = _lif(conv("c1", a), 0.8, 1.0)
    res = _lif(conv("c2", b) + a, 0.8, 1.0)
    proj = conv("proj", a)
    fc = F.linear(proj.reshape(5, 7, -1), torch.from_numpy(g["fc"].weight), torch.from_numpy(g["fc"].bias))
    out, rec = net.run(x, record=True)
    torch.testing.assert_close(rec["out"], res)
    torch.testing.assert_close(out, fc)
    assert rec["out"].sum() > 0 and rec["a"].sum() > 0


def test_residual_net_trains(digits_split):
    spec = {"input_shape": [1, 8, 8], "timesteps": 3, "layers": [
        {"type": "conv2d", "name": "stem", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "lif", "name": "a", "beta": 0.9},
        {"type": "conv2d", "name": "c1", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "lif", "name": "b", "beta": 0.9},
        {"type": "conv2d", "name": "c2", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "add", "name": "sum", "inputs": ["c2", "a"]}, {"type": "lif", "name": "o", "beta": 0.9},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}, {"type": "li"}]}
    from deploy.training.snn import fit

    net = build(spec)
    before = net.layers["c1"].weight.detach().clone()
    hist = fit(net, digits_split, epochs=2, progress=False)
    assert hist[-1]["test_acc"] > 0.6
    assert not torch.equal(before, net.layers["c1"].weight)     # gradients reach the block body


# -- one-timestep models -----------------------------------------------------------------------
def test_one_step_model_pipeline_reports_meaningful_fields():
    from deploy.pipeline import compile as run_compile

    report = run_compile(MODELS / FAMILIES["one_step"], target="digital", data="digits", samples=200)
    assert report.model.timesteps == 1
    assert report.accuracy.deployed > 0.85 and report.accuracy.deployed == report.accuracy.reference
    lif_rows = [r for r in report.layers if r.kind == "lif"]
    assert lif_rows and all(0 < r.spike_rate < 1 for r in lif_rows)
    assert 0 < report.metrics.activation_sparsity < 1
    assert report.totals.energy_j > 0 and report.totals.latency_s > 0 and report.totals.spikes > 0
    # every hidden layer after the first gets binary spikes: its ops are accumulates
    assert report.metrics.synops_effective_acs > 0 and report.metrics.synops_effective_macs > 0
    g = native.load(MODELS / FAMILIES["one_step"])
    assert all(float(np.min(n.threshold)) > 0 for n in g.nodes if n.kind == "lif")


# -- every family on every target ---------------------------------------------------------------
def _target(name: str):
    import hwmodels

    if name not in hwmodels.available():
        pytest.skip(f"target '{name}': module {hwmodels.TARGETS[name].split(':')[0]} is absent")
    try:
        return hwmodels.get_target(name)
    except TargetError as exc:
        if "is not available" in str(exc):
            pytest.skip(f"target '{name}' cannot be imported yet: {exc}")
        raise


@pytest.mark.parametrize("target", ["digital", "imc", "imc-adc", "loihi", "loihi2"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_example_compiles_on_every_target(family, target, digits_split):
    tgt = _target(target)
    graph = native.load(MODELS / FAMILIES[family])
    if family == "bntt" and "timescale" not in tgt.supported_kinds:
        with pytest.raises(TargetError, match="layer 'bntt1'.*timescale"):
            tgt.map(graph)
        return
    if graph.output.kind == "li" and target.startswith("loihi"):
        # the T=1 model needs a membrane readout; the Loihi target reads spike counts only
        with pytest.raises(TargetError, match=rf"layer '{graph.output.name}'.*li"):
            tgt.map(graph)
        return
    x = digits_split.x_test[:48].reshape(-1, *graph.input_shape)
    y = digits_split.y_test[:48]
    mapping = tgt.map(graph)
    activity = tgt.simulate(mapping, x, batch_size=48, generator=torch.Generator().manual_seed(0))
    cost = tgt.cost(mapping, activity)
    assert cost.energy_j > 0 and cost.latency_s > 0 and cost.memory_bytes > 0
    names = {lc.name for lc in cost.layers}
    assert {n.name for n in mapping.graph.nodes} <= names | set(activity.layers)
    acc = float((activity.predictions == y).float().mean())
    if target != "imc":   # ADC-less sense amplifiers binarize partial sums: accuracy needs IMC-aware fine-tuning
        assert acc > 0.6, f"{family} on {target}: accuracy {acc:.2f}"
    if family == "resnet":
        adds = [lc for lc in cost.layers if lc.kind == "add"]
        assert adds, "the residual add must appear in the cost table"
