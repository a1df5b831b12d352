"""Core partitioning: per-core limits, splitting, hops on the tile mesh, chips, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.loihi import Loihi1Target, Loihi2Target
from hwmodels.loihi.network import INPUT, Connection, LoihiNetwork, Population
from hwmodels.loihi.wiring import Wiring
from hwmodels.spec import load_spec


def dense_net(n_in: int, n_out: int, seed: int = 0, **lif) -> ir.Graph:
    rng = np.random.default_rng(seed)
    w = (rng.choice([-1, 1], (n_out, n_in)) * rng.uniform(0.2, 0.3, (n_out, n_in))).astype(np.float32)
    return ir.Graph((n_in,), [ir.Linear("fc", ["input"], weight=w), ir.LIF("n", ["fc"], **lif)],
                    timesteps=2, encoding="rate")


def two_layer(n_a: int, n_b: int) -> ir.Graph:
    rng = np.random.default_rng(1)
    return ir.Graph((4,), [
        ir.Linear("fc1", ["input"], weight=rng.normal(0, 1, (n_a, 4)).astype(np.float32)),
        ir.LIF("a", ["fc1"]),
        ir.Linear("fc2", ["a"], weight=rng.normal(0, 1, (n_b, n_a)).astype(np.float32)),
        ir.LIF("b", ["fc2"]),
    ], timesteps=2, encoding="rate")


def small_core_target(**constants) -> Loihi1Target:
    spec = load_spec("loihi1").override(constants, "test")
    return Loihi1Target(spec=spec)


def synapse_pairs(net, conn) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) of every nonzero synapse, listed one by one from the dense form."""
    w = conn.effective_weight()
    if conn.kind == "dense":
        dst, src = np.nonzero(w)
        return src, dst
    c_in, h, wd = net.shape_of(conn.source)
    eye = torch.eye(c_in * h * wd, dtype=torch.float64).reshape(-1, c_in, h, wd)
    dense = F.conv2d(eye, torch.from_numpy(w != 0).double(), None, conn.stride, conn.padding, conn.dilation,
                     conn.groups).reshape(c_in * h * wd, -1).numpy()
    src, dst = np.nonzero(dense)
    return src, dst


