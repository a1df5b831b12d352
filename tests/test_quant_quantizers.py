"""Quantizers against hand-computed codes for every rounding mode, scale and granularity."""

from __future__ import annotations

import pytest
import torch

from quant.quantizers import (
    QuantError,
    QuantSpec,
    check_bits,
    compute_scale,
    dequantize,
    fake_quantize,
    fixed_point_format,
    int_range,
    quantize,
    round_ste,
    round_values,
)

torch.set_num_threads(1)


def test_rounding_modes_by_hand():
    x = torch.tensor([-1.5, -0.4, 0.4, 0.5, 1.5, 2.7])
    assert round_values(x, "truncation").tolist() == [-2, -1, 0, 0, 1, 2]   # floor (arithmetic shift)
    assert round_values(x, "nearest").tolist() == [-1, 0, 0, 1, 2, 3]      # floor(x + 1/2): ties go up
    with pytest.raises(QuantError, match="unknown rounding mode"):
        round_values(x, "banker")


def test_stochastic_rounding_is_unbiased_and_seeded():
    x = torch.full((200_000,), 0.3)
    a = round_values(x, "stochastic", torch.Generator().manual_seed(7))
    b = round_values(x, "stochastic", torch.Generator().manual_seed(7))
    c = round_values(x, "stochastic", torch.Generator().manual_seed(8))
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert abs(a.mean().item() - 0.3) < 0.005          # E[floor(x + u)] = x; sd of the mean ~0.001
    assert torch.equal(a, b) and not torch.equal(a, c)
    y = torch.tensor([-1.75] * 100_000)                  # negative values: between -2 and -1, mean -1.75
    r = round_values(y, "stochastic", torch.Generator().manual_seed(0))
    assert set(r.unique().tolist()) == {-2.0, -1.0} and abs(r.mean().item() + 1.75) < 0.01


def test_int_ranges():
    assert int_range(4) == (-7, 7) and int_range(4, narrow=False) == (-8, 7)
    assert int_range(3, signed=False) == (0, 7)
    assert int_range(1) == (-1, 1)                       # binary


def test_per_tensor_scale_based_by_hand():
    x = torch.tensor([0.4, -0.5, 0.9, -0.1])
    # 3-bit signed narrow: qmax 3, scale 0.9 / 3 = 0.3; x / s = [1.33, -1.67, 3, -0.33]
    codes, scale = quantize(x, QuantSpec(3, rounding="truncation"))
    assert scale.item() == pytest.approx(0.3)
    assert codes.tolist() == [1, -2, 3, -1]
    codes, _ = quantize(x, QuantSpec(3, rounding="nearest"))
    assert codes.tolist() == [1, -2, 3, 0]
    assert torch.allclose(dequantize(codes, scale), torch.tensor([0.3, -0.6, 0.9, 0.0]))


def test_per_channel_and_unsigned_by_hand():
    w = torch.tensor([[1.0, -0.5, 0.25], [0.2, 0.1, -0.05]])
    codes, scale = quantize(w, QuantSpec(3, per_channel=True))   # qmax 3: scales 1/3 and 0.2/3
    assert torch.allclose(scale, torch.tensor([1 / 3, 0.2 / 3]))
    # row 0: [3, -1.5, 0.75] -> nearest [3, -1, 1]; row 1: [3, 1.5, -0.75] -> [3, 2, -1]
    assert codes.tolist() == [[3, -1, 1], [3, 2, -1]]
    codes, scale = quantize(torch.tensor([0.0, 0.35, 0.7, -0.2]), QuantSpec(2, signed=False))
    assert scale.item() == pytest.approx(0.7 / 3) and codes.tolist() == [0, 2, 3, 0]   # 1.5 -> 2, clipped at 0


def test_fixed_point_by_hand():
    # 8 bits signed holding 2.7: 127 / 2.7 = 47.0 -> 5 fraction bits, 2 integer bits (+ sign)
    assert fixed_point_format(2.7, 8) == (2, 5)
    codes, scale = quantize(torch.tensor([2.7, -4.2, 0.01]), QuantSpec(8, scheme="fixed"))
    assert scale.item() == 2 ** -4                      # max 4.2: 127 / 4.2 = 30.2 -> 4 fraction bits
    assert codes.tolist() == [43, -67, 0]               # 43.2 -> 43, -67.2 -> -67, 0.16 -> 0
    codes, scale = quantize(torch.tensor([2.7, -4.2, 0.01]), QuantSpec(8, scheme="fixed", frac_bits=5))
    assert codes.tolist() == [86, -128, 0]              # 86.4 -> 86; -134.4 saturates at -128
    codes, scale = quantize(torch.tensor([0.3]), QuantSpec(4, scheme="fixed", frac_bits=2, rounding="truncation"))
    assert scale.item() == 0.25 and codes.tolist() == [1]


def test_values_on_the_grid_are_fixed_points_of_every_mode():
    w = torch.randn(16, 9, generator=torch.Generator().manual_seed(0))
    for mode in ("truncation", "nearest", "stochastic"):
        spec = QuantSpec(5, per_channel=True, rounding=mode)
        codes, scale = quantize(w, spec, generator=torch.Generator().manual_seed(1))
        again, scale2 = quantize(dequantize(codes, scale), spec, generator=torch.Generator().manual_seed(2))
        assert torch.equal(codes, again) and torch.allclose(scale, scale2)


def test_binary_weights():
    codes, scale = quantize(torch.tensor([0.5, -0.1, 0.0, -2.0]), QuantSpec(1))
    assert codes.tolist() == [1, -1, 1, -1] and scale.item() == pytest.approx(0.65)


def test_straight_through_gradients():
    x = torch.tensor([0.2, 0.7, 1.4], requires_grad=True)
    y = round_ste(x * 3, "nearest")
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0, 3.0]            # identity through the rounding
    w = torch.tensor([0.1, -0.3, 2.0], requires_grad=True)
    spec = QuantSpec(3)                                   # qmax 3 with a fixed scale 0.25: range [-0.75, 0.75]
    out = fake_quantize(w, spec, scale=torch.tensor(0.25))
    assert out.tolist() == [0.0, -0.25, 0.75]
    out.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 0.0]            # clipped STE: no gradient where saturated


def test_scale_of_all_zero_tensor_is_safe():
    codes, scale = quantize(torch.zeros(3, 2), QuantSpec(4, per_channel=True))
    assert torch.equal(codes, torch.zeros(3, 2)) and torch.all(scale == 1)
    assert compute_scale(torch.zeros(4), QuantSpec(4, scheme="fixed")).item() == 1


@pytest.mark.parametrize("bad", [0, -3, 33, 2.5, "8"])
def test_bad_bit_widths(bad):
    with pytest.raises(QuantError, match="bit width"):
        check_bits(bad)
    with pytest.raises(QuantError):
        QuantSpec(bad)
