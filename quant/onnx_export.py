"""Export the quantized synaptic layers of a graph to ONNX (QCDQ) with Brevitas, checked in onnxruntime.

Each synapse becomes one ONNX model (``<layer>.onnx``): its integer weight codes
are stored as int8 initializers and dequantized by ``Clip -> DequantizeLinear``
(QCDQ), followed by ``Gemm``/``Conv`` on the float input. The Brevitas layer is
built with the graph's own scale, so the exported codes are exactly the graph's.
The neurons are not exported: their fixed-point arithmetic is :mod:`quant.neurons`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.io.atomic import atomic_write
from quant.qat import brevitas_layer
from quant.quantizers import QuantError

MAX_QCDQ_BITS = 8


@dataclass
class ExportedLayer:
    """One exported synapse and how far onnxruntime's output is from torch's."""

    name: str
    path: str
    bits: int
    max_abs_err_brevitas: float   # onnxruntime vs the Brevitas layer in torch
    max_abs_err_graph: float      # onnxruntime vs the graph's dequantized weights in plain torch

    def to_dict(self) -> dict:
        return asdict(self)


def _reference(node: ir.Node, x: torch.Tensor) -> torch.Tensor:
    w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
    b = None if node.bias is None else torch.from_numpy(np.asarray(node.bias, dtype=np.float32))
    if isinstance(node, ir.Linear):
        return F.linear(x, w, b)
    return F.conv2d(x, w, b, node.stride, node.padding, node.dilation, node.groups)


def synapse_layer(node: ir.Node):
    """The Brevitas layer reproducing a quantized synapse (weights on grid, ``weight_scale`` set)."""
    bits = node.precision.get("weight")
    if bits is None or node.weight_scale is None:
        raise QuantError(f"layer '{node.name}': weights are not quantized (no weight precision/scale)")
    if bits > MAX_QCDQ_BITS:
        raise QuantError(f"layer '{node.name}': QCDQ export holds at most {MAX_QCDQ_BITS}-bit weights, "
                         f"this layer has {bits}")
    return brevitas_layer(node, bits, "nearest", scale=node.weight_scale).eval()


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_layer(node: ir.Node, in_shape: tuple[int, ...], path: str | Path, batch: int = 4,
                 seed: int = 0) -> ExportedLayer:
    """Export one quantized synapse to ``path`` and compare onnxruntime with torch on spike inputs."""
    layer = synapse_layer(node)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.export import export_onnx_qcdq

    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((batch, *in_shape), generator=g) < 0.3).float()

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            export_onnx_qcdq(layer, args=x, export_path=str(tmp), dynamo=False, input_names=["x"],
                             output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})

    path = atomic_write(path, write)
    got = _session(path).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref_b = layer(x).numpy()
        ref_g = _reference(node, x).numpy()
    return ExportedLayer(node.name, str(path), int(node.precision["weight"]),
                         float(np.abs(got - ref_b).max()), float(np.abs(got - ref_g).max()))


def export_onnx(graph: ir.Graph, outdir: str | Path, batch: int = 4, seed: int = 0) -> list[ExportedLayer]:
    """Export every synapse of a quantized graph to ``outdir/<layer>.onnx``."""
    outdir = Path(outdir)
    shapes = graph.shapes()
    nodes = graph.synapses()
    for node in nodes:  # fail before writing anything
        synapse_layer(node)
    return [export_layer(n, shapes[n.inputs[0]], outdir / f"{n.name}.onnx", batch, seed + i)
            for i, n in enumerate(nodes)]


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run an exported layer in onnxruntime."""
    return _session(Path(path)).run(None, {"x": np.asarray(x, dtype=np.float32)})[0]
