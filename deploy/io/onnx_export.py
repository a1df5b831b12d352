"""ONNX export of one timestep of the network's synaptic part.

ONNX has no spiking neurons, so the exported model is the stateless part of the
network for a single timestep: linear (``Gemm``/``MatMul``), conv (``Conv``),
pooling, flatten and residual adds, with every neuron layer (LIF, LI) written as
an ``Identity`` node. Feeding it one timestep of input spikes gives the synaptic
currents each neuron layer receives; the neuron dynamics themselves (decay,
threshold, reset, time loop) are not in the file. Weights are the real-valued
(dequantized) float32 weights. Input ``input`` is ``(batch, *input_shape)``,
output ``output``; opset 17.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploy.core import ir
from deploy.core.errors import ModelError
from deploy.io.atomic import atomic_write

OPSET = 17
IR_VERSION = 8  # the ONNX IR version that goes with opset 17


def _node(n: ir.Node, ins: list[str], out: str, inits: list[onnx.TensorProto]) -> list[onnx.NodeProto]:
    def const(suffix: str, value: np.ndarray) -> str:
        name = f"{n.name}.{suffix}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    if isinstance(n, ir.Linear):
        if n.bias is None:
            wt = const("weight_t", np.asarray(n.weight).T)
            return [helper.make_node("MatMul", [ins[0], wt], [out], name=n.name)]
        args = [ins[0], const("weight", n.weight), const("bias", n.bias)]
        return [helper.make_node("Gemm", args, [out], name=n.name, transB=1)]
    if isinstance(n, ir.Conv2d):
        args = [ins[0], const("weight", n.weight)] + ([const("bias", n.bias)] if n.bias is not None else [])
        return [helper.make_node("Conv", args, [out], name=n.name, kernel_shape=list(n.weight.shape[2:]),
                                 strides=list(n.stride), dilations=list(n.dilation), group=int(n.groups),
                                 pads=[n.padding[0], n.padding[1], n.padding[0], n.padding[1]])]
    if isinstance(n, ir.Pool2d):
        pads = [n.padding[0], n.padding[1], n.padding[0], n.padding[1]]
        attrs = {"kernel_shape": list(n.kernel_size), "strides": list(n.stride), "pads": pads}
        if n.mode == "max":
            return [helper.make_node("MaxPool", ins, [out], name=n.name, **attrs)]
        if n.mode == "avg":
            return [helper.make_node("AveragePool", ins, [out], name=n.name, count_include_pad=1, **attrs)]
        area = const("window", np.array(n.kernel_size[0] * n.kernel_size[1], dtype=np.float32))
        return [helper.make_node("AveragePool", ins, [f"{out}.avg"], name=f"{n.name}.avg",
                                 count_include_pad=1, **attrs),
                helper.make_node("Mul", [f"{out}.avg", area], [out], name=n.name)]
    if isinstance(n, ir.Flatten):
        return [helper.make_node("Flatten", ins, [out], name=n.name, axis=1)]
    if isinstance(n, ir.Add):
        return [helper.make_node("Sum", ins, [out], name=n.name)]
    if isinstance(n, (ir.LIF, ir.LI)):
        return [helper.make_node("Identity", ins, [out], name=n.name, doc_string=f"{n.kind} neurons")]
    raise ModelError(f"layer '{n.name}': layer type '{n.kind}' has no ONNX export")


def to_onnx(graph: ir.Graph) -> onnx.ModelProto:
    """Build the one-timestep ONNX model (see the module docstring)."""
    shapes = graph.validate().shapes()
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    last = graph.output.name
    for n in graph.nodes:
        ins = [i if i == "input" else f"{i}.out" for i in n.inputs]
        nodes += _node(n, ins, "output" if n.name == last else f"{n.name}.out", inits)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *graph.input_shape])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *shapes[last]])
    g = helper.make_graph(nodes, graph.name or "model", [x], [y], initializer=inits,
                          doc_string="one timestep of the synaptic layers; neurons are Identity")
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="neurodeploy")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"timesteps": str(graph.timesteps), "encoding": graph.encoding,
                                   "neurons": "Identity"})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(graph: ir.Graph, path: str | Path) -> Path:
    """Write the one-timestep ONNX model of ``graph`` to ``path``, atomically."""
    model = to_onnx(graph)
    return atomic_write(path, lambda p: onnx.save(model, str(p)))
