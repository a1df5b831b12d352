"""The one neuron kernel: hand-computed steps for each arithmetic, the in-place inference path
equal bit for bit to the autograd path, and no autograd graph at inference."""

from __future__ import annotations

import pytest
import torch

from deploy.core.neurons import LI, LIF, FloatKernel, NeuronKernel
from hwmodels.loihi.reference import LoihiKernel
from quant.neurons import FixedPointKernel, FixedPointLIF, NeuronFormat


def test_every_arithmetic_runs_the_same_step():
    for cls in (FloatKernel, FixedPointKernel, LoihiKernel):
        assert issubclass(cls, NeuronKernel)
        assert cls.step is NeuronKernel.step and cls.run is NeuronKernel.run


@pytest.mark.parametrize("grad", [True, False])
def test_float_kernel_hand_computed(grad):
    # beta 0.5, threshold 1: v = 0.6, 0.9, 1.05 -> spike, 0.05 (subtract); 0.025 + 2 = 2.025 -> spike, 1.025
    x = torch.tensor([0.6, 0.6, 0.6, 2.0]).view(4, 1, 1)
    k = FloatKernel(torch.tensor(0.5), torch.tensor(1.0), grad=grad)
    s, v = k.run(x, record_state=True)
    assert s.view(-1).tolist() == [0, 0, 1, 1]
    assert v.view(-1).tolist() == pytest.approx([0.6, 0.9, 0.05, 1.025], abs=1e-6)
    kz = FloatKernel(torch.tensor(0.5), torch.tensor(1.0), reset="zero", grad=grad)
    assert kz.run(x, record_state=True)[1].view(-1).tolist() == pytest.approx([0.6, 0.9, 0.0, 0.0])


@pytest.mark.parametrize("reset,delay,alpha", [("subtract", False, 0.0), ("zero", False, 0.0),
                                               ("subtract", True, 0.0), ("subtract", False, 0.7)])
def test_inference_path_equals_autograd_path_bit_for_bit(reset, delay, alpha):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, 5, 4, 6, 6, generator=gen) * 0.8
    lif = LIF(beta=torch.rand(4, generator=gen), threshold=0.7, reset=reset, alpha=alpha, reset_delay=delay,
              learn_threshold=True)
    with torch.inference_mode():
        fast = lif(x)
    assert fast.grad_fn is None and not fast.requires_grad
    slow = lif(x.clone().requires_grad_(True))
    assert slow.grad_fn is not None
    assert torch.equal(fast, slow.detach())
    assert 0 < float(fast.mean()) < 1


def test_li_inference_outputs_every_step():
    x = torch.tensor([1.0, 2.0, 0.0]).view(3, 1, 1)
    with torch.inference_mode():
        y = LI(beta=0.5)(x)
    assert y.view(-1).tolist() == [1.0, 2.5, 1.25]      # in-place state, copied out every step


def test_fixed_point_kernel_hand_computed():
    # 8-bit membrane, LSB 1/16, beta 0.5 as 8 fraction bits (code 128), threshold 1.0 = 16 codes
    fmt = NeuronFormat(bits=8, lsb=1 / 16, decay_bits=8)
    lif = FixedPointLIF(fmt, beta=0.5, threshold=1.0).eval()
    x = torch.tensor([0.6, 0.6, 0.6, 20.0]).view(4, 1, 1)
    s, v = lif(x, return_state=True)
    # codes: x = round(9.6) = 10 -> v 10, 15, round(7.5)=8 + 10 = 18 > 16 -> 2; 1 + 320 -> saturates at 127 -> 111
    assert v.view(-1).tolist() == [10, 15, 2, 111]
    assert s.view(-1).tolist() == [0, 0, 1, 1]


def test_loihi_kernel_hand_computed():
    # du = 4095 (u forgets), dv = 2048 (beta 0.5), vth 64: v = 64, 32 + 64 = 96 -> spike -> 0
    k = LoihiKernel(ku=0, kv=2048, vth=64, bias=torch.zeros(1, dtype=torch.int64), u_wraps=False,
                    sum_wraps=False, v_wraps=False)
    s, v = k.run(torch.tensor([64, 64, 0], dtype=torch.int64).view(3, 1, 1), record_state=True)
    assert s.view(-1).tolist() == [False, True, False]
    assert v.view(-1).tolist() == [64, 0, 0]
    k = LoihiKernel(ku=0, kv=2048, vth=64, bias=torch.full((1,), 70, dtype=torch.int64), u_wraps=False,
                    sum_wraps=False, v_wraps=False)
    k.bias_on = True
    assert k.run(torch.zeros(2, 1, 1, dtype=torch.int64)).view(-1).tolist() == [True, True]
