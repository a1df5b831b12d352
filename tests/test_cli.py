"""End-to-end through the command line (in-process: ``deploy.cli.main``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from deploy.cli import main
from deploy.io import native
from deploy.report.schema import Report


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compile_writes_a_complete_valid_report(shipped_path, tmp_path, capsys):
    out = tmp_path / "rep"
    code, stdout, err = run(["compile", shipped_path, "--target", "digital", "--samples", "60", "-o", out], capsys)
    assert code == 0, err
    for name in ("report.json", "report.md", "report.html", "energy_latency.png", "spike_rates.png"):
        assert (out / name).is_file(), name
    rep = Report.load(out / "report.json")
    assert rep.accuracy.samples == 60 and rep.accuracy.deployed == rep.accuracy.reference  # float target
    assert rep.totals.energy_j == pytest.approx(sum(r.energy_j for r in rep.layers))
    assert rep.metrics.params == native.load(shipped_path).params()
    assert rep.target.spec and all("source" in c for c in rep.target.spec.values())
    assert "conv2d0" in stdout


def test_compile_compare_fills_ratios(shipped_path, tmp_path, capsys):
    out = tmp_path / "rep"
    code, _, err = run(["compile", shipped_path, "--samples", "20", "--compare", "digital", "-o", out,
                        "--no-figures"], capsys)
    assert code == 0, err
    doc = json.loads((out / "report.json").read_text())
    assert doc["comparison"]["ratios"] == {"energy": 1.0, "latency": 1.0, "memory": 1.0}


def test_compare_ratios_equal_the_ratio_of_two_reports(shipped_path, tmp_path):
    from deploy.pipeline import compile as run_compile
    from hwmodels import get_target

    cfg = tmp_path / "slow.yaml"
    cfg.write_text("constants:\n  pe_count: 8\n")
    slow = run_compile(shipped_path, target=get_target("digital", str(cfg)), samples=20, compare="digital")
    fast = run_compile(shipped_path, target="digital", samples=20)
    assert slow.comparison.ratios["latency"] == pytest.approx(fast.totals.latency_s / slow.totals.latency_s)
    assert slow.comparison.ratios["latency"] < 0.2          # 8 instead of 64 accumulate units
    # dynamic energy is the same; only leakage grows with the longer latency
    assert 0.99 < slow.comparison.ratios["energy"] < 1.0


def test_assumed_rate_mode_needs_no_data(shipped_path, tmp_path, capsys):
    out = tmp_path / "rep"
    code, _, err = run(["compile", shipped_path, "--data", "none", "--rate", "1", "-o", out, "--no-figures"], capsys)
    assert code == 0, err
    rep = Report.load(out / "report.json")
    assert rep.mode == "assumed-rate" and rep.accuracy is None
    assert rep.metrics.synops_dense == pytest.approx(rep.totals.synops)  # worst case: every op happens
    assert "worst case" in rep.assumptions[0]


def test_report_command_compares_two_reports(shipped_path, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(["compile", shipped_path, "--samples", "20", "-o", a, "--no-figures"], capsys)[0] == 0
    assert run(["compile", shipped_path, "--samples", "20", "--timesteps", "4", "-o", b, "--no-figures"],
               capsys)[0] == 0
    code, stdout, err = run(["report", a / "report.json", b / "report.json", "-o", tmp_path / "cmp"], capsys)
    assert code == 0, err
    assert (tmp_path / "cmp" / "comparison.md").is_file()


def test_targets_and_inspect(shipped_path, capsys):
    code, stdout, _ = run(["targets"], capsys)
    assert code == 0 and "digital" in stdout and "digital.yaml" in stdout
    code, stdout, _ = run(["inspect", shipped_path], capsys)
    assert code == 0 and "linear7" in stdout and "float32" in stdout


def _bad_files(shipped_path, tmp_path):
    """name -> path of a malformed model file."""
    doc = torch.load(shipped_path, weights_only=True)
    files = {}
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    files["random bytes"] = (tmp_path / "random.pt", "not a readable checkpoint")
    raw = shipped_path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    files["truncated"] = (tmp_path / "trunc.pt", "truncated or corrupt")

    def variant(name, edit, message):
        d = {**doc, "arch": json.loads(json.dumps(doc["arch"])), "state_dict": dict(doc["state_dict"])}
        edit(d)
        torch.save(d, tmp_path / f"{name}.pt")
        files[name] = (tmp_path / f"{name}.pt", message)

    variant("format", lambda d: d.update(format="other"), "format key is 'other'")
    variant("missing", lambda d: d["state_dict"].pop("linear7.weight"), "missing tensor 'linear7.weight'")
    variant("shape", lambda d: d["state_dict"].update({"linear7.weight": torch.zeros(10, 99)}),
            "layer 'linear7': weight expects 99 inputs")
    variant("nan", lambda d: d["state_dict"].update({"conv2d0.weight": d["state_dict"]["conv2d0.weight"] * np.nan}),
            "layer 'conv2d0': weight contains NaN or inf")
    variant("inf", lambda d: d["state_dict"].update({"conv2d0.bias": d["state_dict"]["conv2d0.bias"] + np.inf}),
            "layer 'conv2d0': bias contains NaN or inf")
    variant("unknown", lambda d: d["arch"]["layers"][1].update(type="dropout"), "unknown layer type 'dropout'")
    torch.save(torch.nn.Sequential(torch.nn.Linear(64, 10)), tmp_path / "pickled.pt")
    files["pickle"] = (tmp_path / "pickled.pt", "pass --trust-pickle")
    return files


def test_every_bad_model_is_one_clear_line_and_writes_nothing(shipped_path, tmp_path, capsys):
    for name, (path, message) in _bad_files(shipped_path, tmp_path).items():
        out = tmp_path / f"out-{name}"
        code, stdout, err = run(["compile", path, "-o", out], capsys)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in err + stdout
        assert not out.exists(), name


def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, _, err = run(["--debug", "compile", bad], capsys)
    assert code == 2 and "Traceback" in err


def test_bad_options_are_one_line(shipped_path, tmp_path, capsys):
    from deploy.core.data import mnist_dir

    mnist_error = ("do not fit model input" if (mnist_dir() / "t10k-images-idx3-ubyte.gz").exists()
                   else "MNIST files not found")
    for args, message in ((["--target", "tpu"], "unknown target 'tpu'"),
                          (["--data", "cifar"], "unknown dataset 'cifar'"),
                          (["--timesteps", "0"], "--timesteps must be >= 1"),
                          (["--samples", "0"], "--samples must be >= 1"),
                          (["--data", "mnist"], mnist_error)):
        code, _, err = run(["compile", shipped_path, "-o", tmp_path / "x", *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "x").exists()


def test_console_script_exit_code(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    proc = subprocess.run([sys.executable, "-m", "deploy.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


def test_a_nir_graph_built_with_the_nir_api_compiles(tmp_path, capsys):
    import nir

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.4, (32, 64)).astype(np.float32), rng.normal(0, 0.4, (10, 32)).astype(np.float32)
    lif = lambda n: nir.LIF(tau=np.full(n, 10.0), r=np.full(n, 10.0), v_leak=np.zeros(n),  # noqa: E731
                            v_threshold=np.ones(n), v_reset=np.zeros(n))
    g = nir.NIRGraph(nodes={"input": nir.Input({"input": np.array([64])}),
                            "fc1": nir.Affine(w1, np.zeros(32, np.float32)), "lif1": lif(32),
                            "fc2": nir.Affine(w2, np.zeros(10, np.float32)), "lif2": lif(10),
                            "output": nir.Output({"output": np.array([10])})},
                     edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
                            ("lif2", "output")])
    path = tmp_path / "net.nir"
    nir.write(path, g)
    code, stdout, err = run(["compile", path, "--samples", "30", "-o", tmp_path / "rep", "--no-figures"], capsys)
    assert code == 0, err
    rep = Report.load(tmp_path / "rep" / "report.json")
    assert [r.kind for r in rep.layers] == ["linear", "lif", "linear", "lif"]
    assert rep.metrics.params == 64 * 32 + 32 + 32 * 10 + 10
    assert rep.totals.spikes > 0


def test_export_round_trips_through_nir(shipped_path, tmp_path, capsys):
    code, _, err = run(["export", shipped_path, "--format", "nir", "-o", tmp_path / "m.nir"], capsys)
    assert code == 0, err
    from deploy.core.net import SpikingNet
    from deploy.io.loader import load_model

    x = torch.rand(4, 1, 8, 8)
    a, b = SpikingNet(native.load(shipped_path)), SpikingNet(load_model(tmp_path / "m.nir"))
    torch.testing.assert_close(a(x), b(x))
    code, _, err = run(["export", shipped_path, "--format", "tflite", "-o", tmp_path / "m.x"], capsys)
    assert code == 2 and "unknown export format 'tflite'" in err
