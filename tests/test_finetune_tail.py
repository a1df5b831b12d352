"""The ``--tail`` stage of hardware-aware retraining: the last layers trained jointly on the
target's own spikes, early-stopped on held-out samples; continuing from a retrained checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.core import data
from deploy.core.errors import DeployError
from deploy.io import native
from deploy.training.finetune import _tail_nodes, finetune, fit_tail
from hwmodels.imc import ImcTarget

MODELS = Path(__file__).resolve().parents[1] / "examples" / "models"


@pytest.fixture(scope="module")
def digits():
    split = data.load("digits")
    return split.x_train[:240], split.y_train[:240]


def test_tail_keeps_the_best_held_out_epoch_and_the_simulator_agrees(digits):
    """The digits CNN on the 1-bit crossbar: training its last two layers lifts the held-out
    accuracy far above the calibrated start, and the exported graph, run by the target's own
    simulator (int8 sense-amplifier path, not the trainable forward), scores exactly the
    recorded held-out accuracy of the epoch kept."""
    torch.manual_seed(0)
    x, y = digits
    tgt = ImcTarget()
    net = tgt.trainable(native.load(MODELS / "digits_snn.pt"), noise=False, learn_steps=True, learn_scales=True)
    net.set_resolution(1)
    with torch.no_grad():
        net.calibrate(x[:64])
    rec = fit_tail(net, x, y, layers=2, epochs=4, batch_size=32, held_out=0.25, seed=0)
    assert rec["layers"] == ["conv2d4", "linear7"] and rec["samples"] == 180 and rec["held_out"] == 60
    start = rec["history"][0]["held_out_acc"]
    assert rec["held_out_acc"] == max(h["held_out_acc"] for h in rec["history"])
    assert rec["held_out_acc"] >= start + 0.3, rec["history"]
    graph = tgt.export_trained(net)
    act = tgt.simulate(tgt.map(graph), x[-60:], batch_size=60)
    assert float((act.predictions == y[-60:]).float().mean()) == pytest.approx(rec["held_out_acc"])


def test_tail_block_needs_one_input():
    """A block whose skip connection reads a value from before it is refused in one line;
    a block that starts at the skip's source is accepted."""
    graph = native.load(MODELS / "digits_resnet_snn.pt")
    start, block = _tail_nodes(graph, 4)                     # down .. fc: the skip reads down_lif, inside
    assert start == "res1_out" and block[0].name == "down"
    with pytest.raises(DeployError, match="also reads 'stem_lif'"):
        _tail_nodes(graph, 5)                                # res1_conv2 .. fc: res1_add reads stem_lif
    with pytest.raises(DeployError, match=r"--tail must be 1\.\.7"):
        _tail_nodes(graph, 8)


def test_continued_retraining_keeps_the_learned_steps(digits):
    """A checkpoint retrained for imc is continued from its learned conversion steps: with the
    last layer trained alone, every other layer's steps and trims are those of the input
    (calibration, which runs on a graph without them, would change them)."""
    x, y = digits
    tgt = ImcTarget()
    tuned = native.load(MODELS / "digits_snn_imc.pt")
    assert tgt.retrained(tuned) and not tgt.retrained(native.load(MODELS / "digits_snn.pt"))
    split = data.Split("digits", x, y, x[:16], y[:16])
    out, history = finetune(tuned, tgt, split, epochs=0, tail_layers=1, tail_epochs=1, batch_size=32)
    assert history == [] and out.meta["tail"]["layers"] == ["linear7"]
    before, after = tuned.meta["imc"], out.meta["imc"]
    for name in ("conv2d0", "conv2d2", "conv2d4"):
        assert after["steps"][name] == pytest.approx(before["steps"][name], rel=1e-6)
        assert after["trims"][name] == pytest.approx(before["trims"][name], abs=1e-6)
    fresh = tuned.copy()
    del fresh.meta["imc"]
    assert not tgt.retrained(fresh)
    recal, _ = finetune(fresh, tgt, split, epochs=0, tail_layers=1, tail_epochs=1, batch_size=32)
    assert not np.allclose(recal.meta["imc"]["steps"]["conv2d2"], before["steps"]["conv2d2"], rtol=1e-3)


def test_cli_tail_alone_records_it_and_refuses_a_bad_block(tmp_path, capsys):
    from deploy.cli.main import main

    out = tmp_path / "t.pt"
    args = ["finetune", str(MODELS / "digits_snn_imc.pt"), "--target", "imc", "--train-samples", "64",
            "--test-samples", "16", "-o", str(out)]
    assert main(args + ["--epochs", "0", "--tail", "2", "--tail-epochs", "1"]) == 0
    meta = native.read_checkpoint(out)["meta"]
    assert meta["tail_layers"] == 2 and meta["init"]["model"].endswith("digits_snn_imc.pt")
    assert meta["init"]["epochs"] == 25                      # how the input was retrained
    assert native.load(out).meta["tail"]["layers"] == ["conv2d4", "linear7"]
    out.unlink()
    assert main(args + ["--epochs", "0", "--tail", "9"]) != 0
    err = capsys.readouterr().err
    assert "--tail must be 1..4" in err and not out.exists()
