"""Every malformed model input ends in one ModelError line naming the problem, and writes nothing."""

from __future__ import annotations

import copy
import math

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet, build
from deploy.core.neurons import LIF
from deploy.io import native
from deploy.io.loader import load_model
from deploy.io.nir_io import write_nir

torch.set_num_threads(1)
SPEC = {"input_shape": [1, 6, 6], "timesteps": 4, "layers": [
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3}, {"type": "lif", "beta": 0.9},
    {"type": "flatten"}, {"type": "linear", "out_features": 4}, {"type": "lif"}]}


@pytest.fixture()
def good(tmp_path):
    """A valid small checkpoint and its loaded document."""
    path = native.save(build(SPEC).to_graph(), tmp_path / "good.pt")
    return path, torch.load(path, weights_only=True)


def edited(tmp_path, doc, edit, name="bad.pt"):
    doc = copy.deepcopy(doc)
    edit(doc)
    torch.save(doc, tmp_path / name)
    return tmp_path / name


def set_tensor(key, value):
    return lambda d: d["state_dict"].__setitem__(key, value)


def raw_bytes(tmp_path, good_path, kind):
    data = good_path.read_bytes()
    body = {"random": np.random.default_rng(0).bytes(4096), "truncated": data[: len(data) // 2],
            "empty": b""}[kind]
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(body)
    return path


CASES = {
    "random bytes": (lambda t, g, d: raw_bytes(t, g, "random"), "not a readable checkpoint"),
    "truncated": (lambda t, g, d: raw_bytes(t, g, "truncated"), "truncated or corrupt"),
    "empty file": (lambda t, g, d: raw_bytes(t, g, "empty"), "truncated or corrupt"),
    "wrong format key": (lambda t, g, d: edited(t, d, lambda x: x.__setitem__("format", "keras")),
                         "format key is 'keras', expected 'neurodeploy-snn'"),
    "wrong version": (lambda t, g, d: edited(t, d, lambda x: x.__setitem__("version", 99)),
                      "format version 99 is not supported"),
    "missing arch": (lambda t, g, d: edited(t, d, lambda x: x.pop("arch")), "checkpoint is missing 'arch'"),
    "missing tensor": (lambda t, g, d: edited(t, d, lambda x: x["state_dict"].pop("linear3.weight")),
                       "layer 'linear3': missing tensor 'linear3.weight'"),
    "shape mismatch": (lambda t, g, d: edited(t, d, set_tensor("linear3.weight", torch.zeros(4, 50))),
                       "layer 'linear3': weight expects 50 inputs, got shape (48,)"),
    "nan weight": (lambda t, g, d: edited(t, d, set_tensor("conv2d0.weight", torch.full((3, 1, 3, 3), math.nan))),
                   "layer 'conv2d0': weight contains NaN or inf"),
    "inf bias": (lambda t, g, d: edited(t, d, set_tensor("linear3.bias", torch.tensor([0, math.inf, 0, 0.]))),
                 "layer 'linear3': bias contains NaN or inf"),
    "unknown layer": (lambda t, g, d: edited(t, d, lambda x: x["arch"]["layers"][2].__setitem__("type", "lstm")),
                      "layer 'flatten2': unknown layer type 'lstm'"),
    "bad neuron": (lambda t, g, d: edited(t, d, lambda x: x["arch"]["layers"][1].__setitem__("beta", 1.5)),
                   "layer 'lif1': beta must lie in [0, 1]"),
    "non-dict list": (lambda t, g, d: _save(t, [1, 2, 3]), "not a neurodeploy-snn checkpoint (found list"),
    "non-dict tensor": (lambda t, g, d: _save(t, torch.zeros(3)), "not a neurodeploy-snn checkpoint (found Tensor"),
    "bare state_dict": (lambda t, g, d: _save(t, {"0.weight": torch.zeros(2, 2)}), "a bare state_dict has no architecture"),
    "pickle without trust": (lambda t, g, d: _save(t, build(SPEC)), "pass --trust-pickle"),
    "directory": (lambda t, g, d: _mkdir(t / "model.pt"), "is a directory"),
    "missing file": (lambda t, g, d: t / "nope.pt", "nope.pt: no such file"),
    "unknown suffix": (lambda t, g, d: _write(t / "model.txt", b"hello"), "unknown model format"),
    "nir random bytes": (lambda t, g, d: _write(t / "m.nir", np.random.default_rng(1).bytes(999)),
                         "not a readable NIR file"),
    "hdf5 not nir": (lambda t, g, d: _h5(t / "m.h5"), "not a readable NIR file"),
}


def _save(tmp_path, obj):
    torch.save(obj, tmp_path / "obj.pt")
    return tmp_path / "obj.pt"


def _mkdir(path):
    path.mkdir()
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


def _h5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clean_line(case, tmp_path, good):
    make, message = CASES[case]
    path = make(tmp_path, *good)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ModelError) as exc:
        load_model(path)
    text = str(exc.value)
    assert message in text, text
    assert "\n" not in text and len(text) < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_pickle_loads_with_trust_flag(tmp_path):
    net = build(SPEC, seed=4)
    seq = nn.Sequential(nn.Linear(5, 6), LIF(beta=0.8, threshold=0.5), nn.Linear(6, 2), LIF(reset="zero"))
    torch.save(net, tmp_path / "net.pt")
    torch.save(seq, tmp_path / "seq.pt")
    for path in (tmp_path / "net.pt", tmp_path / "seq.pt"):
        with pytest.raises(ModelError, match="--trust-pickle"):
            load_model(path)
    g = load_model(tmp_path / "net.pt", trust_pickle=True)
    x = torch.rand(8, 1, 6, 6)
    with torch.no_grad():
        assert torch.equal(SpikingNet(g)(x), net(x))
    g2 = load_model(tmp_path / "seq.pt", trust_pickle=True, timesteps=5)
    assert [n.kind for n in g2.nodes] == ["linear", "lif", "linear", "lif"] and g2.timesteps == 5
    assert g2["3"].reset == "zero" and g2["1"].beta == pytest.approx(0.8)
    # trust does not bypass validation of a native checkpoint
    doc = torch.load(native.save(g, tmp_path / "g.pt"), weights_only=True)
    doc["state_dict"]["linear3.weight"][0, 0] = math.nan
    torch.save(doc, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match="weight contains NaN"):
        load_model(tmp_path / "nan.pt", trust_pickle=True)


def test_weights_only_for_factories_and_failed_writes_leave_nothing(tmp_path, good):
    with pytest.raises(ModelError, match="--weights applies only to a file.py:factory"):
        load_model(good[0], weights=str(good[0]))
    bad = build({"input_shape": [1, 4, 4], "layers": [{"type": "pool2d", "mode": "max"}, {"type": "flatten"},
                                                      {"type": "linear", "out_features": 2}]}).to_graph()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ModelError, match="NIR has no max pooling"):
        write_nir(bad, tmp_path / "out.nir")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
