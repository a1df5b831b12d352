"""examples/bring_your_own/snntorch_class.py: the float reference of the user's snnTorch class,
compiled through the CLI from the files the script writes, equals snnTorch's own run on them.

The reference here is snnTorch itself: the written model file and state_dict are loaded the way
a snnTorch user loads them and run on the written test file, independently of the script.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.cli import main

pytest.importorskip("snntorch", reason="snntorch is not installed (pip install snntorch==1.0.0)")
torch.set_num_threads(1)
SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "bring_your_own" / "snntorch_class.py"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_snntorch_class_script_float_reference_equals_snntorch(tmp_path, capsys):
    out = tmp_path / "byo"
    script = _module(SCRIPT, "byo_snntorch_class")
    results = script.main(["--epochs", "1", "--quick", "--no-compile", "--out", str(out)])
    assert {p.name for p in out.iterdir()} >= {"snn_class.py", "state.pt", "test.npz", "results.json"}

    # snnTorch's own run of the written files, sample by sample
    net = _module(out / "snn_class.py", "byo_user_net").build()
    net.load_state_dict(torch.load(out / "state.pt", weights_only=True))
    net.eval()
    with np.load(out / "test.npz") as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    with torch.no_grad():
        spk, _ = net(x)
    pred = spk.sum(0).argmax(1)
    correct = int((pred == y).sum())
    assert x.shape == (360, 64) and correct == results["source"]["correct"]
    assert correct > 0.6 * len(y), f"one epoch should already train the class: {correct}/{len(y)}"
    assert len(set(pred.tolist())) > 5  # predictions are not one class: equality below means something

    report_dir = tmp_path / "report"
    args = ["compile", f"{out}/snn_class.py:build", "--weights", str(out / "state.pt"), "--data",
            str(out / "test.npz"), "--target", "digital", "--no-figures", "-o", str(report_dir)]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((report_dir / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["samples"] == len(y) and acc["sha256"] == hashlib.sha256((out / "test.npz").read_bytes()).hexdigest()
    assert round(acc["reference"] * len(y)) == correct  # equal to the sample
    assert report["model"]["timesteps"] == 10  # the loop's count in the user's file

    # the same count of output-layer spikes as snnTorch (reset_delay=True followed, not reset to zero)
    lif2 = next(layer for layer in report["layers"] if layer["name"] == "lif2")
    assert lif2["spike_rate"] * 10 * 10 == pytest.approx(float(spk.sum()) / len(y), rel=1e-9)
