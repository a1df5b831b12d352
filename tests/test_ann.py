"""The one ANN module: compact specs with inferred input sizes, one neurodeploy-ann reader/writer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.errors import ModelError
from deploy.training import ann as annlib
from deploy.training.distill.teachers import load_teacher

SPEC = {"input_shape": [1, 8, 8], "name": "t", "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "pool2d", "mode": "avg", "kernel_size": 2}, {"type": "flatten"},
    {"type": "linear", "out_features": 10}]}


def _by_hand(model: annlib.ANN, x: torch.Tensor) -> torch.Tensor:
    conv, lin = model.conv2d0, model.linear4
    h = F.avg_pool2d(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1)), 2)
    return h.flatten(1) @ lin.weight.T + lin.bias


def test_spec_infers_input_sizes_and_names_layers():
    model = annlib.from_spec(SPEC, seed=0)
    assert list(model._modules) == ["conv2d0", "relu1", "pool2d2", "flatten3", "linear4"]
    assert model.conv2d0.in_channels == 1 and model.linear4.in_features == 4 * 4 * 4
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(model.eval()(x), _by_hand(model, x))
    logits, feats = model.forward_features(x)
    assert feats["pool2d2"].shape == (3, 4, 4, 4) and model.hint_layer() == "relu1"
    with pytest.raises(ModelError, match="ANN layer 'linear1': does not fit its input"):
        annlib.build([{"type": "flatten", "name": "f"}, {"type": "linear", "in_features": 7, "out_features": 2,
                                                         "name": "linear1"}], (1, 8, 8))


def test_round_trip_keeps_names_and_unnamed_models_stay_unnamed(tmp_path):
    model = annlib.from_spec(SPEC, seed=1).eval()
    back = annlib.load(annlib.save(model, tmp_path / "t.pt", meta={"note": "x"}))
    assert list(back._modules) == list(model._modules) and back.name == "t" and back.meta["note"] == "x"
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(back(x), model(x))
    plain = annlib.ANN([nn.Flatten(), nn.Linear(64, 3)], (1, 8, 8))
    assert all("name" not in d for d in annlib.arch_of(plain))


def test_reads_documents_of_the_earlier_teacher_class(tmp_path):
    """Teachers used to be a ModuleDict under ``layers`` with resolved, named layer dicts."""
    ref = annlib.from_spec(SPEC, seed=2).eval()
    arch = [{"type": "conv2d", "name": "conv2d0", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
             "stride": 1, "padding": 1}, {"type": "relu", "name": "relu1"},
            {"type": "pool2d", "name": "pool2d2", "mode": "avg", "kernel_size": 2, "stride": 2},
            {"type": "flatten", "name": "flatten3"},
            {"type": "linear", "name": "linear4", "in_features": 64, "out_features": 10}]
    doc = {"format": "neurodeploy-ann", "version": 1, "arch": arch, "name": "t", "input_shape": [1, 8, 8],
           "state_dict": {f"layers.{k}": v for k, v in ref.state_dict().items()}, "meta": {}}
    torch.save(doc, tmp_path / "old.pt")
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(annlib.load(tmp_path / "old.pt")(x), _by_hand(ref, x))
    teacher = load_teacher(tmp_path / "old.pt")
    assert teacher.kind == "ann" and teacher.classes == 10 and teacher.hint_layer() == "relu1"
    torch.testing.assert_close(teacher.logits(x), ref(x))
