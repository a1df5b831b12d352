"""ONNX export of one timestep, run with onnxruntime against the torch layers of SpikingNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deploy.core import ir
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet, build
from deploy.io.loader import load_model
from deploy.io.onnx_export import export_onnx

torch.set_num_threads(1)


def torch_one_step(graph: ir.Graph, x: torch.Tensor) -> torch.Tensor:
    """The reference: SpikingNet's own torch modules per node, neurons as identity."""
    net = SpikingNet(graph)
    values = {"input": x}
    with torch.no_grad():
        for n in graph.nodes:
            ins = [values[i] for i in n.inputs]
            values[n.name] = ins[0] if n.kind in ("lif", "li") else net.layers[n.name](*ins)
    return values[graph.output.name]


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


CONV_SPEC = {"input_shape": [2, 9, 9], "timesteps": 4, "layers": [
    {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "lif", "beta": 0.9},
    {"type": "pool2d", "mode": "avg"},
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
    {"type": "lif"}, {"type": "pool2d", "mode": "sum", "kernel_size": 2, "stride": 1},
    {"type": "pool2d", "mode": "max", "kernel_size": 2, "stride": 1, "padding": 1},
    {"type": "flatten"}, {"type": "linear", "out_features": 7}, {"type": "li", "beta": 0.8}]}


def test_conv_net_matches_torch(tmp_path):
    graph = build(CONV_SPEC, seed=2).to_graph()
    path = export_onnx(graph, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("Identity") == 3 and "Conv" in kinds and "Gemm" in kinds
    x = torch.rand(5, 2, 9, 9) * 2 - 0.5
    ours = run_onnx(path, x.numpy())
    ref = torch_one_step(graph, x).numpy()
    assert ours.shape == (5, 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_residual_mlp_without_bias_matches_torch(tmp_path):
    rng = np.random.default_rng(0)
    w = lambda o, i: rng.normal(0, 0.5, (o, i)).astype(np.float32)  # noqa: E731
    graph = ir.Graph((6,), [ir.Linear("a", ["input"], weight=w(8, 6)), ir.LIF("na", ["a"]),
                            ir.Linear("b", ["na"], weight=w(8, 8), bias=np.ones(8, np.float32)),
                            ir.Add("sum", ["na", "b"]), ir.Linear("c", ["sum"], weight=w(3, 8)),
                            ir.LIF("nc", ["c"], beta=0.5)]).validate()
    path = export_onnx(graph, tmp_path / "res.onnx")
    x = torch.randn(4, 6)
    np.testing.assert_allclose(run_onnx(path, x.numpy()), torch_one_step(graph, x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_shipped_model_exports(tmp_path):
    model = Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn.pt"
    if not model.is_file():
        pytest.skip("shipped model not present")
    graph = load_model(model)
    x = torch.rand(3, *graph.input_shape)
    path = export_onnx(graph, tmp_path / "digits.onnx")
    np.testing.assert_allclose(run_onnx(path, x.numpy()), torch_one_step(graph, x).numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_kind_fails_and_leaves_no_file(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Scale(ir.Node):
        kind = "test_scale_onnx"

    graph = ir.Graph((4,), [ir.Linear("fc", ["input"], weight=np.eye(4, dtype=np.float32)),
                            Scale("s", ["fc"])]).validate()
    with pytest.raises(ModelError, match="layer 's': layer type 'test_scale_onnx' has no ONNX export"):
        export_onnx(graph, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []
