"""``--data PATH``: the user's own test set from .npz/.pt/.h5 files, event frames and tonic event lists."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import torch

from deploy import userdata
from deploy.cli import main
from deploy.core.errors import DataError
from deploy.core.net import SpikingNet, build
from deploy.io import native

N = 180  # digits test samples used by the round trips


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(fmt: str, path, x: np.ndarray, y: np.ndarray) -> None:
    if fmt == "npz":
        np.savez(path, x=x, y=y)
    elif fmt == "pt":
        torch.save((torch.from_numpy(x), torch.from_numpy(y)), path)
    else:
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = x, y


@pytest.fixture(scope="module")
def digits_report(shipped_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "rep"
    assert main(["compile", str(shipped_path), "--data", "digits", "--samples", str(N), "--no-figures",
                 "-o", str(out)]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("fmt", ["npz", "pt", "h5"])
def test_file_round_trip_equals_the_builtin_dataset(fmt, shipped_path, digits_split, digits_report, tmp_path,
                                                    capsys):
    path = tmp_path / f"digits.{fmt}"
    write(fmt, path, digits_split.x_test[:N].numpy(), digits_split.y_test[:N].numpy())
    out = tmp_path / "rep"
    code, stdout, err = run(["compile", shipped_path, "--data", path, "--no-figures", "-o", out], capsys)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    acc, ref = doc["accuracy"], digits_report["accuracy"]
    assert acc["samples"] == ref["samples"] == N
    assert (acc["deployed"], acc["reference"]) == (ref["deployed"], ref["reference"])
    assert doc["totals"]["spikes"] == digits_report["totals"]["spikes"]
    assert doc["totals"]["energy_j"] == digits_report["totals"]["energy_j"]
    assert acc["dataset"] == path.name and acc["file"] == str(path)
    assert acc["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name in stdout and path.name in (out / "report.md").read_text()


def test_python_api_takes_a_file_and_a_tuple(shipped_path, digits_split, tmp_path):
    import deploy

    x, y = digits_split.x_test[:40], digits_split.y_test[:40]
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    a = deploy.compile(shipped_path, data=str(tmp_path / "d.npz"))
    b = deploy.compile(shipped_path, data=(x, y))
    assert a.accuracy.samples == b.accuracy.samples == 40
    assert a.accuracy.deployed == b.accuracy.deployed and a.totals.spikes == b.totals.spikes
    assert a.accuracy.file is not None and b.accuracy.file is None


def event_model(encoding: str = "events", timesteps: int = 6):
    net = build({"input_shape": [2, 10, 10], "timesteps": timesteps, "encoding": encoding, "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "lif", "beta": 0.9, "threshold": 0.3}, {"type": "flatten"},
        {"type": "linear", "out_features": 5}, {"type": "lif", "beta": 0.9, "threshold": 0.2}]}, seed=1)
    g = net.to_graph()
    g.name = "ev"
    return g


def frames(n: int = 24, t: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, 2, 10, 10, generator=g) < 0.3).float(), torch.arange(n) % 5


def test_event_frames_file_on_an_events_model(tmp_path, capsys):
    graph = event_model("events")
    native.save(graph, tmp_path / "ev.pt")
    x, y = frames()
    np.savez(tmp_path / "frames.npz", x=x.numpy(), y=y.numpy())
    out = tmp_path / "rep"
    code, _, err = run(["compile", tmp_path / "ev.pt", "--data", tmp_path / "frames.npz", "--no-figures",
                        "-o", out], capsys)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    with torch.no_grad():  # second implementation: the float network run directly on the frames
        pred = SpikingNet(graph).predict(x)
    assert doc["accuracy"]["reference"] == pytest.approx(float((pred == y).float().mean()))
    assert doc["accuracy"]["samples"] == 24 and doc["model"]["encoding"] == "events"
    assert doc["totals"]["spikes"] > 0


def tonic_samples(n: int, size: int = 10, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    out = []
    for _ in range(n):
        k = int(rng.integers(50, 300))
        e = np.zeros(k, dt)
        e["x"], e["y"] = rng.integers(0, size, k), rng.integers(0, size, k)
        e["t"], e["p"] = rng.integers(0, 50_000, k), rng.integers(0, 2, k)   # unsorted on purpose
        out.append(e)
    return out


def hand_binned(e: np.ndarray, t_bins: int, size: int = 10) -> np.ndarray:
    """tonic's n_time_bins rule by hand: windows of (t_last - t_first) // T from t_first, counts per bin."""
    e = np.sort(e, order="t")
    width = (e["t"][-1] - e["t"][0]) // t_bins
    b = (e["t"] - e["t"][0]) // width
    keep = b < t_bins
    out = np.zeros((t_bins, 2, size, size))
    np.add.at(out, (b[keep], e["p"][keep], e["y"][keep], e["x"][keep]), 1)
    return out