def check_wiring(net, conn, block_sizes) -> None:
    """Fan-in, fan-out and every block's distinct sources equal those of the synapses listed one by one."""
    src, dst = synapse_pairs(net, conn)
    wi = Wiring(net, conn)
    n_out, n_src = wi.n_out, int(np.prod(net.shape_of(conn.source)))
    assert np.array_equal(wi.fan_in, np.bincount(dst, minlength=n_out))
    assert np.array_equal(wi.fan_out, np.bincount(src, minlength=n_src))
    for k in block_sizes:
        expect = np.unique((dst // k) * n_src + src)
        blk, s = wi.block_sources(k)
        got = blk * n_src + s
        assert len(got) == len(expect) and np.array_equal(np.sort(got), expect), k
        assert np.array_equal(wi.block_counts(k), np.bincount(expect // n_src, minlength=-(-n_out // k)))


def test_shipped_conv_wiring_matches_its_synapses(shipped_graph):
    net = Loihi1Target().map(shipped_graph).network
    for conn in net.connections:
        check_wiring(net, conn, [1, 7, 64, 1000])


@pytest.mark.parametrize("seed", range(12))
def test_conv_wiring_matches_its_synapses(seed):
    """Random kernels with zeros, strides, padding, dilation and groups, blocks inside and across channels."""
    rng = np.random.default_rng(seed)
    g = int(rng.choice([1, 2]))
    c_in, c_out, k = 2 * int(rng.integers(1, 4)), 2 * int(rng.integers(1, 4)), int(rng.integers(1, 4))
    s, p, d = int(rng.integers(1, 3)), int(rng.integers(0, 2)), int(rng.integers(1, 3))
    h, w = int(rng.integers(5, 10)), int(rng.integers(5, 10))
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    weight = rng.integers(-2, 3, (c_out, c_in // g, k, k))           # about a fifth are zero
    conn = Connection("c", ["c"], INPUT, "n", "conv", weight, (c_in, h, w), (c_out, ho, wo), stride=(s, s),
                      padding=(p, p), dilation=(d, d), groups=g)
    pop = Population("n", (c_out, ho, wo), 1, 0, 0, np.zeros((c_out, ho, wo), np.int64), 6, 1)
    net = LoihiNetwork((c_in, h, w), 2, "rate", 1, [pop], [conn], "n")
    check_wiring(net, conn, [1, 2, 3, wo, 2 * wo + 1, ho * wo, ho * wo + 1, 10_000])


def test_shipped_model_fits_one_core_per_layer(shipped_graph):
    m = Loihi1Target().map(shipped_graph)
    pl = m.placement
    assert pl.cores == 4 and pl.chips == 1 and pl.tiles == 1
    lif1 = pl.per_core[0]
    assert lif1["neurons"] == 1024 and lif1["in_axons"] == 64
    assert lif1["syn_bytes"] == pl.synapses["conv2d0->lif1"] * 8 / 8


def test_compartment_limit_splits_and_loihi2_packs_more():
    g = dense_net(16, 3000)
    assert Loihi1Target().map(g).placement.cores == 3            # 1024 compartments per core
    assert Loihi2Target().map(g).placement.cores == 1            # 8192 neurons per core


def test_synaptic_memory_limit_splits_the_layer():
    g = dense_net(4000, 40)                                       # 4000 synapses (bytes) per neuron
    pl = Loihi1Target().map(g).placement
    assert max(pc["syn_bytes"] for pc in pl.per_core) <= 131072
    assert [pc["neurons"] for pc in pl.per_core] == [32, 8]      # 131072 // 4000 = 32


def test_input_axon_limit_is_a_clear_error():
    g = dense_net(5000, 4)
    tgt = Loihi1Target()
    v = tgt.check(g)
    assert v and v[0].layer == "n" and v[0].need == 5000 and v[0].limit == 4096
    with pytest.raises(TargetError, match=r"layer 'n' needs 5000 input axons per core \(one neuron\), "
                                          r"the target allows 4096"):
        tgt.map(g)


def test_hops_on_the_tile_mesh():
    # 4 compartments per core, 2 tiles east-west: cores 0-1 hold 'a', cores 2-11 hold 'b'
    tgt = small_core_target(compartments_per_core=4, mesh_tiles_x=2)
    pl = tgt.map(two_layer(8, 40)).placement
    assert pl.cores == 12
    # b's cores 2..11 sit in tiles 0,0,1,1,1,1,2,2,2,2 -> (x, y) = (0,0)x2, (1,0)x4, (0,1)x4
    assert (pl.messages["a"] == 10).all()                         # every a neuron reaches all 10 b cores
    assert (pl.hops_ew["a"] == 4).all() and (pl.hops_ns["a"] == 4).all()
    assert (pl.messages["input"] == 2).all() and (pl.hops_ew["input"] == 0).all()


def test_output_axon_limit_shrinks_blocks():
    tgt = small_core_target(compartments_per_core=4, output_axons_per_core=12)
    pl = tgt.map(two_layer(8, 40)).placement
    a_cores = [pc for pc in pl.per_core if pc["population"] == "a"]
    assert all(pc["out_axons"] <= 12 for pc in pl.per_core)
    assert [pc["neurons"] for pc in a_cores] == [1] * 8           # 4 x 10 and 2 x 10 exceed 12; 1 x 10 fits
    tgt = small_core_target(compartments_per_core=4, output_axons_per_core=5)
    with pytest.raises(TargetError, match="layer 'a' needs 10 output axons per core, the target allows 5"):
        tgt.map(two_layer(8, 40))


def test_network_too_large_for_the_allowed_chips():
    g = dense_net(2, 129 * 1024)                                  # 129 cores of 1024 neurons
    with pytest.raises(TargetError, match=r"layer 'n' needs 129 cores in total \(1 chip\(s\) of 128\), "
                                          r"the target allows 128; 2 chips hold it: set the option chips "
                                          r"\(--config with options: \{chips: 2\}\)$"):
        Loihi1Target(options={"chips": 1}).map(g)
    pl = Loihi1Target(options={"chips": 2}).map(g).placement
    assert pl.chips == 2 and pl.coords[128].tolist() == [8, 0]   # second chip continues east-west


def test_distinct_equals_numpy_unique_on_both_paths():
    """The bitmap path (dense key space) and the sorting path (sparse) both return np.unique's answer."""
    from hwmodels.loihi.partition import distinct

    rng = np.random.default_rng(0)
    dense = rng.integers(0, 5000, 20000)
    sparse = rng.integers(0, 1 << 40, 3000)
    for keys, space in ((dense, 5000), (sparse, 1 << 40), (dense[:0], 10)):
        np.testing.assert_array_equal(distinct(keys, space), np.unique(keys))


def test_placement_of_a_split_conv_network_equals_one_counted_synapse_by_synapse():
    """Cores' input and output axons and synaptic memory, and each neuron's messages and hops, equal
    those counted from every synapse listed one by one, on a conv network (stride, a max-pool relay,
    two paths from one population into another) split over many cores and tiles."""
    rng = np.random.default_rng(3)
    g = ir.Graph((2, 10, 10), [
        ir.Conv2d("c1", ["input"], weight=rng.integers(-2, 3, (6, 2, 3, 3)).astype(np.float32), padding=1),
        ir.LIF("l1", ["c1"], reset="zero"),
        ir.Pool2d("p1", ["l1"], mode="max", kernel_size=2, stride=2),
        ir.Conv2d("c2", ["p1"], weight=rng.integers(-2, 3, (4, 6, 3, 3)).astype(np.float32), stride=2, padding=1),
        ir.Conv2d("c3", ["p1"], weight=rng.integers(-2, 3, (4, 6, 3, 3)).astype(np.float32), stride=2, padding=1),
        ir.Add("sum", ["c2", "c3"]),
        ir.LIF("l2", ["sum"], reset="zero"),
        ir.Flatten("f", ["l2"]),
        ir.Linear("fc", ["f"], weight=rng.normal(0, 1, (5, 36)).astype(np.float32)),
        ir.LIF("o", ["fc"], reset="zero"),
    ], timesteps=2, encoding="rate")
    tgt = small_core_target(compartments_per_core=7, input_axons_per_core=90, output_axons_per_core=40,
                            mesh_tiles_x=3)
    m = tgt.map(g)
    net, pl = m.network, m.placement
    assert pl.cores > 40 and pl.tiles > 3
    in_axons, out_axons, mem = np.zeros(pl.cores, int), np.zeros(pl.cores, int), np.zeros(pl.cores)
    for source in dict.fromkeys(c.source for c in net.connections):
        pairs = set()
        for c in net.outgoing(source):
            src, dst = synapse_pairs(net, c)
            pairs |= set(zip(src.tolist(), pl.core_of[c.target][dst].tolist(), strict=True))
        src, core = (np.array(v) for v in zip(*sorted(pairs), strict=True))
        n_src = int(np.prod(net.shape_of(source)))
        np.testing.assert_array_equal(pl.messages[source], np.bincount(src, minlength=n_src))
        in_axons += np.bincount(core, minlength=pl.cores)
        if source != INPUT:
            home = pl.coords[pl.core_of[source][src]]
            d = np.abs(pl.coords[core] - home)
            np.testing.assert_array_equal(pl.hops_ew[source], np.bincount(src, weights=d[:, 0], minlength=n_src))
            np.testing.assert_array_equal(pl.hops_ns[source], np.bincount(src, weights=d[:, 1], minlength=n_src))
            out_axons += np.bincount(pl.core_of[source][src], minlength=pl.cores)
    for c in net.connections:
        _, dst = synapse_pairs(net, c)
        mem += np.bincount(pl.core_of[c.target][dst], minlength=pl.cores) * c.num_weight_bits / 8
    assert [pc["in_axons"] for pc in pl.per_core] == in_axons.tolist()
    assert [pc["out_axons"] for pc in pl.per_core] == out_axons.tolist()
    np.testing.assert_allclose([pc["syn_bytes"] for pc in pl.per_core], mem)
    assert max(in_axons) <= 90 and max(out_axons) <= 40
