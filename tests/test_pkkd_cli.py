"""``deploy distill --method pkkd``: adder layers in the neurodeploy-ann format (save/load round trip),
the CLI's checkpoint (accuracy re-evaluated after loading, digital op counts by hand), its one-line
errors, and ``deploy compile`` refusing ANN checkpoints in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deploy.cli import main
from deploy.training import ann
from deploy.training.adder import AdderConv2d, AdderLinear, conv_net

torch.set_num_threads(1)
STUDENT = "examples/students/digits_student.yaml"
TEACHER = "examples/models/digits_ann.pt"


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _trained_stats(net: nn.Sequential, shape: tuple[int, ...]) -> nn.Sequential:
    """``net`` with BatchNorm running statistics moved off their defaults (one train-mode pass)."""
    net.train()
    with torch.no_grad():
        net(torch.randn(16, *shape) * 2 + 0.5)
    return net.eval()


@pytest.mark.parametrize("kind,adder_classifier", [("adder", False), ("adder", True), ("cnn", False)])
def test_conv_net_save_load_round_trip_gives_identical_outputs(tmp_path, kind, adder_classifier):
    net = _trained_stats(conv_net(kind, (3, 4), classes=5, image=8, eta=0.2, seed=1,
                                  adder_classifier=adder_classifier), (1, 8, 8))
    ann.save(net, tmp_path / "m.pt", input_shape=(1, 8, 8))
    loaded = ann.load(tmp_path / "m.pt")
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    types = [d["type"] for d in ann.to_document(net, (1, 8, 8))["arch"]]
    assert ("adder_conv2d" in types) == (kind == "adder")
    assert ("adder_linear" in types) == adder_classifier
    first = loaded[0]
    if kind == "adder":
        assert isinstance(first, AdderConv2d) and first.eta == 0.2 and (first.stride, first.padding) == (1, 1)


def test_adder_layer_dicts_infer_input_sizes_and_compute_l1_distances():
    model = ann.build([{"type": "adder_conv2d", "out_channels": 3, "kernel_size": 3, "stride": 2, "eta": 0},
                       {"type": "flatten"}, {"type": "adder_linear", "out_features": 2, "eta": 0}], (2, 5, 5))
    conv, lin = model[0], model[2]
    assert (conv.in_channels, lin.in_features) == (2, 3 * 2 * 2)   # (5 - 3) // 2 + 1 = 2
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        hand = torch.tensor([[[-(x[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] - conv.weight[o]).abs().sum()
                               for j in range(2)] for i in range(2)] for o in range(3)])
        assert torch.allclose(conv(x)[0], hand, atol=1e-5)
        h = hand.flatten()
        assert torch.allclose(model(x)[0], torch.stack([-(h - w).abs().sum() for w in lin.weight]), atol=1e-4)
    assert isinstance(lin, AdderLinear)


@pytest.fixture(scope="module")
def pkkd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkkd") / "adder.pt"
    code = main(["distill", "--method", "pkkd", "--data", "digits", "--epochs", "1", "--seed", "3", "-o", str(out)])
    assert code == 0
    return out


def test_cli_pkkd_checkpoint_accuracy_and_cost_recompute(pkkd_run, digits_split):
    model = ann.load(pkkd_run)
    meta = model.meta
    assert meta["test_accuracy"] == ann.evaluate(model, digits_split.x_test, digits_split.y_test)
    assert 0 < meta["teacher_accuracy"] <= 1
    assert (meta["method"], meta["dataset"], meta["epochs"], meta["seed"]) == ("pkkd", "digits", 1, 3)
    assert meta["lr"] == 3e-3                       # pkkd's own default when --lr is not given
    assert meta["spiking"] is False and "not a spiking network" in meta["note"]
    assert any(isinstance(m, AdderConv2d) for m in model)
    # conv_net (8, 16) on 8x8 digits, by hand: adder convs 2 adds per weight operand, the fc and the
    # BatchNorms a multiply and an add per value, ReLU and max pooling one add per input value
    conv = 2 * (8 * 8 * 8 * 9 + 16 * 4 * 4 * 72)
    fc, bn = 10 * 64, 8 * 8 * 8 + 16 * 4 * 4 + 10
    relu_pool = 2 * (8 * 8 * 8 + 16 * 4 * 4)
    cost = meta["digital_cost"]["per_inference"]
    assert cost["adds"] == conv + fc + bn + relu_pool == 49034
    assert cost["mults"] == fc + bn == 1418
    assert cost["energy_j"] > 0


def test_cli_pkkd_prints_one_summary_line(tmp_path, capsys):
    code, out, err = run(["distill", "--method", "pkkd", "--epochs", "1", "--batch-size", "256", "--lr", "5e-3",
                          "-o", tmp_path / "a.pt"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    meta = ann.load(tmp_path / "a.pt").meta
    assert len(lines) == 1 and (meta["lr"], meta["batch_size"]) == (5e-3, 256)
    assert f"test accuracy {meta['test_accuracy']:.4f}" in lines[0]
    assert f"CNN teacher {meta['teacher_accuracy']:.4f}" in lines[0]
    assert "49,034 adds, 1,418 mults" in lines[0] and "not a spiking network" in lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--method", "pkkd", TEACHER], "trains its own CNN teacher"),
    (["--method", "pkkd", "--student", STUDENT], "trains its own CNN teacher"),
    (["--method", "pkkd", "--temperature", "3"], "--temperature does not apply to --method pkkd"),
    (["--method", "pkkd", "--data", "events"], "unknown dataset 'events'"),
    (["--method", "kd", "--student", STUDENT], "distills from a TEACHER"),
    (["--method", "kd", TEACHER], "needs --student"),
])
def test_distill_method_argument_errors_are_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "x.pt"
    code, _, err = run(["distill", *args, "-o", out], capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert not out.exists()


def test_compile_refuses_an_adder_checkpoint_in_one_line(pkkd_run, tmp_path, capsys):
    code, _, err = run(["compile", pkkd_run, "-o", tmp_path / "rep"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert f"{pkkd_run} is a frame-based ANN (neurodeploy-ann), not a spiking network" in err
    assert "deploy distill --method pkkd" in err and "do not run on spiking targets" in err
    assert not (tmp_path / "rep").exists()


def test_compile_refuses_an_ann_checkpoint_pointing_at_convert(tmp_path, capsys):
    cnn = tmp_path / "cnn.pt"
    ann.save(conv_net("cnn", (2,), classes=3, image=8), cnn, input_shape=(1, 8, 8))
    nested = tmp_path / "nested.pt"                 # an adder layer inside a residual block
    ann.save(ann.ANN([ann.Residual(nn.Sequential(AdderConv2d(1, 1, 3, padding=1)))], (1, 8, 8)), nested)
    code, _, err = run(["compile", cnn], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "not a spiking network: convert it with `deploy convert` first" in err
    code, _, err = run(["compile", nested], capsys)
    assert code != 0 and "adder layers cannot be converted" in err
