"""The vectorized reference against hand-computed steps and an independent per-sample numpy port
of Lava's fixed-point process models (written here line by line from lava-nc 0.10.0's code)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwmodels.loihi import reference
from hwmodels.loihi.network import (
    EXCITATORY,
    INHIBITORY,
    MIXED,
    Connection,
    LoihiNetwork,
    Population,
    lava_dense_weights,
)


def pop(name, shape, vth, du=4095, dv=0, bias=0, bias_exp=0, start=1):
    return Population(name, shape, vth=vth, du=du, dv=dv, bias_mant=np.full(shape, bias, np.int64),
                      bias_exp=bias_exp, start=start)


def test_lif_hand_computed_steps():
    p = pop("n", (2,), vth=1, dv=2048)                      # beta 0.5, threshold 1 << 6 = 64
    a_in = torch.tensor([[[1, -3]], [[1, 0]], [[0, 0]], [[0, 0]]], dtype=torch.int64)
    out = reference.lif_run(p, a_in, record_state=True)
    # neuron 0: u = 64, v = 64 (not > 64); then v = 32 + 64 = 96 > 64 -> spike, reset to 0
    assert out["v"][:, 0, 0].tolist() == [64, 0, 0, 0]
    assert out["spikes"][:, 0, 0].tolist() == [0, 1, 0, 0]
    # neuron 1: v = -192, then decays toward zero: -96, -48, -24 (du = 4095 clears u every step)
    assert out["v"][:, 0, 1].tolist() == [-192, -96, -48, -24]


def test_lava_dense_weight_rules_from_the_reference_notes():
    # mixed sign at 8 bits: odd weights lose their low bit (3 -> 2, -3 -> -4); clip to [-256, 255] first
    w = np.array([[3, -3, 300, -300]])
    assert lava_dense_weights(w, 8, MIXED).tolist() == [[2, -4, 254, -256]]
    assert lava_dense_weights(np.array([[3, 300]]), 8, EXCITATORY).tolist() == [[3, 255]]
    assert lava_dense_weights(np.array([[-3, -300]]), 8, INHIBITORY).tolist() == [[-3, -255]]
    assert lava_dense_weights(np.array([[100, -100]]), 4, MIXED).tolist() == [[96, -128]]


# -- an independent port of Lava's models, one sample at a time -------------------------------------
def np_lif(p: Population, a_in: np.ndarray) -> np.ndarray:
    """PyLifModelBitAcc.run_spk, for one sample (steps, n) int32 -> spikes."""
    u = np.zeros(a_in.shape[1], np.int32)
    v = np.zeros(a_in.shape[1], np.int32)
    mx = 2 ** 23
    spikes = []
    with np.errstate(over="ignore"):
        for t, a in enumerate(a_in.astype(np.int32)):
            bias = p.bias_mant.reshape(-1).astype(np.int32) if t >= p.start else np.zeros_like(u)
            eff_bias = np.left_shift(bias, p.bias_exp)
            dc = np.int64(u) * (4096 - (p.du + 1))
            dc = np.int32(np.sign(dc) * np.right_shift(np.abs(dc), 12))
            dc += np.left_shift(a, 6)
            w = np.where(dc > mx, dc - 2 * mx, dc)
            w = np.where(w <= -mx, dc + 2 * mx, w)
            u = w.astype(np.int32)
            dvv = np.int64(v) * (4096 - p.dv)
            dvv = np.int32(np.sign(dvv) * np.right_shift(np.abs(dvv), 12))
            v = np.clip(dvv + u + eff_bias, -mx + 1, mx - 1).astype(np.int32)
            s = v > (p.vth << 6)
            v[s] = 0
            spikes.append(s)
    return np.array(spikes, np.uint8)


def np_dense(c: Connection, s: np.ndarray) -> np.ndarray:
    """PyDenseModelBitAcc (one sample): (steps, n_in) -> delivered a_in (steps, n_out), one step late."""
    w = lava_dense_weights(c.weight, c.num_weight_bits, c.sign_mode).astype(np.int32)
    out = np.zeros((s.shape[0], w.shape[0]), np.int64)
    buf = np.zeros(w.shape[0], np.int64)
    for t in range(s.shape[0]):
        out[t] = np.int32(buf)
        a = w.dot(s[t].astype(np.int32)) if c.graded else w[:, s[t] != 0].sum(axis=1)
        buf = np.left_shift(a, c.weight_exp) if c.weight_exp > 0 else np.right_shift(a, -c.weight_exp)
    return out


@settings(max_examples=80, deadline=None)
@example(seed=0, n_in=1, n_out=4, exp=7, bits=2, du=0, dv=0, vth=0, graded=True, bias_exp=0)  # u past int32
@given(seed=st.integers(0, 10_000), n_in=st.integers(1, 12), n_out=st.integers(1, 10),
       exp=st.integers(-8, 7), bits=st.integers(2, 8), du=st.integers(0, 4095), dv=st.integers(0, 4095),
       vth=st.integers(0, 2 ** 17 - 1), graded=st.booleans(), bias_exp=st.integers(0, 7))
def test_reference_matches_numpy_port_on_random_networks(seed, n_in, n_out, exp, bits, du, dv, vth, graded,
                                                         bias_exp):
    rng = np.random.default_rng(seed)
    steps, batch = 7, 3
    w = rng.integers(-300, 300, (n_out, n_in))
    mode = [MIXED, EXCITATORY, INHIBITORY][seed % 3]
    w = np.abs(w) if mode == EXCITATORY else -np.abs(w) if mode == INHIBITORY else w
    c = Connection("c", ["c"], "input", "n", "dense", w, (n_in,), (n_out,), weight_exp=exp, num_weight_bits=bits,
                   sign_mode=mode, graded=graded)
    p = pop("n", (n_out,), vth=vth, du=du, dv=dv, bias_exp=bias_exp, start=2)
    p.bias_mant = rng.integers(-4095, 4096, (n_out,))
    net = LoihiNetwork((n_in,), steps, "direct" if graded else "rate", 255 if graded else 1, [p], [c], "n")
    hi = 256 if graded else 2
    x = torch.from_numpy(rng.integers(0, hi, (net.steps, batch, n_in)))
    ref = reference.run(net, x)["n"]
    for b in range(batch):
        expect = np_lif(p, np_dense(c, x[:, b].numpy()))
        assert np.array_equal(ref[:, b].numpy(), expect)


def test_conv_matches_a_direct_loop_with_24_bit_wrap():
    rng = np.random.default_rng(0)
    w = rng.integers(-2 ** 15, 2 ** 15, (3, 2, 3, 3))
    c = Connection("c", ["c"], "input", "n", "conv", w, (2, 5, 5), (3, 3, 3), stride=(2, 2), padding=(1, 1),
                   graded=True)
    net = LoihiNetwork((2, 5, 5), 2, "direct", 255, [pop("n", (3, 3, 3), vth=1)], [c], "n")
    x = torch.from_numpy(rng.integers(0, 256, (net.steps, 1, 2, 5, 5)))
    got = reference.connection_output(net, c, x)
    xp = np.pad(x[0, 0].numpy(), ((0, 0), (1, 1), (1, 1)))
    expect = np.zeros((3, 3, 3), np.int64)
    for o in range(3):
        for i in range(3):
            for j in range(3):
                expect[o, i, j] = (xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o]).sum()
    expect = (expect + 2 ** 23) % 2 ** 24 - 2 ** 23
    assert np.array_equal(got[1, 0].numpy(), expect.reshape(-1))
    assert not got[0].any()                              # one step of delay
