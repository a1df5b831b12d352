"""Brevitas QAT recovers low-precision accuracy; QCDQ export runs in onnxruntime like torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deploy.core import data
from deploy.io import native
from quant import QConfig, QuantError, evaluate, quantize
from quant.neurons import formats_of
from quant.onnx_export import export_onnx, run_onnx, synapse_layer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlp():
    return native.load(ROOT / "examples" / "models" / "digits_mlp.pt"), data.load("digits")


def test_qat_recovers_accuracy_that_ptq_loses(mlp):
    g, split = mlp
    ptq_acc = evaluate(quantize(g, QConfig(2, 8), data=split), split.x_test, split.y_test).accuracy
    q = quantize(g, QConfig(2, 8, scheme="qat"), data=split, qat_epochs=2)
    qat_acc = evaluate(q, split.x_test, split.y_test).accuracy
    assert qat_acc > ptq_acc + 0.2, (ptq_acc, qat_acc)
    # the trained weights are 2-bit codes {-1, 0, 1} times a per-channel scale
    for node in q.synapses():
        codes = node.weight / node.weight_scale.reshape(-1, *[1] * (node.weight.ndim - 1))
        assert np.allclose(codes, np.round(codes), atol=1e-5) and set(np.unique(np.round(codes))) <= {-1, 0, 1}
        assert node.precision["weight"] == 2
    assert q.meta["quant"]["config"]["scheme"] == "qat" and set(formats_of(q)) == {"lif1", "lif3"}


def test_brevitas_layer_reproduces_the_graph_codes(mlp):
    g, split = mlp
    for per_channel in (True, False):
        q = quantize(g, QConfig(5, 8, "truncation", per_channel=per_channel), data=split)
        for node in q.synapses():
            qw = synapse_layer(node).quant_weight()
            assert torch.equal(qw.value.detach(), torch.from_numpy(node.weight))
            assert qw.bit_width.item() == 5


def int8_initializer(path: Path, shape) -> np.ndarray:
    model = onnx.load(str(path))
    found = [numpy_helper.to_array(t) for t in model.graph.initializer
             if t.data_type == onnx.TensorProto.INT8 and tuple(t.dims) == tuple(shape)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("per_channel", [True, False])
def test_qcdq_export_matches_torch_in_onnxruntime(tmp_path, per_channel):
    g = native.load(ROOT / "examples" / "models" / "digits_snn.pt")
    q = quantize(g, QConfig(4, 8, "stochastic", per_channel=per_channel), data="digits")
    layers = export_onnx(q, tmp_path)
    assert [e.name for e in layers] == [n.name for n in q.synapses()]
    shapes = q.shapes()
    for e, node in zip(layers, q.synapses(), strict=True):
        assert e.max_abs_err_brevitas < 1e-5 and e.max_abs_err_graph < 1e-5
        scale = node.weight_scale.reshape(-1, *[1] * (node.weight.ndim - 1))
        codes = np.round(node.weight / scale)
        assert np.array_equal(int8_initializer(Path(e.path), node.weight.shape), codes.astype(np.int8))
        # another batch size and analog inputs, against the graph's own float weights
        x = torch.rand(7, *shapes[node.inputs[0]], generator=torch.Generator().manual_seed(3))
        lin = torch.nn.functional.linear if node.kind == "linear" else None
        w, b = torch.from_numpy(node.weight), torch.from_numpy(node.bias)
        ref = lin(x, w, b) if lin else torch.nn.functional.conv2d(x, w, b, node.stride, node.padding)
        assert np.abs(run_onnx(e.path, x.numpy()) - ref.numpy()).max() < 1e-5


@pytest.mark.parametrize("bits", [1, 12])
def test_export_refuses_what_qcdq_cannot_hold(tmp_path, bits):
    g = native.load(ROOT / "examples" / "models" / "digits_mlp.pt")
    q = quantize(g, QConfig(bits, 8), data=None)
    with pytest.raises(QuantError, match="bit"):
        export_onnx(q, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(QuantError, match="not quantized"):
        export_onnx(g, tmp_path / "out")
