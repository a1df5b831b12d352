"""``deploy convert --data-free``: threshold balancing calibrated on class impressions synthesized
from the ANN alone (no training data), on a tiny synthesis budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import deploy
from deploy.core import data as datasets
from deploy.core.errors import DeployError
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.training import ann as annlib
from deploy.training.data_free import synthetic_calibration_set
from deploy.training.snn import evaluate

ROOT = Path(__file__).resolve().parents[1]
ANN = ROOT / "examples" / "models" / "digits_ann.pt"
#: the tiny budget of these tests: images per class, synthesis steps, timesteps
PER_CLASS, STEPS, T = 3, 20, 8


class _TestPartOnly(datasets.Split):
    """A split (a real :class:`Split`, so every consumer treats it as one) whose training part
    raises when read."""

    def __init__(self, split: datasets.Split) -> None:
        self.name, self.x_test, self.y_test = split.name, split.x_test, split.y_test

    @property
    def x_train(self) -> torch.Tensor:
        raise AssertionError("the training images were read")

    @property
    def y_train(self) -> torch.Tensor:
        raise AssertionError("the training labels were read")

    @property
    def classes(self) -> int:
        raise AssertionError("the class count was read from the training labels")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A data-free conversion run while the digits reader returns a split without a readable
    training part, and while the converter's calibration inputs are recorded."""
    from deploy.training import convert as conversion

    real_digits, real_convert = datasets.digits, conversion.convert
    seen: dict[str, object] = {}

    def spy(ann, **kw):
        seen.update(kw)
        return real_convert(ann, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(datasets, "digits", lambda seed=0: _TestPartOnly(real_digits(seed)))
    mp.setattr(conversion, "convert", spy)
    out = tmp_path_factory.mktemp("data_free") / "snn.pt"
    try:
        deploy.convert(str(ANN), out, data="digits", timesteps=T, data_free=True, per_class=PER_CLASS,
                       synthesis_steps=STEPS, progress=False)
    finally:
        mp.undo()
    return out, seen


def test_checkpoint_loads_compiles_and_its_accuracy_is_the_re_evaluated_one(guarded, digits_split):
    out, _ = guarded
    graph = native.load(out)
    meta = graph.meta
    assert meta["data_free"] is True and meta["per_class"] == PER_CLASS and meta["synthesis_steps"] == STEPS
    assert meta["calibration_samples"] == 10 * PER_CLASS and meta["dataset"] == "digits"
    s = digits_split
    # re-evaluated by the SNN loop with another batch size, and by the float reference of a compile
    assert evaluate(SpikingNet(graph), s.x_test, s.y_test, batch_size=64) == pytest.approx(meta["test_accuracy"])
    report = deploy.compile(str(out), target="digital", data="digits", progress=False)
    assert report.accuracy.samples == len(s.y_test)
    assert report.accuracy.reference == pytest.approx(meta["test_accuracy"])
    assert report.totals.energy_j > 0
    assert meta["test_accuracy"] > 0.8   # the synthetic calibration yields a working SNN, not chance (0.1)


def test_calibration_images_are_the_synthetic_ones_and_no_training_data_is_read(guarded, digits_split):
    # the conversion above ran with a training split that raises when read; here: what it calibrated on
    _, seen = guarded
    x, y = synthetic_calibration_set(annlib.load(ANN), per_class=PER_CLASS, steps=STEPS, seed=0)
    assert torch.equal(seen["data"], x) and seen["samples"] == len(x) == 10 * PER_CLASS
    assert torch.equal(y, torch.arange(10).repeat_interleave(PER_CLASS))
    # none of them is a digits image (train or test)
    real = torch.cat([digits_split.x_train, digits_split.x_test]).flatten(1)
    assert torch.cdist(x.flatten(1), real).min() > 0.5


def test_recipe_and_convert_share_the_synthesis():
    from deploy.training.recipes import private_snn

    ann = annlib.load(ANN)
    x, y = synthetic_calibration_set(ann, per_class=2, steps=5, seed=7)
    xr, yr = private_snn.class_impressions(ann, (1, 8, 8), 10, per_class=2, steps=5, seed=7)
    assert torch.equal(x, xr) and torch.equal(y, yr)


@pytest.mark.parametrize("args, message", [
    (["--data-free", "--method", "clip"], "method 'clip' takes no calibration data"),
    (["--data-free", "--samples", "100"], "--samples counts training images"),
    (["--data", "digits", "--per-class", "4"], "apply only with --data-free"),
    (["--data", "digits", "--synthesis-steps", "4"], "apply only with --data-free"),
    (["--data-free", "--per-class", "0"], "--per-class must be >= 1, got 0"),
    (["--data-free", "--synthesis-steps", "0"], "--synthesis-steps must be >= 1, got 0"),
    (["--data-free", "--data", "events"], "--data must be one of digits, mnist"),
])
def test_bad_combinations_are_one_line_errors(args, message, tmp_path, capsys):
    from deploy.cli import main

    out = tmp_path / "snn.pt"
    assert main(["convert", str(ANN), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


def test_an_ann_without_input_shape_or_with_tensor_data_is_refused(tmp_path, capsys):
    from deploy.cli import main

    pickled = tmp_path / "mlp.pt"
    torch.save(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)), pickled)
    out = tmp_path / "snn.pt"
    assert main(["convert", str(pickled), "--trust-pickle", "--data-free", "--synthesis-steps", "1",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "input shape is unknown" in err and err.strip().count("\n") == 0 and not out.exists()
    with pytest.raises(DeployError, match="only names the test split"):
        deploy.convert(str(ANN), data=torch.rand(4, 1, 8, 8), data_free=True)
