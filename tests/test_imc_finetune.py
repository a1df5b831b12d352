"""Hardware-aware retraining for IMC: it beats the naive mapping, the exported graph deploys
exactly as trained, the progressive schedule, and the ``deploy finetune`` command."""

from __future__ import annotations

import pytest
import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.training.finetune import finetune
from deploy.training.snn import evaluate, fit
from hwmodels.imc import ImcTarget
from hwmodels.imc.crossbar import CrossbarNet
from hwmodels.imc.trainable import export, schedule

MLP = {"input_shape": [64], "timesteps": 4, "encoding": "direct", "name": "mlp",
       "layers": [{"type": "linear", "out_features": 32}, {"type": "lif", "beta": 0.9},
                  {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    split = data.load("digits")
    split.x_train, split.y_train = split.x_train[:600], split.y_train[:600]
    net = build(MLP, seed=0)
    fit(net, split, epochs=6, lr=5e-3, progress=False)
    return net.to_graph(), split


def _accuracy(tgt, graph, split) -> tuple[float, torch.Tensor]:
    x = data.fit_to_model(split.x_test, graph.input_shape)
    act = tgt.simulate(tgt.map(graph), x)
    return float((act.predictions == split.y_test).float().mean()), act.logits


@pytest.mark.parametrize("learn_scales", [False, True])
def test_finetune_beats_naive_mapping_and_deploys_exactly(small, learn_scales):
    graph, split = small
    tgt = ImcTarget(options={"rows": 32, "input_bits": 4})
    naive, _ = _accuracy(tgt, graph, split)
    tuned, history = finetune(graph, tgt, split, epochs=2, lr=2e-3, seed=0, learn_scales=learn_scales)
    retrained, logits = _accuracy(tgt, tuned, split)
    assert retrained > naive + 0.05, (naive, retrained)
    assert [h["adc_bits"] for h in history] == [1, 1]
    # the checkpoint carries the deployed codes and the learned references
    assert tuned["linear0"].precision["weight"] == 4 and "steps" in tuned.meta["imc"]
    trims = tuned.meta["imc"]["trims"]["linear0"]
    assert len(trims) == tgt.map(graph).layers["linear0"].column_count and any(t != 0 for t in trims)
    net = CrossbarNet(tgt.map(tuned), tgt.off_units, mode="train", learn_scales=learn_scales)
    with torch.no_grad():
        train_logits = net.logits(net(data.fit_to_model(split.x_test, graph.input_shape)))
    torch.testing.assert_close(train_logits, logits)        # deployment == the trained forward
    assert history[-1]["test_acc"] == pytest.approx(retrained)


def test_learned_weight_scale_gradient(small):
    """Codes clamp(round(w / s)); the straight-through estimator spans rounding and clipping,
    so d(sum(code * s))/ds = (code - w/s) / sqrt(fan-in * qmax) for every weight (LSQ's
    gradient inside the range, Esser et al. 2020) and d/dw = 1 everywhere."""
    graph, _ = small
    tgt = ImcTarget()
    net = CrossbarNet(tgt.map(graph), tgt.off_units, mode="train", learn_scales=True)
    layer = net.layers["linear0"]
    with torch.no_grad():
        layer.weight_scale.mul_(0.6)                     # some weights now clip
    q, scale = layer.quantized_weight()
    (q * scale.view(-1, 1)).sum().backward()
    w, s = layer.weight.detach(), layer.weight_scale.detach().view(-1, 1)
    x = w / s
    codes = torch.round(x).clamp(layer.sl.qmin, layer.sl.qmax)
    assert torch.equal(q.detach(), codes) and bool((x > layer.sl.qmax).any())
    g = 1.0 / (w.shape[1] * layer.sl.qmax) ** 0.5
    torch.testing.assert_close(layer.weight_scale.grad, g * (codes - x).sum(1))
    torch.testing.assert_close(layer.weight.grad, torch.ones_like(w))


def test_collapsed_learned_scale_still_exports_deployable_codes(small):
    """A learned scale driven to zero or below is held at 1/1000 of its initial value, and
    the exported codes are exactly the clamped ones (no float error from huge w / scale)."""
    graph, _ = small
    tgt = ImcTarget()
    net = CrossbarNet(tgt.map(graph), tgt.off_units, mode="train", learn_scales=True)
    layer = net.layers["linear0"]
    initial = layer.weight_scale.detach().clone()
    with torch.no_grad():
        layer.weight_scale[0] = -1.0
        layer.weight_scale[1] = 1e-12
    tuned = export(net, tgt)
    torch.testing.assert_close(torch.from_numpy(tuned["linear0"].weight_scale[:2]), 1e-3 * initial[:2])
    codes = tgt.map(tuned).layers["linear0"].codes
    assert abs(codes[:2]).max() == layer.sl.qmax         # the largest weights clip at the floor


def test_progressive_schedule_and_noise(small):
    assert schedule(1, 6, True) == [(4, 1), (3, 1), (2, 2), (1, 2)]
    assert schedule(5, 3, True) == [(7, 1), (6, 1), (5, 1)]
    assert schedule(1, 5, False) == [(1, 5)]
    graph, split = small
    tgt = ImcTarget(options={"rows": 32, "input_bits": 4, "variation": 0.1, "seed": 1})
    tuned, history = finetune(graph, tgt, split, epochs=2, progressive=True, noise=True, seed=0)
    assert [h["adc_bits"] for h in history] == [2, 1]
    assert tuned.meta["imc"]["adc_bits"] == 1


def test_cli_finetune_writes_checkpoint(small, tmp_path):
    from deploy.cli import main

    graph, split = small
    graph = graph.copy()
    graph.meta.update({"epochs": 30, "test_accuracy": 0.5})     # the float model's training record
    model, out = tmp_path / "mlp.pt", tmp_path / "tuned.pt"
    native.save(graph, model)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("options: {rows: 32, input_bits: 4}\n")
    assert main(["finetune", str(model), "--target", "imc", "--epochs", "1", "--config", str(cfg),
                 "--augment", "2", "--max-scales", "--seed", "1", "-o", str(out)]) == 0
    tuned = native.load(out)
    assert tuned.meta["imc"]["rows"] == 32 and tuned.meta["finetuned_for"] == "imc"
    assert tuned.meta["augment"] == 2 and tuned.meta["learn_scales"] is False
    assert tuned.meta["seed"] == 1 and tuned.meta["split_seed"] == 0     # evaluated on the model's split
    # the retrained checkpoint's own record wins over the one its graph inherited
    assert tuned.meta["epochs"] == 1 and tuned.meta["trained_with"] == "deploy finetune"
    assert tuned.meta["test_accuracy"] == evaluate(SpikingNet(tuned), split.x_test, split.y_test)


@pytest.mark.parametrize("args, message", [
    (["--target", "digital"], "supports the IMC targets"),
    (["--data", "cifar"], "--data must be one of"),
    (["--data", "events"], "needs a model with event input"),
    (["--config", "MISSING.yaml"], "config file not found"),
    (["--augment", "9"], "takes 0..8 copies"),
])
def test_cli_finetune_bad_input(small, tmp_path, capsys, args, message):
    from deploy.cli import main

    graph, _ = small
    model, out = tmp_path / "mlp.pt", tmp_path / "tuned.pt"
    native.save(graph, model)
    assert main(["finetune", str(model), "-o", str(out), "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_psum_quantizer_gradients():
    from hwmodels.imc.crossbar import PsumQuant

    torch.manual_seed(0)
    p = (torch.rand(50, 6, 7) * 10 - 1).double().requires_grad_()
    step = (torch.rand(1, 6, 1) + 0.5).double().requires_grad_()
    for qmax in (1, 7):
        out = PsumQuant.apply(p, step, qmax, 1.0)
        code = torch.clamp(torch.ceil(p / step - 0.5), 0, qmax)
        assert torch.equal(out, code * step)
        g = torch.randn_like(out)
        g_p, g_step = torch.autograd.grad(out, (p, step), g)
        x = p / step
        inside = (x >= 0) & (x <= qmax)
        assert torch.equal(g_p, g * inside)                                 # straight-through in range
        d = torch.where(inside, code - x, (x > qmax).double() * qmax)        # LSQ step gradient
        torch.testing.assert_close(g_step, (g * d).sum((0, 2), keepdim=True))


def test_the_loop_needs_a_target_with_a_trainable_forward(small):
    """Retraining goes through the target's own forward (TrainableTarget); digital has none."""
    from deploy.core.errors import DeployError
    from deploy.training.finetune import TrainableTarget
    from hwmodels import get_target

    graph, split = small
    assert isinstance(ImcTarget(), TrainableTarget) and not isinstance(get_target("digital"), TrainableTarget)
    with pytest.raises(DeployError, match="got 'digital'"):
        finetune(graph, get_target("digital"), split, epochs=1)