def test_tonic_event_lists_bin_like_a_hand_count(tmp_path, capsys):
    samples = tonic_samples(4)
    path = userdata.save_events(tmp_path / "ev.npz", samples, [0, 1, 2, 3])
    data = userdata.read(path, timesteps=6, input_shape=(2, 10, 10))
    assert data.events and tuple(data.x.shape) == (4, 6, 2, 10, 10)
    for i, e in enumerate(samples):
        np.testing.assert_array_equal(data.x[i].numpy(), hand_binned(e, 6))
    # the same file through the CLI on a NIR-like direct model: event frames run as events
    native.save(event_model("direct"), tmp_path / "ev.pt")
    code, _, err = run(["compile", tmp_path / "ev.pt", "--data", path, "--no-figures", "-o", tmp_path / "r"],
                       capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["model"]["encoding"] == "events" and doc["accuracy"]["samples"] == 4


@pytest.mark.parametrize("x_shape, needle", [
    ((10, 3, 8, 8), "(10, 3, 8, 8)"),
    ((10, 4, 2, 8, 8), "(10, 4, 2, 8, 8)"),
])
def test_wrong_shape_exits_2_naming_both_shapes_and_writes_nothing(x_shape, needle, shipped_path, tmp_path,
                                                                  capsys):
    np.savez(tmp_path / "bad.npz", x=np.zeros(x_shape, np.float32), y=np.zeros(x_shape[0], np.int64))
    out = tmp_path / "rep"
    code, _, err = run(["compile", shipped_path, "--data", tmp_path / "bad.npz", "-o", out], capsys)
    assert code == 2 and not out.exists()
    line = err.strip()
    assert line.startswith("error:") and "\n" not in line
    assert needle in line and "(1, 8, 8)" in line and "axis 1 = time" in line


def test_frames_with_other_timesteps_name_the_time_axis(tmp_path, capsys):
    native.save(event_model("events", timesteps=6), tmp_path / "ev.pt")
    x, y = frames(t=4)
    np.savez(tmp_path / "f.npz", x=x.numpy(), y=y.numpy())
    code, _, err = run(["compile", tmp_path / "ev.pt", "--data", tmp_path / "f.npz", "-o", tmp_path / "r"], capsys)
    assert code == 2 and not (tmp_path / "r").exists()
    assert "4 time bins (axis 1)" in err and "--timesteps 4" in err


@pytest.mark.parametrize("case", ["no-y", "object", "labels", "length", "pickle", "nan"])
def test_bad_files_are_one_line_data_errors(case, tmp_path):
    path = tmp_path / ("d.pt" if case == "pickle" else "d.npz")
    x = np.zeros((4, 64), np.float32)
    if case == "no-y":
        np.savez(path, x=x)
    elif case == "object":
        np.savez(path, x=np.array([np.zeros(3), np.zeros(5)], dtype=object), y=np.zeros(2))
    elif case == "labels":
        np.savez(path, x=x, y=np.array([0, 1.5, 2, 3]))
    elif case == "length":
        np.savez(path, x=x, y=np.zeros(3, np.int64))
    elif case == "nan":
        np.savez(path, x=np.full((4, 64), np.nan, np.float32), y=np.zeros(4, np.int64))
    else:
        torch.save({"x": torch.zeros(4, 64), "y": [object()]}, path)
    with pytest.raises(DataError) as exc:
        userdata.read(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_fit_flattens_static_and_keeps_frames():
    x = torch.rand(5, 1, 8, 8)
    flat, enc = userdata.fit(x, (64,), 8, "direct")
    assert enc == "direct" and torch.equal(flat, x.reshape(5, 64))
    f = torch.rand(5, 8, 2, 4, 4)
    same, enc = userdata.fit(f, (2, 4, 4), 8, "direct")
    assert enc == "events" and same.shape == f.shape
    with pytest.raises(DataError, match="pass --encoding events"):
        userdata.fit(f, (2, 4, 4), 8, "direct", fixed_encoding=True)


def test_quantize_reads_a_data_file(shipped_path, digits_split, tmp_path):
    from deploy.api.quantize import load_split
    from deploy.io.loader import load_model

    x, y = digits_split.x_test[:30].numpy(), digits_split.y_test[:30].numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y, x_train=x[:10], y_train=y[:10])
    mlp = load_model(shipped_path.with_name("digits_mlp.pt"))
    split = load_split(str(tmp_path / "d.npz"), mlp, seed=0)
    assert split.name == "d.npz" and tuple(split.x_test.shape) == (30, *mlp.input_shape)
    np.testing.assert_array_equal(split.x_train.numpy(), x[:10].reshape(10, -1))
