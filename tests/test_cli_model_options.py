"""``--dt``, ``--encoding`` and ``--timesteps`` on every command that loads a model."""

from __future__ import annotations

import json
import warnings

import nir
import numpy as np
import pytest
import torch

from deploy.cli import main
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.io.nir_io import write_nir

# command -> arguments that make it runnable up to option checking (OUT is replaced by an output path)
COMMANDS = {
    "compile": ["MODEL", "-o", "OUT"],
    "inspect": ["MODEL"],
    "export": ["MODEL", "-f", "native", "-o", "OUT"],
    "netx": ["MODEL", "-o", "OUT"],
    "quantize": ["MODEL", "-o", "OUT"],
    "finetune": ["MODEL", "-o", "OUT"],
    "distill": ["MODEL", "--student", "student.yaml", "-o", "OUT"],
    "convert": ["ANN", "-o", "OUT"],
}
BAD = {"--dt": ["0", "-1e-3", "nan"], "--encoding": ["spikes"], "--timesteps": ["0"]}
#: convert takes an ANN, which has no time step: it has --encoding and --timesteps only
OPTIONS = {cmd: ("--encoding", "--timesteps") if cmd == "convert" else ("--dt", "--encoding", "--timesteps")
           for cmd in COMMANDS}


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_shows_the_options(cmd, capsys):
    code, out, _ = run([cmd, "--help"], capsys)
    assert code == 0
    for opt in OPTIONS[cmd]:
        assert opt in out, f"{cmd} --help lacks {opt}"


@pytest.mark.parametrize("cmd, opt, value", [(c, o, v) for c in COMMANDS for o in OPTIONS[c] for v in BAD[o]])
def test_bad_value_exits_2_and_writes_nothing(cmd, opt, value, shipped_path, tmp_path, capsys):
    out = tmp_path / ("out.pt" if cmd in ("finetune", "distill", "convert", "export") else "out")
    model = shipped_path.with_name("digits_ann.pt") if cmd == "convert" else shipped_path
    args = [str(model) if a in ("MODEL", "ANN") else str(out) if a == "OUT" else a for a in COMMANDS[cmd]]
    code, _, err = run([cmd, *args, opt, value], capsys)
    assert code == 2, err
    assert err.startswith("error:") and err.count("\n") == 1 and opt in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def lif_graph(input_shape=(6,), encoding="direct", timesteps=8):
    conv = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "lif", "beta": 0.9},
            {"type": "flatten"}] if len(input_shape) == 3 else []
    layers = [*conv, {"type": "linear", "out_features": 5}, {"type": "lif", "beta": 0.9, "threshold": 0.2}]
    return build({"input_shape": list(input_shape), "timesteps": timesteps, "encoding": encoding,
                  "layers": layers}, seed=2).to_graph()


def nir_without_dt(graph, path, dt):
    """A NIR file of ``graph`` written with step ``dt`` but, like other tools' files, no dt in it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        write_nir(graph, path, dt=dt)
    g = nir.read(path, type_check=False)
    assert g.metadata.pop("dt") == pytest.approx(dt)
    nir.write(path, g)
    return path


@pytest.mark.parametrize("dt, beta", [(1e-3, 0.9), (2e-3, 0.8)])   # beta = 1 - dt/tau, tau = 1e-3/(1 - 0.9)
def test_dt_reaches_a_nir_import(dt, beta, tmp_path, capsys):
    graph = lif_graph()
    path = nir_without_dt(graph, tmp_path / "m.nir", 1e-3)
    code, _, err = run(["export", path, "-f", "native", "-o", tmp_path / "back.pt", "--dt", dt], capsys)
    assert code == 0, err
    back = native.load(tmp_path / "back.pt")
    lif = [n for n in back.nodes if n.kind == "lif"][0]
    assert float(np.asarray(lif.beta).ravel()[0]) == pytest.approx(beta, rel=1e-5)
    assert back.meta.get("nir_dt", dt) == pytest.approx(dt)


def test_python_api_takes_the_same_keywords(tmp_path):
    import deploy

    path = nir_without_dt(lif_graph(), tmp_path / "m.nir", 1e-3)
    g = deploy.load_model(path, dt=2e-3, encoding="rate", timesteps=5)
    assert (g.encoding, g.timesteps) == ("rate", 5)
    assert float(np.asarray([n for n in g.nodes if n.kind == "lif"][0].beta).ravel()[0]) == pytest.approx(0.8)
    rep = deploy.compile(path, dt=1e-3, encoding="latency", timesteps=4, data=None)
    assert (rep.model.encoding, rep.model.timesteps) == ("latency", 4)


def test_dt_on_a_native_model_is_an_error(shipped_path, tmp_path, capsys):
    code, _, err = run(["compile", shipped_path, "--dt", "1e-3", "-o", tmp_path / "r"], capsys)
    assert code == 2 and "NIR" in err and not (tmp_path / "r").exists()


def test_inspect_shows_overridden_timesteps_and_encoding(shipped_path, capsys):
    code, out, err = run(["inspect", shipped_path, "--timesteps", "5", "--encoding", "rate"], capsys)
    assert code == 0, err
    assert "T=5" in out and "rate encoding" in out


def frames(n=16, t=6, size=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, 2, size, size, generator=g) < 0.3).float(), torch.arange(n) % 5


def test_encoding_events_lets_a_2ch_model_take_event_frames(tmp_path, capsys):
    graph = lif_graph((2, 10, 10), encoding="rate", timesteps=6)
    native.save(graph, tmp_path / "m.pt")
    x, y = frames()
    np.savez(tmp_path / "f.npz", x=x.numpy(), y=y.numpy())
    args = ["compile", tmp_path / "m.pt", "--data", tmp_path / "f.npz", "--no-figures", "-o", tmp_path / "r"]
    code, _, err = run(args, capsys)
    assert code == 2 and "--encoding events" in err and not (tmp_path / "r").exists()
    code, _, err = run([*args, "--encoding", "events"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["model"]["encoding"] == "events"
    graph.encoding = "events"
    with torch.no_grad():
        pred = SpikingNet(graph).predict(x)
    assert doc["accuracy"]["reference"] == pytest.approx(float((pred == y).float().mean()))


def test_data_events_on_a_nir_event_cnn_needs_no_flags(tmp_path, capsys):
    graph = lif_graph((2, 12, 12), encoding="direct", timesteps=4)
    path = nir_without_dt(graph, tmp_path / "cnn.nir", 1e-3)
    code, _, err = run(["compile", path, "--dt", "1e-3", "--data", "events", "--samples", "8", "--no-figures",
                        "-o", tmp_path / "r"], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["model"]["encoding"] == "events" and doc["accuracy"]["samples"] == 8
    # an explicit non-event encoding is kept, so the event frames do not fit
    code, _, err = run(["compile", path, "--dt", "1e-3", "--data", "events", "--encoding", "direct",
                        "-o", tmp_path / "r2"], capsys)
    assert code == 2 and "--encoding events" in err and not (tmp_path / "r2").exists()
