"""Core partitioning: per-core limits, splitting, hops on the tile mesh, chips, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.errors import TargetError
from hwmodels.loihi import Loihi1Target, Loihi2Target
from hwmodels.loihi.partition import synapse_pairs
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


def test_conv_synapses_match_an_independent_dense_probe(shipped_graph):
    net = Loihi1Target().map(shipped_graph).network
    conv = net.connections[1]
    c_in, h, w = net.shape_of(conv.source)
    eye = torch.eye(c_in * h * w, dtype=torch.float64).reshape(-1, c_in, h, w)
    dense = F.conv2d(eye, torch.from_numpy(conv.weight).double(), None, conv.stride, conv.padding).reshape(
        c_in * h * w, -1).T.numpy()
    src, dst = synapse_pairs(net, conv)
    expect_dst, expect_src = np.nonzero(dense)
    assert sorted(zip(src.tolist(), dst.tolist(), strict=True)) == sorted(
        zip(expect_src.tolist(), expect_dst.tolist(), strict=True))


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
                                          r"the target allows 128"):
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
