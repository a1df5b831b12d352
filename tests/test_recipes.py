"""Training recipes (deploy.training.recipes): each on a tiny budget, checked against an independent
reference, and each written model compiled on digital, imc and loihi."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deploy.core.data import Split
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.training import recipes
from deploy.training.recipes import desire, hoyer, noisy_single_step, private_snn, proxy
from deploy.training.recipes.common import static_forward
from deploy.training.snn import evaluate

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("digital", "imc", "loihi")


@pytest.fixture(scope="module")
def small_digits(digits_split) -> Split:
    """The first 600 training images of the digits split, the full test split."""
    s = digits_split
    return Split("digits", s.x_train[:600], s.y_train[:600], s.x_test, s.y_test)


def compiles_everywhere(graph, split: Split, samples: int = 24) -> dict[str, float]:
    """Compile ``graph`` on digital, imc and loihi on a few test samples; energy per target."""
    from deploy.pipeline import compile as run_compile

    energy = {}
    for target in TARGETS:
        rep = run_compile(graph, target=target, data=(split.x_test[:samples], split.y_test[:samples]))
        assert rep.totals.energy_j > 0 and rep.accuracy.samples == samples, target
        energy[target] = rep.totals.energy_j
    return energy


# -- registry and command line -------------------------------------------------------------------
def test_list_names_every_recipe_and_its_paper(capsys):
    from deploy.cli import main

    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("proxy", "desire", "hoyer", "noisy-single-step", "private-snn"):
        assert any(line.startswith(name) for line in out.splitlines()), name
    assert "Kheradpisheh" in out and "Gerlinghoff" in out and "Datta" in out and "PrivateSNN" in out


@pytest.mark.parametrize("args, message", [
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--recipe", "proxy", "-T", "0"], "--timesteps"),
    (["--recipe", "private-snn"], "starts from a trained ANN"),
    (["--recipe", "proxy", "--ann", "examples/models/digits_ann.pt"], "takes no --ann"),
    (["--recipe", "hoyer", "-T", "4"], "--timesteps must be 1, got 4"),
])
def test_bad_options_are_one_line_and_write_nothing(args, message, tmp_path, capsys):
    from deploy.cli import main

    out = tmp_path / "model.pt"
    code = main(["train", *args, "--epochs", "1", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


def test_train_api_writes_a_checkpoint_that_loads(tmp_path):
    out = tmp_path / "desire.pt"
    result = recipes.train("desire", "digits", out, epochs=1, timesteps=4)
    graph = native.load(out)
    assert graph.timesteps == 4 and graph.meta["recipe"] == "desire"
    assert graph.meta["test_accuracy"] == pytest.approx(result.meta["test_accuracy"])
    import deploy

    assert deploy.train is recipes.train


# -- proxy learning ----------------------------------------------------------------------------------
def test_proxy_gradient_is_the_snn_error_backpropagated_through_the_ann(digits_split):
    net = proxy.network(digits_split, timesteps=4, seed=0)
    x, y = digits_split.x_train[:16], digits_split.y_train[:16]
    with torch.no_grad():
        counts = net.logits(net(x))
    loss = proxy.proxy_loss(net, counts, y, None, x)
    assert loss.item() == pytest.approx(F.cross_entropy(counts, y).item())      # the SNN's value
    w = net.layers["fc"].weight
    (grad,) = torch.autograd.grad(loss, w)
    # reference: dL/do at the SNN output, pushed through the ANN's output by hand
    err = (torch.softmax(counts, -1) - F.one_hot(y, 10)) / len(y)
    a = static_forward(net, x, proxy.rate_relu)
    (ref,) = torch.autograd.grad(a, w, grad_outputs=err)
    torch.testing.assert_close(grad, ref)
    (ann_grad,) = torch.autograd.grad(F.cross_entropy(static_forward(net, x, proxy.rate_relu), y), w)
    assert not torch.allclose(grad, ann_grad, atol=1e-4)                        # not plain ANN training


def test_proxy_trains_above_chance_and_compiles(small_digits):
    result = proxy.train(small_digits, epochs=3, timesteps=8)
    assert result.meta["test_accuracy"] > 0.5
    compiles_everywhere(result.graph, small_digits)


# -- desire backpropagation ----------------------------------------------------------------------------
def test_desires_and_local_errors_by_hand():
    w = torch.tensor([[1.0, -2.0, 0.1], [0.5, 1.0, 0.0]])        # 2 outputs x 3 hidden
    d_out = torch.tensor([[1.0, -1.0]])
    # y = [1 - 0.5, -2 - 1, 0.1 - 0] = [0.5, -3, 0.1]; mean |y| = 1.2; theta 0.4 -> level 0.48
    d = desire.desires(w, d_out, 0.4)
    assert d.tolist() == [[1.0, -1.0, 0.0]]
    e = desire.local_errors(torch.tensor([[0.25, 0.5, 0.9]]), d)
    assert e.tolist() == [[0.75, -0.5, 0.0]]


def test_desire_trains_without_gradients_above_chance_and_compiles(small_digits):
    result = desire.train(small_digits, epochs=2, timesteps=4)
    assert result.meta["test_accuracy"] > 0.6
    assert [n.kind for n in result.graph.nodes] == ["linear", "lif", "linear", "lif"]
    compiles_everywhere(result.graph, small_digits)


# -- one-step Hoyer ------------------------------------------------------------------------------------
def test_hoyer_threshold_is_the_hand_computed_extremum():
    z = torch.tensor([0.0, 0.5, 1.0, 0.25])
    # ||z||_2^2 = 0.25 + 1 + 0.0625 = 1.3125; ||z||_1 = 1.75
    assert hoyer.hoyer_extremum(z).item() == pytest.approx(1.3125 / 1.75)
    layer = hoyer.HoyerSpike(v_th=2.0, momentum=1.0)
    layer.train()
    u = torch.tensor([[[0.0, 1.0, 4.0, 0.5]]])                   # z = clip(u / 2) = [0, .5, 1, .25]
    s = layer(u)
    assert layer.threshold.item() == pytest.approx(2.0 * 1.3125 / 1.75)
    assert s.tolist() == [[[0.0, 0.0, 1.0, 0.0]]]               # only z = 1 exceeds E = 0.75
    assert layer.hoyer.item() == pytest.approx(1.75 ** 2 / 1.3125 / 4)


def test_hoyer_one_step_graph_equals_training_modules_and_compiles(small_digits):
    result = hoyer.train(small_digits, epochs=6)
    graph = result.graph
    assert graph.timesteps == 1
    assert result.meta["test_accuracy"] == pytest.approx(result.meta["training_accuracy_modules"])
    assert result.meta["test_accuracy"] > 0.5
    compiles_everywhere(graph, small_digits)


# -- noisy single step -----------------------------------------------------------------------------------
def test_noisy_conversion_at_one_step_equals_the_single_step_network(small_digits):
    result = noisy_single_step.train(small_digits, epochs=6, timesteps=4)
    single = result.extras["single_step"]
    trained = noisy_single_step.attach_noise(SpikingNet(single), 0.3).eval()
    converted = SpikingNet(noisy_single_step.to_timesteps(single, 1))
    x = small_digits.x_test[:64]
    with torch.no_grad():
        a, rec_a = trained.run(x, record=True)
        b, rec_b = converted.run(x, record=True)
    for name in ("if1", "if2", "if3", "out"):
        assert torch.equal(rec_a[name], rec_b[name]), name
    assert rec_b["if1"].any() and not torch.equal(a, torch.zeros_like(a))
    g4 = noisy_single_step.to_timesteps(single, 4)
    assert torch.allclose(torch.as_tensor(g4["conv1"].bias - single["conv1"].bias),
                          torch.tensor(1.0 / 8))                 # theta / (2T), theta = 1
    assert result.meta["test_accuracy"] > 0.5
    compiles_everywhere(result.graph, small_digits)


def test_noisy_if_noise_only_while_training():
    layer = noisy_single_step.NoisyIF(threshold=1.0, sigma=0.5)
    x = torch.full((1, 2000, 1), 0.5)                            # exactly at the firing edge
    layer.train()
    torch.manual_seed(0)
    rate = layer(x).mean().item()
    assert 0.4 < rate < 0.6                                       # P(0.5 + 0.5 + 0.5 n > 1) = 1/2
    layer.eval()
    assert layer(x).sum().item() == 0                             # 0.5 + 0.5 is not above 1


# -- PrivateSNN ---------------------------------------------------------------------------------------------
def test_private_snn_class_impressions_classify_as_their_class(digits_split):
    from deploy.training import ann as annlib

    ann = annlib.load(ROOT / "examples" / "models" / "digits_ann.pt")
    x, y = private_snn.class_impressions(ann, (1, 8, 8), 10, per_class=4, steps=60)
    assert x.min() >= 0 and x.max() <= 1 and len(y) == 40
    with torch.no_grad():
        assert (ann(x).argmax(-1) == y).float().mean() >= 0.95
    # a network that never saw the ANN does not call them so (the impressions are ANN-specific)
    other = annlib.build([{"type": "flatten"}, {"type": "linear", "in_features": 64, "out_features": 10}], (1, 8, 8))
    with torch.no_grad():
        assert (other(x).argmax(-1) == y).float().mean() < 0.5


def test_private_snn_data_free_conversion_and_retraining_compiles(small_digits):
    from deploy.training import ann as annlib

    ann = annlib.load(ROOT / "examples" / "models" / "digits_ann.pt")
    result = private_snn.train(small_digits, ann=ann, epochs=1, timesteps=8, per_class=6, steps=60)
    assert result.meta["impressions_ann_accuracy"] >= 0.95
    assert result.meta["converted_data_free_test_accuracy"] > 0.8
    assert result.meta["test_accuracy"] > 0.8
    before = result.extras["converted"]["conv0"].weight
    assert not torch.allclose(torch.as_tensor(result.graph["conv0"].weight), torch.as_tensor(before))
    assert evaluate(SpikingNet(result.graph), small_digits.x_test, small_digits.y_test) == \
        pytest.approx(result.meta["test_accuracy"])
    compiles_everywhere(result.graph, small_digits)
