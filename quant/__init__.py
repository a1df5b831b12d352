"""Quantization of spiking networks: quantizers, fixed-point neurons, PTQ, Brevitas QAT, ONNX
export and the TinySNN-style precision search.

    import quant
    q = quant.quantize("examples/models/digits_snn.pt", weight_bits=4, neuron_bits=8, data="digits")
    result = quant.search(graph, deploy.core.data.load("digits"), max_acc_drop=1.0)
    result.graph            # the chosen quantized Graph; result.to_json() is search.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core import ir
from deploy.core.data import Split
from quant.evaluate import Evaluation, evaluate, memory
from quant.neurons import FixedPointLI, FixedPointLIF, NeuronFormat, quantized_net
from quant.ptq import QConfig
from quant.quantizers import ROUNDING, QuantError, QuantSpec, fake_quantize, round_ste, round_values
from quant.search import Point, SearchResult, search

__all__ = ["quantize", "search", "export_onnx", "qat", "QConfig", "QuantSpec", "QuantError", "NeuronFormat",
           "FixedPointLIF", "FixedPointLI", "quantized_net", "evaluate", "memory", "Evaluation",
           "SearchResult", "Point", "fake_quantize", "round_ste", "round_values", "ROUNDING"]


def _graph(model: Any) -> ir.Graph:
    if isinstance(model, ir.Graph):
        return model.copy().validate()
    if hasattr(model, "to_graph"):
        return model.to_graph()
    from deploy.io import native

    return native.load(Path(model))


def _split(data: str | Split | None, seed: int) -> Split | None:
    if data is None or isinstance(data, Split):
        return data
    from deploy.core import data as datasets

    return datasets.load(data, seed=seed)


def quantize(model: Any, config: QConfig | None = None, *, weight_bits: int = 8, neuron_bits: int = 16,
             rounding: str = "nearest", scheme: str = "ptq", per_channel: bool = True,
             data: str | Split | None = "digits", calib_samples: int = 256, qat_epochs: int = 3,
             seed: int = 0) -> ir.Graph:
    """Quantize a model (Graph, SpikingNet or native checkpoint path) with one configuration.

    PTQ calibrates the membrane formats on ``calib_samples`` training inputs of
    ``data`` (worst-case ranges when ``data=None``); QAT fine-tunes on ``data``.
    """
    from deploy.core.data import fit_to_model
    from quant import ptq

    graph = _graph(model)
    config = config or QConfig(weight_bits, neuron_bits, rounding, scheme, per_channel)
    split = _split(data, seed)
    if config.scheme == "qat":
        if split is None:
            raise QuantError("QAT needs training data (data=None given)")
        from quant.qat import qat as run_qat

        return run_qat(graph, config, split, epochs=qat_epochs, calib_samples=calib_samples, seed=seed)
    calib = None
    if split is not None:
        calib = fit_to_model(split.x_train[:calib_samples], graph.input_shape, graph.encoding)
    return ptq.quantize(graph, config, calib, seed)


def qat(*args, **kwargs) -> ir.Graph:
    """Quantization-aware training (:func:`quant.qat.qat`); imports Brevitas on first use."""
    from quant.qat import qat as run_qat

    return run_qat(*args, **kwargs)


def export_onnx(*args, **kwargs):
    """QCDQ export of a quantized graph's synapses (:func:`quant.onnx_export.export_onnx`)."""
    from quant.onnx_export import export_onnx as run

    return run(*args, **kwargs)
