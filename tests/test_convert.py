"""ANN -> SNN conversion: BN folding, threshold balancing, clipping, residual blocks, CLI, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deploy.core import ir
from deploy.core.errors import DataError, DeployError, ModelError
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.training import ann as annlib
from deploy.training.convert import convert, fold_bn
from deploy.training.snn import evaluate


def _randomize_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    bn.weight.data = torch.randn(c, generator=g)
    bn.bias.data = torch.randn(c, generator=g)


def test_bn_fold_equals_unfolded_conv_and_linear():
    torch.manual_seed(0)
    conv, bn2 = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5).eval()
    _randomize_bn(bn2, 1)
    x = torch.randn(4, 3, 6, 6)
    w, b = fold_bn(conv.weight, conv.bias, bn2)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1), bn2(conv(x)), rtol=1e-5, atol=1e-5)
    lin, bn1 = nn.Linear(7, 4, bias=False), nn.BatchNorm1d(4).eval()
    _randomize_bn(bn1, 2)
    z = torch.randn(9, 7)
    w, b = fold_bn(lin.weight, None, bn1)
    torch.testing.assert_close(F.linear(z, w, b), bn1(lin(z)), rtol=1e-5, atol=1e-5)


def test_converted_graph_first_layer_is_the_bn_folded_ann_layer():
    torch.manual_seed(0)
    model = annlib.ANN([nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 10)], (1, 8, 8)).eval()
    _randomize_bn(model[1], 3)
    x = torch.rand(16, 1, 8, 8)
    g = convert(model, timesteps=4, data=x, shift=False)
    conv = g.nodes[0]
    out = F.conv2d(x, torch.from_numpy(conv.weight), torch.from_numpy(conv.bias), padding=1)
    torch.testing.assert_close(out, model[1](model[0](x)), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def digits_mlp(digits_split):
    torch.manual_seed(0)
    model = annlib.ANN([nn.Flatten(), nn.Linear(64, 96), nn.BatchNorm1d(96), nn.ReLU(), nn.Linear(96, 10)], (1, 8, 8))
    annlib.fit(model, digits_split, epochs=8, seed=0)
    return model.eval()


def test_converted_snn_approaches_ann_accuracy_on_digits(digits_mlp, digits_split):
    s = digits_split
    ann_acc = annlib.evaluate(digits_mlp, s.x_test, s.y_test)
    assert ann_acc > 0.93
    accs = {t: evaluate(SpikingNet(convert(digits_mlp, timesteps=t, data=s)), s.x_test, s.y_test) for t in (2, 64)}
    assert accs[64] >= ann_acc - 0.01
    assert accs[2] < accs[64]            # the approximation improves with time
    graph = convert(digits_mlp, timesteps=64, data=s)
    assert {n.kind for n in graph.nodes} == {"flatten", "linear", "lif", "li"}
    assert all(n.beta == 1.0 and n.reset == "subtract" for n in graph.nodes if n.kind == "lif")


def test_threshold_balance_picks_max_and_percentile_of_nonzero_activations():
    # hidden = relu(10 x): inputs 0, .1, ..., .5 give activations 0 (ignored), 1, 2, 3, 4, 5
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 2))
    with torch.no_grad():
        model[0].weight.fill_(10.0)
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[1.0], [-2.0]]))
        model[2].bias.copy_(torch.tensor([0.5, 0.25]))
    x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5]])
    for pct, lam in ((100, 5.0), (50, 3.0), (90, 4.6)):   # numpy's linear interpolation over 1..5
        g = convert(model, timesteps=10, data=x, percentile=pct, shift=True)
        fc0, if1, fc2, out = g.nodes
        assert if1.threshold == pytest.approx(lam, rel=1e-5)
        # hidden synapse: unscaled weight, bias shifted by theta / 2T
        np.testing.assert_allclose(fc0.weight, [[10.0]])
        np.testing.assert_allclose(fc0.bias, [lam / 20], rtol=1e-5)
        # a spike of the hidden layer stands for lambda: the next weight is scaled by it
        np.testing.assert_allclose(fc2.weight, [[lam], [-2 * lam]], rtol=1e-5)
        np.testing.assert_allclose(fc2.bias, [0.5, 0.25])
        assert out.kind == "li" and out.beta == 0.0


def test_clip_method_takes_the_trained_bound_without_data():
    model = annlib.ANN([nn.Linear(4, 3), annlib.Clip(2.5), nn.Linear(3, 2)], (4,))
    g = convert(model, method="clip", timesteps=8, shift=False)
    assert g["if1"].threshold == pytest.approx(2.5)
    np.testing.assert_allclose(g["fc2"].weight, model[2].weight.detach().numpy() * 2.5, rtol=1e-6)
    with pytest.raises(ModelError, match=r"layer '1' \(ReLU\).*clip"):
        convert(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), method="clip")


def test_clip_layer_trains_its_bound():
    torch.manual_seed(0)
    clip = annlib.Clip(1.0)
    x = torch.linspace(-1, 3, 50)
    loss = (clip(x) - x.clamp(0, 2)).pow(2).sum()
    loss.backward()
    assert clip.bound.grad is not None and clip.bound.grad < 0    # wants to grow towards 2


def _resnet_ann(seed: int = 0) -> annlib.ANN:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
    down = annlib.Residual(nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                                         nn.Conv2d(6, 6, 3, padding=1)),
                           nn.Sequential(nn.Conv2d(4, 6, 1, stride=2)), annlib.Clip(3.0))
    model = annlib.ANN([nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), annlib.Residual(body), down,
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)], (1, 8, 8))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            _randomize_bn(m, seed + 7)
            m.running_mean.abs_()
    return model.eval()


def test_residual_ann_converts_to_add_nodes_and_matches_ann_logits():
    model = _resnet_ann()
    x = torch.rand(64, 1, 8, 8)
    g = convert(model, timesteps=512, data=x, percentile=100)
    kinds = [n.kind for n in g.nodes]
    assert kinds.count("add") == 2 and "pool2d" in kinds
    identity_add = g["add2"]
    assert identity_add.inputs[1] == "if1"                       # the spikes of the block input
    lam = g.meta["scales"]
    assert g["if2_act"].threshold == pytest.approx(lam["2.act"] / lam["1"], rel=1e-5)
    out = SpikingNet(g)(x).mean(0)
    ref = model(x)
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"relative logit error {err:.3f}"


def test_ann_checkpoint_roundtrip_with_residual_and_clip(tmp_path):
    model = _resnet_ann(1)
    path = annlib.save(model, tmp_path / "ann.pt", meta={"note": "x"})
    back = annlib.load(path)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(back(x), model(x))
    assert back.input_shape == (1, 8, 8) and back.meta["note"] == "x"


def test_teacher_format_ann_loads_and_converts(tmp_path, digits_split):
    t = annlib.from_spec({"input_shape": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "pool2d", "mode": "avg", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]})
    annlib.save(t, tmp_path / "teacher.pt")
    back = annlib.load(tmp_path / "teacher.pt")
    g = convert(back, timesteps=8, data=digits_split)
    assert [n.kind for n in g.nodes] == ["conv2d", "lif", "pool2d", "flatten", "linear", "li"]


@pytest.mark.parametrize("layer, name", [(nn.MaxPool2d(2), "MaxPool2d"), (nn.Sigmoid(), "Sigmoid")])
def test_unsupported_layers_are_named(layer, name):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), layer, nn.Flatten(), nn.Linear(2 * 3 * 3 if name == "MaxPool2d" else 72, 3))
    with pytest.raises(ModelError, match=rf"layer '2' \({name}\)"):
        convert(model, data=torch.rand(4, 1, 8, 8))


def test_bad_options_give_one_clear_error():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(DataError, match="calibration data"):
        convert(model, timesteps=8)
    with pytest.raises(DeployError, match="timesteps must be >= 1"):
        convert(model, timesteps=0, data=torch.rand(5, 4))
    with pytest.raises(DeployError, match="unknown conversion method"):
        convert(model, method="magic", data=torch.rand(5, 4))


def test_custom_forward_is_refused():
    class Odd(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(ModelError, match="forward differs"):
        convert(Odd(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), data=torch.rand(5, 4))


def test_deploy_convert_is_callable_from_the_package(digits_mlp, digits_split):
    import deploy
    import deploy.training.convert  # noqa: F401 - the submodule import must not shadow the function

    g = deploy.convert(digits_mlp, timesteps=4, data=digits_split)
    assert isinstance(g, ir.Graph) and g.timesteps == 4


def test_cli_convert_writes_a_native_checkpoint_and_refuses_bad_input(tmp_path, digits_mlp, capsys):
    from deploy.cli import main

    ann_path = annlib.save(digits_mlp, tmp_path / "ann.pt")
    out = tmp_path / "snn.pt"
    assert main(["convert", str(ann_path), "--data", "digits", "-T", "16", "-o", str(out)]) == 0
    g = native.load(out)
    assert g.timesteps == 16 and g.meta["method"] == "threshold-balance"
    assert g.meta["test_accuracy"] >= g.meta["ann_accuracy"] - 0.03

    pickled = tmp_path / "pickled.pt"
    torch.save(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.MaxPool1d(2), nn.Linear(4, 10)), pickled)
    bad = tmp_path / "bad.pt"
    cases = [([str(ann_path), "-o", str(bad)], "needs calibration data"),
             ([str(ann_path), "--data", "digits", "-T", "0", "-o", str(bad)], "timesteps must be >= 1"),
             ([str(pickled), "--data", "digits", "-o", str(bad)], "--trust-pickle"),
             ([str(pickled), "--trust-pickle", "--data", "digits", "-o", str(bad)], "MaxPool1d")]
    for args, msg in cases:
        capsys.readouterr()
        assert main(["convert", *args]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.strip().count("\n") == 0 and "Traceback" not in err
        assert not bad.exists()
