"""Simulation at scale: batch-by-batch statistics, the batch size from a memory budget, the float
reference run once (or skipped), calibration as an explicit step, and the CIFAR-shaped VGG."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from deploy import pipeline
from deploy.core import data, ir
from deploy.core.metrics import effective_synops
from deploy.core.net import SpikingNet, build
from deploy.report import render
from deploy.training.arch import ARCHITECTURES
from deploy.training.arch.vgg import synthetic_inputs, vgg_cifar
from hwmodels.base import simulate_float
from hwmodels.imc import ImcTarget


def small_conv() -> ir.Graph:
    rng = np.random.default_rng(0)
    return ir.Graph((1, 8, 8), [
        ir.Conv2d("c1", ["input"], weight=(rng.standard_normal((4, 1, 3, 3)) * 0.8).astype(np.float32), padding=1),
        ir.LIF("l1", ["c1"], beta=0.9, threshold=0.5),
        ir.Flatten("f", ["l1"]),
        ir.Linear("fc", ["f"], weight=(rng.standard_normal((10, 256)) * 0.3).astype(np.float32)),
        ir.LIF("out", ["fc"], beta=0.9, threshold=0.5),
    ], timesteps=6, encoding="direct", name="small_conv")


def test_batch_by_batch_statistics_equal_one_batch():
    g = small_conv()
    x = torch.rand(23, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    whole = simulate_float(g, x, batch_size=len(x))
    streamed = simulate_float(g, x, batch_size=4)           # 6 batches, the last one of 3
    assert torch.equal(whole.predictions, streamed.predictions)
    for name, la in whole.layers.items():
        other = streamed.layers[name]
        assert other.spikes == pytest.approx(la.spikes, rel=1e-9)
        assert other.synops_effective == pytest.approx(la.synops_effective, rel=1e-9)
    assert whole.layers["l1"].spikes > 0


def test_auto_batch_size_from_the_memory_budget():
    g = build(vgg_cifar()).graph
    sizes = [math.prod(s) for s in g.shapes().values()]
    per_sample = 10 * (sum(sizes) + max(sizes)) * g.timesteps          # deploy.core.budget: 10 B per value on digital
    want = pipeline.SIM_BATCH_BYTES // per_sample
    assert 1 <= want < pipeline.MAX_AUTO_BATCH
    assert pipeline.auto_batch_size(g, ["digital"], 1000) == want
    assert pipeline.auto_batch_size(g, ["digital"], 3) == 3                # never more than the samples
    assert pipeline.auto_batch_size(g, ["digital"], 1000, max_memory=per_sample * 4) == 1
    assert pipeline.auto_batch_size(small_conv(), ["digital"], 1000) == pipeline.MAX_AUTO_BATCH


def test_reference_reused_or_skipped():
    g = small_conv()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(3))
    own = simulate_float(g, x, 128, torch.Generator().manual_seed(0)).accuracy(y)
    rep = pipeline.compile(g, target="digital", data=(x, y))
    assert rep.accuracy.reference == own == rep.accuracy.deployed       # digital float: one run serves both
    skipped = pipeline.compile(g, target="imc", data=(x, y), reference=False)
    assert skipped.accuracy.reference is None
    assert "**change**: n/a" in render.markdown(skipped) and "n/a float reference" in str(skipped)
    assert json.loads(skipped.to_json())["accuracy"]["reference"] is None
    with_ref = pipeline.compile(g, target="imc", data=(x, y))
    assert with_ref.accuracy.reference == own
    assert with_ref.accuracy.deployed == skipped.accuracy.deployed


def test_calibration_is_an_explicit_step_without_side_effects():
    g = small_conv()
    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    tgt = ImcTarget(options={"calibrate": True})
    m = tgt.map(g)
    before = {k: lm.steps.copy() for k, lm in m.layers.items()}
    notes = list(m.notes)
    act = tgt.simulate(m, x, batch_size=8)
    assert not m.calibrated and m.notes == notes
    assert all(np.array_equal(m.layers[k].steps, v) for k, v in before.items())
    cal = tgt.calibrate(m, x, batch_size=8)
    assert cal.calibrated and cal is not m and any("calibrated" in n for n in cal.notes)
    assert any(not np.array_equal(cal.layers[k].steps, v) for k, v in before.items())
    assert tgt.calibrate(cal, x) is cal                                    # calibrated once
    again = tgt.simulate(cal, x, batch_size=8)
    assert torch.equal(act.predictions, again.predictions)
    assert act.layers["l1"].spikes == again.layers["l1"].spikes


def test_vgg_architecture_shapes_and_compile():
    assert "vgg_cifar" in ARCHITECTURES and "dvsnet" in ARCHITECTURES
    g = build(vgg_cifar()).graph
    convs = [n for n in g.nodes if n.kind == "conv2d"]
    assert [n.weight.shape[0] for n in convs] == [64, 64, 128, 128, 256, 256]
    assert g.input_shape == (3, 32, 32) and g.timesteps == 8
    assert g.shapes()["flatten"] == (256 * 4 * 4,)
    chans = [3, 64, 64, 128, 128, 256, 256]
    params = sum(chans[i] * chans[i + 1] * 9 + chans[i + 1] for i in range(6)) + 4096 * 256 + 256 + 256 * 10 + 10
    assert g.params() == params
    x, y = synthetic_inputs(2, seed=3)
    assert x.shape == (2, 3, 32, 32) and float(x.min()) >= 0 and float(x.max()) <= 1
    rep = pipeline.compile(g, target="digital", data=(x, y), reference=False)
    with torch.inference_mode():
        pred = SpikingNet(g).predict(x)
    assert rep.accuracy.deployed == float((pred == y).float().mean())
    assert rep.accuracy.samples == 2


def test_synthetic_events_fit_the_event_pipeline():
    # the event inputs the benchmarks use are binary frames the float simulator accepts as they are
    x, _ = data.synthetic_events(2, 5, 16, 3, activity=0.3, seed=0)
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("k,stride,pad,dil,groups", [(3, 1, 1, 1, 1), (3, 2, 1, 1, 2), (5, 2, 0, 2, 1), (1, 3, 0, 1, 4)])
def test_effective_conv_synops_equal_a_ones_kernel_convolution(k, stride, pad, dil, groups):
    node = ir.Conv2d("c", ["input"], weight=np.zeros((8, 4 // groups, k, k), np.float32), stride=stride,
                     padding=pad, dilation=dil, groups=groups)
    x = (torch.rand(3, 2, 4, 11, 9, generator=torch.Generator().manual_seed(k)) > 0.6).float()
    ones = torch.ones(groups, 4 // groups, k, k)
    windows = torch.nn.functional.conv2d(x.reshape(6, 4, 11, 9), ones, stride=stride, padding=pad, dilation=dil,
                                         groups=groups)
    assert effective_synops(node, x) == float(windows.sum()) * (8 // groups)
