"""Adder layers and PKKD: forward against hand loops, AdderNet's gradients against their formulas,
the adaptive gradient scale, kernel mappings against direct distances, the digital cost counts."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from deploy.training.adder import AdderConv2d, AdderLinear, conv_net
from deploy.training.distill.pkkd import FeatureMatch, kernel_map, train
from hwmodels.digital.ann_cost import digital_cost


def _hand_conv(x, w, padding):
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    b, _, h, wd = x.shape
    o, _, k, _ = w.shape
    out = torch.zeros(b, o, h + 2 * padding - k + 1, wd + 2 * padding - k + 1)
    for n in range(b):
        for c in range(o):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    out[n, c, i, j] = -(xp[n, :, i:i + k, j:j + k] - w[c]).abs().sum()
    return out


def test_adder_conv_forward_equals_hand_loop():
    torch.manual_seed(0)
    layer = AdderConv2d(2, 3, 3, padding=1, eta=0)
    x = torch.randn(2, 2, 5, 4)
    assert torch.allclose(layer(x), _hand_conv(x, layer.weight.detach(), 1), atol=1e-5)


def test_adder_linear_gradients_follow_addernet():
    torch.manual_seed(1)
    layer = AdderLinear(4, 3, eta=0)
    with torch.no_grad():
        layer.weight.mul_(4)                       # some |w - x| > 1, so the HardTanh clip matters
    x = torch.randn(5, 4, requires_grad=True)
    y = layer(x)
    ref = torch.stack([torch.stack([-(x[n] - layer.weight[o]).abs().sum() for o in range(3)]) for n in range(5)])
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn(5, 3)
    y.backward(g)
    w = layer.weight.detach()
    gw = torch.zeros_like(w)
    gx = torch.zeros(5, 4)
    for n in range(5):
        for o in range(3):
            gw[o] += g[n, o] * (x[n].detach() - w[o])                    # dY/dF = X - F
            gx[n] += g[n, o] * (w[o] - x[n].detach()).clamp(-1, 1)       # dY/dX = HT(F - X)
    assert torch.allclose(layer.weight.grad, gw, atol=1e-5)
    assert torch.allclose(x.grad, gx, atol=1e-5)
    assert (w[None] - x.detach()[:, None]).abs().max() > 1               # the clip was exercised


def test_adder_conv_gradient_matches_linear_on_patches():
    torch.manual_seed(2)
    conv = AdderConv2d(1, 2, 2, eta=0)
    x = torch.randn(1, 1, 3, 3, requires_grad=True)
    conv(x).sum().backward()
    # every output position is an adder-linear row over its 2x2 patch
    w = conv.weight.detach().flatten(1)
    gw = torch.zeros_like(w)
    for i in range(2):
        for j in range(2):
            patch = x.detach()[0, 0, i:i + 2, j:j + 2].flatten()
            gw += patch[None] - w
    assert torch.allclose(conv.weight.grad.flatten(1), gw, atol=1e-5)


def test_adaptive_learning_rate_scaling():
    torch.manual_seed(3)
    layer = AdderLinear(6, 4, eta=0.2)
    layer(torch.randn(8, 6)).pow(2).sum().backward()
    assert layer.weight.grad.norm().item() == pytest.approx(0.2 * math.sqrt(24), rel=1e-5)


def test_kernel_maps_equal_distance_kernels():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = torch.rand(2, 2, 4, 4)
    y = conv(x)
    cols = torch.nn.functional.unfold(x, 3, padding=1).transpose(1, 2)           # (B, L, K)
    d2 = torch.cdist(cols, conv.weight.detach().flatten(1)[None].expand(2, -1, -1)) ** 2   # (B, L, O)
    d2 = d2.transpose(1, 2).reshape(2, 3, 4, 4)
    ref = torch.exp(-d2 / (2 * d2.mean()))
    assert torch.allclose(kernel_map(conv, x, y, "gaussian"), ref, atol=1e-4)
    ad = AdderConv2d(2, 3, 3, padding=1, eta=0)
    ya = ad(x)
    assert torch.allclose(kernel_map(ad, x, ya, "gaussian"), torch.exp(ya / (-ya).mean()), atol=1e-6)


def test_digital_cost_counts_adds_not_multiplies():
    net = nn.Sequential(AdderConv2d(1, 2, 3, padding=1, eta=0), nn.Flatten(), AdderLinear(2 * 4 * 4, 3, eta=0))
    rep = digital_cost(net, (1, 4, 4), bits=8)
    conv_ops, fc_ops = 2 * 16 * 9, 3 * 32
    assert rep["totals"]["mults"] == 0
    assert rep["totals"]["adds"] == 2 * (conv_ops + fc_ops)
    assert rep["spiking"] is False and "not a spiking network" in rep["note"]
    c = rep["constants"]
    expect = (2 * (conv_ops + fc_ops) * c["e_add_int8_pj"]["value"]
              + (conv_ops + fc_ops) * 8 * c["e_sram_read_pj_per_bit"]["value"]) * 1e-12
    assert rep["totals"]["energy_j"] == pytest.approx(expect)
    cnn = digital_cost(conv_net("cnn", (2,), classes=3, image=4), (1, 4, 4), bits=8)
    assert cnn["totals"]["mults"] > 0


def test_pkkd_tiny_run_trains_teacher_and_student(digits_split):
    split = replace(digits_split, x_train=digits_split.x_train[:128], y_train=digits_split.y_train[:128],
                    x_test=digits_split.x_test[:64], y_test=digits_split.y_test[:64])
    student, hist, teacher = train(split, "pkkd", epochs=1, channels=(4,), lr=3e-3)
    assert isinstance(teacher, nn.Sequential) and "teacher_acc" in hist[0]
    assert any(isinstance(m, AdderConv2d) for m in student)
    match = FeatureMatch(student, "linear")
    assert len(match.maps) == 2
