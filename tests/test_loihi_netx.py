"""netx HDF5 export: layout, round trip through the reference, refusals that leave nothing behind."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from deploy.core.errors import TargetError
from deploy.io import native
from hwmodels.loihi import Loihi1Target, netx, reference
from hwmodels.loihi.network import INPUT, Connection, LoihiNetwork, Population, encode_input


@pytest.fixture(scope="module")
def netx_mapping(shipped_graph):
    return Loihi1Target(options={"netx": True}).map(shipped_graph)


def test_layout_follows_netx(netx_mapping, tmp_path):
    path = netx.export(netx_mapping.network, tmp_path / "digits.net")
    with h5py.File(path, "r") as f:
        attrs = []
        f.visititems(lambda name, obj: attrs.extend(obj.attrs.keys()))
        assert not attrs and not f.attrs.keys()                       # datasets only
        types = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "conv", "flatten", "dense"]
        assert f["layer/0/shape"][()].tolist() == [1, 8, 8]
        assert "neuron" not in f["layer/0"]                           # x_q goes straight to layer 1
        assert f["layer/1/shape"][()].tolist() == [16, 8, 8]           # (C, H, W)
        conv = f["layer/2"]
        assert conv["weight"].dtype == np.float32 and conv["weight"].shape == (32, 16, 3, 3)
        assert conv["stride"][()].tolist() == [2, 2] and conv["padding"][()].tolist() == [1, 1]
        dense = f["layer/5"]
        w = dense["weight"][()]
        assert w.dtype == np.float32 and w.shape == (10, 128)
        assert np.all(w == np.round(w)) and np.all(w % 2 == 0) and w.min() >= -256 and w.max() <= 254
        n = dense["neuron"]
        pop = netx_mapping.network.populations[-1]
        assert n["type"][()].decode() == "CUBA"
        assert n["iDecay"][()] == pop.du + 1 and n["vDecay"][()] == pop.dv and n["vThMant"][()] == pop.vth
        assert {"refDelay", "gradedSpike"} <= set(n.keys())


def test_round_trip_runs_with_the_same_spikes(netx_mapping, tmp_path, digits_split):
    path = netx.export(netx_mapping.network, tmp_path / "digits.net")
    back = netx.read(path)
    net = netx_mapping.network
    xq = encode_input(net, digits_split.x_test[:40])
    a, b = reference.run(net, xq), reference.run(back, xq)
    assert len(back.populations) == len(net.populations)
    for p, q in zip(net.populations, back.populations, strict=True):
        assert torch.equal(a[p.name], b[q.name])
    assert back.steps == net.steps and back.input_scale == net.input_scale


def test_refusals_write_nothing(shipped_graph, shipped_path, tmp_path):
    default = Loihi1Target().map(shipped_graph).network               # dense weight exponent != 0
    out = tmp_path / "x.net"
    with pytest.raises(TargetError, match="layer 'linear7': dense weight exponent .* netx=True"):
        netx.export(default, out)
    resnet = native.load(shipped_path.parent / "digits_resnet_snn.pt")
    with pytest.raises(TargetError, match="layer 'res1_out': netx describes a plain chain"):
        netx.export(Loihi1Target(options={"netx": True}).map(resnet).network, out)
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("not hdf5")
    with pytest.raises(TargetError, match="not an HDF5 file"):
        netx.read(bad)
    with pytest.raises(TargetError, match="no such file"):
        netx.read(tmp_path / "missing.net")


def test_netx_command(tmp_path, shipped_path):
    import typer
    from typer.testing import CliRunner

    from deploy.cli.netx import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)                              # keep typer in multi-command mode
    out = tmp_path / "digits.net"
    res = CliRunner().invoke(app, ["netx", str(shipped_path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(netx.read(out).populations) == 4
    mlp = shipped_path.parent / "digits_mlp.pt"               # graded input, first dense layer
    res = CliRunner().invoke(app, ["netx", str(mlp), "-o", str(tmp_path / "mlp.net")])
    assert res.exit_code == 0, res.output
    assert "input_message_bits=8" in res.output
    res = CliRunner().invoke(app, ["netx", str(shipped_path.parent / "digits_resnet_snn.pt"),
                                   "-o", str(tmp_path / "res.net")])
    assert isinstance(res.exception, TargetError) and not (tmp_path / "res.net").exists()


def test_netx_mapping_of_the_mlp_has_integer_dense_weights_and_round_trips(shipped_path, digits_split, tmp_path):
    graph = native.load(shipped_path.parent / "digits_mlp.pt")
    default = Loihi1Target().map(graph).network
    assert any(c.weight_exp < 0 for c in default.connections)          # why netx refused it before
    net = Loihi1Target(options={"netx": True}).map(graph).network
    assert [c.weight_exp for c in net.connections] == [0, 0]
    path = netx.export(net, tmp_path / "mlp.net")
    with h5py.File(path, "r") as f:
        for i, c in zip((1, 2), net.connections, strict=True):
            w = f[f"layer/{i}/weight"][()]
            assert np.array_equal(w, c.effective_weight()) and np.array_equal(netx.netx_dense_effective(w), w)
    xq = encode_input(net, digits_split.x_test[:30])
    a, b = reference.run(net, xq, timing="netx"), reference.run(netx.read(path), xq, timing="netx")
    for p, q in zip(net.populations, netx.read(path).populations, strict=True):
        assert torch.equal(a[p.name], b[q.name])
    assert int(a[net.output].sum()) > 0


def test_weight_format_mirror_by_hand():
    # mixed signs, max 5, min -3: scale min(127/5, 128/3) = 25.4 -> 4 bits + sign = 5; odd -> n = 0 - 1
    w, bits, exp = netx.netx_weight_bits(np.array([[-3, 5]]))
    assert w.tolist() == [[-96, 160]] and (bits, exp) == (8 - 5 + 1, -5)
    assert netx.netx_dense_effective(np.array([[-3, 5]])).tolist() == [[-3, 5]]
    # all negative, min -128: netx doubles to -256 (7 bits), Lava's inhibitory clip makes it -255 and
    # its truncation to 7 bits -254; the sum's shift by 1 then gives -127 per spike, not -128
    assert netx.netx_dense_effective(np.array([[-128, -3]])).tolist() == [[-127, -3]]


def _one_layer(weight: np.ndarray, bias: int, vth: int, start: int = 1) -> LoihiNetwork:
    n_out, n_in = weight.shape
    pop = Population("p", (n_out,), vth=vth, du=4095, dv=0, bias_mant=np.full(n_out, bias), bias_exp=6,
                     start=start)
    conn = Connection("fc", ["fc"], INPUT, "p", "dense", weight, (n_in,), (n_out,), sign_mode=3 if weight.max() <= 0
                      else 1)
    return LoihiNetwork((n_in,), 6, "rate", 1, [pop], [conn], "p")


def test_refuses_a_layer_netx_would_change(tmp_path):
    net = _one_layer(np.array([[-128, -3], [-64, -10]]), bias=0, vth=100)
    with pytest.raises(TargetError, match="layer 'fc': netx re-derives .* cannot be expressed exactly in netx"):
        netx.export(net, tmp_path / "x.net")
    loop = _one_layer(np.array([[4, -2], [2, 6]]), bias=0, vth=100)
    loop.connections.append(Connection("rec", ["rec"], "p", "p", "dense", np.array([[0, 2], [2, 0]]), (2,), (2,)))
    with pytest.raises(TargetError, match="layer 'p': recurrent connections are not exported"):
        netx.export(loop, tmp_path / "x.net")
    assert list(tmp_path.iterdir()) == []


def test_netx_timing_switches_biases_on_at_step_zero():
    # no input; the bias alone adds 64 * 7 to v per step (dv = 0: no leak), vth 20 -> 1280:
    # v crosses after 3 biased steps (1344 > 1280) and resets to 0, so every 3rd biased step spikes
    net = _one_layer(np.zeros((1, 2), np.int64) + 2, bias=7, vth=20, start=2)
    xq = torch.zeros(net.steps, 1, 2, dtype=torch.int64)
    layer = reference.run(net, xq)["p"][:, 0, 0].tolist()
    netx_ = reference.run(net, xq, timing="netx")["p"][:, 0, 0].tolist()
    assert net.steps == 8
    assert layer == [0, 0, 0, 0, 1, 0, 0, 1]          # bias from step 2: spikes at 2 + 2, 2 + 5
    assert netx_ == [0, 0, 1, 0, 0, 1, 0, 0]          # bias from step 0: spikes at 2, 5
    with pytest.raises(ValueError, match="timing"):
        reference.run(net, xq, timing="late")
