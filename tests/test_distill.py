"""Distillation: KD loss values, heterogeneous temperatures, hints, training effects, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from deploy.cli import main
from deploy.core.errors import DeployError
from deploy.core.net import build
from deploy.io import native
from deploy.training import ann as annlib
from deploy.training.distill import (
    HeteroTemperature,
    HintLoss,
    distill,
    kd_loss,
    load_teacher,
    measure,
    spike_rate_loss,
)
from deploy.training.distill.teachers import Teacher

STUDENT = {"input_shape": [1, 8, 8], "timesteps": 8, "encoding": "direct", "name": "tiny_student",
           "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
                      {"type": "lif", "beta": 0.9}, {"type": "flatten"},
                      {"type": "linear", "out_features": 32}, {"type": "lif", "beta": 0.9},
                      {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}
TEACHER = {"input_shape": [1, 8, 8], "name": "t", "layers": [
    {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "flatten"}, {"type": "linear", "out_features": 64}, {"type": "relu"},
    {"type": "linear", "out_features": 10}]}


@pytest.fixture(scope="module")
def teacher(digits_split):
    ann = annlib.from_spec(TEACHER, seed=0)
    annlib.fit(ann, digits_split, epochs=6, progress=False)
    return ann


# -- losses --------------------------------------------------------------------------
def test_kd_loss_matches_hand_computed_three_class_value():
    # T = 2: p_t = softmax([1.5, 0.5, 0]) = [0.628532, 0.231224, 0.140244],
    #        p_s = softmax([0.5, 1.0, 1.5]) = [0.186324, 0.307196, 0.506480],
    # KL = 0.628532 ln(3.373326) + 0.231224 ln(0.752693) + 0.140244 ln(0.276899) = 0.518454,
    # times T^2 = 2.073816
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0]])
    assert kd_loss(s, t, 2.0).item() == pytest.approx(2.073816, abs=1e-5)
    # a second, plain-Python implementation on a random batch and another temperature
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 3, generator=g) * 3, torch.randn(5, 3, generator=g) * 3
    ref = 0.0
    for si, ti in zip(s.tolist(), t.tolist(), strict=True):
        ps = [math.exp(v / 3.5) for v in si]
        pt = [math.exp(v / 3.5) for v in ti]
        ps, pt = [p / sum(ps) for p in ps], [p / sum(pt) for p in pt]
        ref += 3.5 ** 2 * sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True)) / 5
    assert kd_loss(s, t, 3.5).item() == pytest.approx(ref, rel=1e-5)


def test_hetero_temperature_reduces_to_plain_kd_when_all_temperatures_are_equal():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g) * 4, torch.randn(6, 4, generator=g) * 4
    plain = kd_loss(s, t, 3.0)
    for per in ("class", "sample"):
        het = HeteroTemperature(4, 3.0, student_temperature=3.0, per=per, learnable=True)
        if per == "sample":
            het.theta.data.zero_()      # zero gain: every sample at T
        for progress in (0.0, 0.5, 1.0):
            assert het(s, t, progress).item() == pytest.approx(plain.item(), rel=1e-6)
    assert kd_loss(s, t, torch.full((4,), 3.0), torch.full((6, 1), 3.0)).item() == pytest.approx(plain.item())
    # unequal temperatures do change the loss, and a lower student temperature is reached on schedule
    het = HeteroTemperature(4, 3.0, student_temperature=1.0, per="class", learnable=False)
    het.theta.data = torch.tensor([0.5, -0.5, 0.0, 0.2])
    assert abs(het(s, t).item() - plain.item()) > 1e-3
    assert het.student(0.0) == 3.0 and het.student(0.5) == 2.0 and het.student(1.0) == 1.0


def test_learnable_temperature_gradient_is_reversed_and_bounded():
    s, t = torch.tensor([[0.0, 4.0, 0.0]]), torch.tensor([[5.0, 0.0, 0.0]])
    het = HeteroTemperature(3, 2.0, student_temperature=2.0, per="class", learnable=True)
    het(s, t, progress=1.0).backward()
    theta = het.theta.detach().clone().requires_grad_(True)
    kd_loss(s, t, 2.0 * 4.0 ** torch.tanh(theta), 2.0).backward()
    assert torch.allclose(het.theta.grad, -theta.grad)        # adversarial: ascends the KL
    het.theta.data.fill_(100.0)
    assert torch.allclose(het.teacher(t), torch.full((3,), 8.0))  # within [T/4, 4T]


@pytest.mark.parametrize("s_shape,t_shape", [((8, 14, 14), (32, 7, 7)), ((32,), (16, 4, 4)),
                                             ((16, 4, 4), (128,)), ((32,), (64,))])
def test_hint_adapter_maps_student_features_to_teacher_shape(s_shape, t_shape):
    hint = HintLoss(s_shape, t_shape)
    x = torch.rand(5, *s_shape)
    assert hint.adapter(x).shape == (5, *t_shape)
    loss = hint(x, torch.randn(5, *t_shape))
    loss.backward()
    assert loss.ndim == 0 and all(p.grad is not None for p in hint.parameters())
    # a perfect prediction costs nothing
    target = hint.adapter(x).detach()
    assert hint(x, target).item() == pytest.approx(0.0, abs=1e-10)


def test_spike_rate_loss_is_the_mean_firing_rate():
    a = torch.zeros(4, 2, 10)
    a[0, :, :5] = 1
    b = torch.ones(4, 2, 3, 2, 2)
    assert spike_rate_loss([a, b]).item() == pytest.approx((10 + 96) / (80 + 96))


# -- training -------------------------------------------------------------------------
def test_short_distillation_beats_the_untrained_student(teacher, digits_split):
    x, y = digits_split.x_test, digits_split.y_test
    untrained = measure(build(STUDENT, seed=0), x, y)["accuracy"]
    for method in ("kd", "hetero-kd"):
        net, history = distill(teacher, STUDENT, digits_split, method=method, epochs=6, progress=False)
        acc = measure(net, x, y)["accuracy"]
        assert acc > 0.85 and acc > untrained + 0.5, (method, acc, untrained)
        assert len(history) == 6 and history[-1]["test_acc"] == pytest.approx(acc)


def test_ta_and_hint_run_from_ann_and_snn_teachers(teacher, digits_split, shipped_path):
    x, y = digits_split.x_test, digits_split.y_test
    net, history = distill(teacher, STUDENT, digits_split, method="ta", epochs=5, progress=False)
    assert [h["stage"] for h in history] == ["tiny_student_assistant"] * 5 + ["tiny_student"] * 5
    assert measure(net, x, y)["accuracy"] > 0.8
    snn_teacher = load_teacher(shipped_path)
    assert snn_teacher.kind == "snn" and snn_teacher.hint_layer() == "lif5"
    net, _ = distill(snn_teacher, STUDENT, digits_split, method="hint", epochs=5, progress=False)
    assert measure(net, x, y)["accuracy"] > 0.8


def test_spike_regulariser_lowers_spike_counts(teacher, digits_split):
    x, y = digits_split.x_test, digits_split.y_test
    runs = {reg: distill(teacher, STUDENT, digits_split, method="kd", epochs=6, spike_reg=reg,
                         progress=False)[0] for reg in (0.0, 2.0)}
    free, sparse = measure(runs[0.0], x, y), measure(runs[2.0], x, y)
    assert sparse["spikes"] < 0.8 * free["spikes"]
    assert sparse["accuracy"] > 0.8


def test_ann_checkpoint_round_trip(teacher, digits_split, tmp_path):
    path = annlib.save(teacher, tmp_path / "t.pt", meta={"note": "x"})
    doc = torch.load(path, weights_only=True)
    assert doc["format"] == "neurodeploy-ann" and doc["version"] == 1 and isinstance(doc["arch"], list)
    loaded = load_teacher(path)
    x = digits_split.x_test[:32]
    assert torch.equal(loaded.logits(x), Teacher(teacher).logits(x))


def test_cli_writes_a_checkpoint_that_compile_accepts(teacher, tmp_path, capsys):
    import yaml

    t_path = annlib.save(teacher, tmp_path / "teacher.pt")
    spec = tmp_path / "student.yaml"
    spec.write_text(yaml.safe_dump(STUDENT))
    out = tmp_path / "student.pt"
    code = main(["distill", str(t_path), "--student", str(spec), "--method", "hetero-kd", "--epochs", "6",
                 "--spike-reg", "0.5", "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    graph = native.load(out)
    assert graph.meta["method"] == "hetero-kd" and graph.meta["test_accuracy"] > 0.8
    assert main(["compile", str(out), "--samples", "40", "-o", str(tmp_path / "rep"), "--no-figures"]) == 0


# -- bad input ------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_bad_input_is_one_clear_error(teacher, digits_split):
    five = annlib.from_spec({**TEACHER, "layers": [*TEACHER["layers"][:-1], {"type": "linear", "out_features": 5}]})
    with pytest.raises(DeployError) as e:
        distill(five, STUDENT, digits_split, epochs=1, progress=False)
    assert "5 classes" in _one_line(e) and "10" in _one_line(e)
    big = annlib.from_spec({**TEACHER, "input_shape": [1, 28, 28]})
    with pytest.raises(DeployError) as e:
        distill(big, STUDENT, digits_split, epochs=1, progress=False)
    assert "(1, 28, 28)" in _one_line(e) and "(1, 8, 8)" in _one_line(e)
    with pytest.raises(DeployError) as e:
        distill(teacher, STUDENT, digits_split, method="magic", epochs=1, progress=False)
    assert "magic" in _one_line(e)
    for temp in (0.0, -1.0, float("nan")):
        with pytest.raises(DeployError) as e:
            distill(teacher, STUDENT, digits_split, temperature=temp, epochs=1, progress=False)
        assert "temperature" in _one_line(e)


def test_cli_bad_input_exits_2_with_one_line(teacher, tmp_path, capsys):
    import yaml

    t_path = annlib.save(teacher, tmp_path / "teacher.pt")
    spec = tmp_path / "student.yaml"
    spec.write_text(yaml.safe_dump(STUDENT))
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("layers: [\n")
    cases = [["--method", "magic"], ["--temperature", "0"], ["--data", "cifar"]]
    for extra in cases:
        out = tmp_path / "s.pt"
        code = main(["distill", str(t_path), "--student", str(spec), "-o", str(out), "--epochs", "1",
                     "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err, (extra, err)
        assert not out.exists()
    code = main(["distill", str(t_path), "--student", str(bad_spec), "-o", str(tmp_path / "s.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "bad.yaml" in err and "\n" not in err
