"""Real Lava vs the vectorized reference: every layer's spikes, every step, must agree.

Lava is slow (the first run of each network compiles), so the networks are
small and the samples few. The sweep covers negative weights, graded and
spike inputs, negative and positive weight exponents, conv (stride, groups,
dilation), pooling folded into dense, a residual shortcut (DelayDense), a
quantized 4-bit layer with a synaptic current, and saturation: clipped
weights, a wrapping current ``u`` and a clipped voltage ``v``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deploy.core import ir
from hwmodels.loihi import Loihi1Target, reference
from hwmodels.loihi.fixed_point import LoihiOverflowWarning
from hwmodels.loihi.lava_backend import run_lava
from hwmodels.loihi.network import INPUT, Connection, LoihiNetwork, Population, encode_input


def _w(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    n_in, n_h = int(rng.integers(6, 20)), int(rng.integers(8, 24))
    return ir.Graph((n_in,), [
        ir.Linear("fc1", ["input"], weight=_w(rng, n_h, n_in, scale=0.8), bias=_w(rng, n_h, scale=0.2)),
        ir.LIF("lif1", ["fc1"], beta=float(rng.uniform(0.5, 1.0)), threshold=1.0, reset="zero"),
        ir.Linear("fc2", ["lif1"], weight=_w(rng, 5, n_h, scale=1.0), bias=_w(rng, 5, scale=0.1)),
        ir.LIF("lif2", ["fc2"], beta=0.9, threshold=float(rng.uniform(0.5, 1.5)), reset="zero"),
    ], timesteps=6, encoding="direct", name=f"mlp{seed}")


def conv_pool(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph((2, 6, 6), [
        ir.Conv2d("c1", ["input"], weight=_w(rng, 4, 2, 3, 3, scale=0.9), bias=_w(rng, 4, scale=0.1), padding=1),
        ir.LIF("l1", ["c1"], beta=0.85, threshold=1.0),
        ir.Conv2d("c2", ["l1"], weight=_w(rng, 6, 2, 3, 3, scale=0.9), stride=(2, 1), padding=2,
                  dilation=2, groups=2),
        ir.LIF("l2", ["c2"], beta=0.95, threshold=0.8),
        ir.Pool2d("p", ["l2"], mode="avg", kernel_size=2, stride=2),
        ir.Flatten("f", ["p"]),
        ir.Linear("fc", ["f"], weight=_w(rng, 5, 18, scale=1.5)),
        ir.LIF("l3", ["fc"], beta=1.0, threshold=1.0),
    ], timesteps=5, encoding="rate", name=f"convpool{seed}")


def residual(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph((10,), [
        ir.Linear("fc1", ["input"], weight=_w(rng, 12, 10), bias=_w(rng, 12, scale=0.1)),
        ir.LIF("a", ["fc1"], beta=0.9, threshold=1.0),
        ir.Linear("fc2", ["a"], weight=_w(rng, 12, 12, scale=0.6)),
        ir.LIF("b", ["fc2"], beta=0.9, threshold=1.0),
        ir.Linear("fc3", ["b"], weight=_w(rng, 12, 12, scale=0.6)),
        ir.Add("sum", ["fc3", "a"]),                       # identity shortcut skipping two layers
        ir.LIF("c", ["sum"], beta=0.9, threshold=1.0),
        ir.Linear("out", ["c"], weight=_w(rng, 4, 12)),
        ir.LIF("o", ["out"], beta=0.9, threshold=1.0),
    ], timesteps=5, encoding="direct", name=f"res{seed}")


def quantized(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    scale = np.float32(0.15)
    codes = rng.integers(-8, 8, (8, 9)).astype(np.float32)
    g = ir.Graph((9,), [
        ir.Linear("q", ["input"], weight=codes * scale, weight_scale=np.array([scale], np.float32)),
        ir.LIF("n", ["q"], beta=0.8, threshold=1.0, alpha=0.5),
        ir.Linear("fc", ["n"], weight=_w(rng, 3, 8)),
        ir.LIF("o", ["fc"], beta=0.9, threshold=1.0),
    ], timesteps=6, encoding="rate", name=f"quant{seed}")
    g["q"].precision = {"weight": 4}
    return g


def saturating(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    return ir.Graph((8,), [
        ir.Linear("big", ["input"], weight=_w(rng, 6, 8, scale=6.0), bias=_w(rng, 6, scale=3.0)),
        ir.LIF("n", ["big"], beta=1.0, threshold=1.0, alpha=0.2),
        ir.Linear("fc", ["n"], weight=_w(rng, 3, 6, scale=2.0)),
        ir.LIF("o", ["fc"], beta=0.5, threshold=1.0),
    ], timesteps=6, encoding="rate", name=f"sat{seed}")


def _agree(graph: ir.Graph, x: torch.Tensor, options: dict | None = None, seed: int = 0):
    tgt = Loihi1Target(options=options or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoihiOverflowWarning)
        mapping = tgt.map(graph)
    net = mapping.network
    xq = encode_input(net, x, torch.Generator().manual_seed(seed))
    ref = reference.run(net, xq, record_state=True)
    lava = run_lava(net, xq)
    for pop in net.populations:
        assert torch.equal(ref[pop.name], lava[pop.name]), f"{graph.name}: layer {pop.name} differs"
    return net, ref


@pytest.mark.parametrize("seed", [0, 1])
def test_random_mlp_agrees_spike_for_spike(seed):
    g = mlp(seed)
    x = torch.rand(3, g.input_shape[0], generator=torch.Generator().manual_seed(seed))
    net, ref = _agree(g, x)
    assert net.connections[0].weight_exp < 0            # graded input: exponent below zero
    assert (net.connections[0].weight < 0).any()
    assert sum(int(ref[p.name].sum()) for p in net.populations) > 0


def test_conv_pool_network_agrees():
    g = conv_pool(3)
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    net, ref = _agree(g, x, seed=3)
    kinds = [c.kind for c in net.connections]
    assert kinds == ["conv", "conv", "dense"]            # the pooling is folded into the dense layer
    assert int(ref["l2"].sum()) > 0


def test_residual_shortcut_uses_a_delayed_connection_and_agrees():
    g = residual(4)
    x = torch.rand(2, 10, generator=torch.Generator().manual_seed(4))
    net, ref = _agree(g, x)
    shortcut = [c for c in net.connections if c.source == "a" and c.target == "c"][0]
    assert shortcut.delay == 1 and net.population("c").start == 3
    assert int(ref["c"].sum()) > 0


def test_quantized_layer_with_synaptic_current_agrees():
    g = quantized(5)
    x = torch.rand(2, 9, generator=torch.Generator().manual_seed(5))
    net, ref = _agree(g, x, seed=5)
    q = net.connections[0]
    assert q.num_weight_bits == 4 and q.error["weight"] < 0.01
    assert net.population("n").du < 4095


def test_saturated_network_agrees_including_wrap_and_clip():
    g = saturating(6)
    x = torch.ones(2, 8)
    x[1, ::2] = 0
    with pytest.warns(LoihiOverflowWarning):
        Loihi1Target(options={"scale": 10000, "saturate": True}).map(g)
    net, ref = _agree(g, x, options={"scale": 10000, "saturate": True}, seed=6)
    big = net.connections[0]
    assert big.weight_exp == 7 and (big.weight.max() == 254 or big.weight.min() == -256)   # clipped weights
    assert np.abs(net.population("n").bias_mant).max() == 4095                             # clipped bias
    a_in = reference.synaptic_input(net, net.population("n"), ref)
    assert int((a_in << 6).abs().max()) > 2 ** 23                                          # u wraps
    assert int(ref["n.v"].abs().max()) == 2 ** 23 - 1                                     # v clips


def test_integer_overflow_beyond_one_wrap_agrees():
    # hand-built network: u never decays (du = 0) and gets a huge drive, so it wraps once per step,
    # leaves the 24-bit range and overflows int32; v clips; the reference must follow Lava bit for bit
    w = np.array([[254, -256, 200], [-256, 254, -100]])
    conn = Connection("c", ["c"], INPUT, "n", "dense", w, (3,), (2,), weight_exp=7, graded=True)
    pop = Population("n", (2,), vth=5, du=0, dv=0, bias_mant=np.array([4095, -4095]), bias_exp=7, start=1)
    out = Connection("o", ["o"], "n", "m", "dense", np.array([[254, 254]]), (2,), (1,))
    pop2 = Population("m", (1,), vth=1, du=4095, dv=100, bias_mant=np.array([0]), bias_exp=0, start=2)
    net = LoihiNetwork((3,), 8, "direct", 255, [pop, pop2], [conn, out], "m")
    xq = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (net.steps, 2, 3)))
    ref = reference.run(net, xq, record_state=True)
    lava = run_lava(net, xq)
    assert int(ref["n.u"].abs().max()) > 2 ** 24
    for name in ("n", "m"):
        assert torch.equal(ref[name], lava[name])


def test_shipped_digits_model_agrees_on_several_samples(shipped_graph, digits_split):
    x = digits_split.x_test[:3]
    net, ref = _agree(shipped_graph, x)
    assert [c.kind for c in net.connections] == ["conv", "conv", "conv", "dense"]
    assert int(ref[net.output].sum()) > 0


def test_target_lava_backend_gives_the_same_activity(shipped_graph, digits_split):
    x = digits_split.x_test[3:5]
    ref_act = Loihi1Target().simulate(Loihi1Target().map(shipped_graph), x)
    tgt = Loihi1Target(options={"backend": "lava"})
    lava_act = tgt.simulate(tgt.map(shipped_graph), x)
    assert torch.equal(ref_act.predictions, lava_act.predictions)
    for name, la in ref_act.layers.items():
        assert la.spikes == lava_act.layers[name].spikes
        assert la.extra == pytest.approx(lava_act.layers[name].extra)


def pool_conv(mode: str, size: int = 8) -> ir.Graph:
    """An avg/sum pool in front of a conv; ``size`` odd: the pool drops the last row and column."""
    rng = np.random.default_rng(5)
    return ir.Graph((2, size, size), [
        ir.Conv2d("c1", ["input"], weight=_w(rng, 4, 2, 3, 3, scale=0.9), bias=_w(rng, 4, scale=0.1), padding=1),
        ir.LIF("l1", ["c1"], beta=0.85, threshold=1.0),
        ir.Pool2d("p", ["l1"], mode=mode, kernel_size=2, stride=2),
        ir.Conv2d("c2", ["p"], weight=_w(rng, 6, 2, 3, 3, scale=1.2 if mode == "avg" else 0.4),
                  bias=_w(rng, 6, scale=0.1), padding=1, groups=2),
        ir.LIF("l2", ["c2"], beta=0.9, threshold=0.8),
        ir.Flatten("f", ["l2"]),
        ir.Linear("fc", ["f"], weight=_w(rng, 5, 6 * (size // 2) ** 2, scale=0.8)),
        ir.LIF("l3", ["fc"], beta=1.0, threshold=1.0),
    ], timesteps=6, encoding="rate", name=f"poolconv_{mode}")


@pytest.mark.parametrize("mode", ["avg", "sum"])
def test_pool_then_conv_is_one_strided_conv_equal_to_the_dense_fold(mode):
    """pool + conv lowers to one conv (kernel 6x6, stride 2, padding 2) whose dense matrix is the
    one the generic path gets by probing pool and conv with unit inputs; on a map the pool does
    not divide (7x7) the generic dense fold is kept."""
    from hwmodels.loihi.lower import _chain_fn, _probe, lower

    g = pool_conv(mode)
    fc = [c for c in lower(g, "loihi").connections if c.nodes == ["p", "c2"]][0]
    assert fc.kind == "conv" and fc.weight.shape == (6, 2, 6, 6) and fc.stride == (2, 2) and fc.padding == (2, 2)
    chain = [g["p"], g["c2"]]
    bias = _chain_fn(chain)(torch.zeros(1, 4, 8, 8, dtype=torch.float64)).reshape(-1).numpy()
    np.testing.assert_allclose(fc.dense_matrix(), _probe(_chain_fn(chain), (4, 8, 8), (6, 4, 4), bias), atol=1e-12)
    np.testing.assert_allclose(fc.bias, bias, atol=1e-12)
    odd = [c for c in lower(pool_conv(mode, 7), "loihi").connections if c.nodes == ["p", "c2"]][0]
    assert odd.kind == "dense"


def test_pool_then_conv_agrees_with_lava():
    g = pool_conv("avg")
    x = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    net, ref = _agree(g, x, seed=4)
    assert [c.kind for c in net.connections] == ["conv", "conv", "dense"]
    assert int(ref["l2"].sum()) > 0 and int(ref["l3"].sum()) > 0


def max_pools(seed: int) -> ir.Graph:
    """Max pooling of spikes twice: non-overlapping 2x2, then overlapping 3x3 / stride 2 / padding 1."""
    rng = np.random.default_rng(seed)
    return ir.Graph((2, 8, 8), [
        ir.Conv2d("c1", ["input"], weight=_w(rng, 4, 2, 3, 3, scale=0.9), padding=1),
        ir.LIF("l1", ["c1"], beta=0.9, threshold=1.0),
        ir.Pool2d("p1", ["l1"], mode="max", kernel_size=2, stride=2),
        ir.Conv2d("c2", ["p1"], weight=_w(rng, 6, 4, 3, 3, scale=0.7), padding=1),
        ir.LIF("l2", ["c2"], beta=0.9, threshold=0.8),
        ir.Pool2d("p2", ["l2"], mode="max", kernel_size=3, stride=2, padding=1),
        ir.Flatten("f", ["p2"]),
        ir.Linear("fc", ["f"], weight=_w(rng, 5, 24, scale=0.8)),
        ir.LIF("o", ["fc"], beta=1.0, threshold=1.0),
    ], timesteps=6, encoding="rate", name=f"maxpool{seed}")


def test_max_pool_of_spikes_is_a_relay_population_equal_to_the_max_and_to_lava():
    """Each max pool becomes a population whose spikes at step t + 1 are exactly the max (OR) of its
    input window's spikes at step t, in the reference and in Lava."""
    g = max_pools(5)
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    net, ref = _agree(g, x, seed=5)
    assert [p.name for p in net.populations] == ["l1", "p1", "l2", "p2", "o"]
    assert [c.kind for c in net.connections] == ["conv", "conv", "conv", "conv", "dense"]
    for pool in (g["p1"], g["p2"]):
        src = ref[pool.inputs[0]].to(torch.float32)
        steps, batch = src.shape[:2]
        spikes = src.reshape(steps * batch, *net.shape_of(pool.inputs[0]))
        expect = torch.nn.functional.max_pool2d(spikes, pool.kernel_size, pool.stride, pool.padding)
        got = ref[pool.name].reshape(steps, batch, -1).to(torch.float32)
        assert torch.equal(got[1:], expect.reshape(steps, batch, -1)[:-1]) and not got[0].any()
        assert 0 < int(got.sum()) < got.numel()
    assert net.population("p2").start == net.population("l2").start + 1


def test_max_pool_of_anything_but_spikes_is_refused():
    from deploy.core.errors import TargetError

    rng = np.random.default_rng(0)
    g = ir.Graph((2, 8, 8), [
        ir.Conv2d("c1", ["input"], weight=_w(rng, 4, 2, 3, 3), padding=1),
        ir.Pool2d("p1", ["c1"], mode="max", kernel_size=2, stride=2),
        ir.LIF("l1", ["p1"]),
    ], timesteps=4, encoding="rate")
    with pytest.raises(TargetError, match=r"^layer 'p1': max pooling is supported on target 'loihi' only directly "
                                          r"on a lif layer's spikes"):
        Loihi1Target().map(g)
