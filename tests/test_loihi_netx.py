"""netx HDF5 export: layout, round trip through the reference, refusals that leave nothing behind."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from deploy.errors import TargetError
from deploy.io import native
from hwmodels.loihi import Loihi1Target, netx, reference
from hwmodels.loihi.network import encode_input


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

    from hwmodels.loihi.cli import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)                              # keep typer in multi-command mode
    out = tmp_path / "digits.net"
    res = CliRunner().invoke(app, ["netx", str(shipped_path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(netx.read(out).populations) == 4
    res = CliRunner().invoke(app, ["netx", str(shipped_path.parent / "digits_resnet_snn.pt"),
                                   "-o", str(tmp_path / "res.net")])
    assert isinstance(res.exception, TargetError) and not (tmp_path / "res.net").exists()
