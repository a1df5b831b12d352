"""Placing a graph on crossbar arrays: unrolling, tiling, bit-slicing, utilisation.

A conv layer is unrolled channel-major to ``C*kh*kw`` rows and ``out``
outputs; a linear layer has ``in`` rows. Rows are tiled onto arrays on whole
kernel windows, so that every kernel window sits in one array: an array holds
at most ``floor(rows / (kh*kw))`` input channels (14 = 126 of 128 rows for 3x3
kernels), and the channels are spread evenly over the ``n`` row tiles this
needs (``ceil(C / n)`` per tile; 32 channels -> 11 + 11 + 10). Linear layers
are tiled the same way on rows. Each output needs ``groups`` columns (polarities x
slices, see :mod:`hwmodels.imc.slicing`) in every row tile, plus the offset
mode's dummy columns; the columns of a row tile are packed onto
``ceil(columns / cols)`` arrays.

Inputs that are not binary spikes are fed as bit-planes, one array read per
plane, and recombined by a digital input shift-add, as NeuroSim does for
multi-bit activations: direct-encoded pixels in [0, 1] as ``input_bits``
planes; sums and averages of spikes (sum/avg pooling, residual adds) exactly,
with as many planes as their integer range needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deploy.core import ir
from deploy.core.budget import check_budget, estimate_bytes
from deploy.core.errors import TargetError
from hwmodels.base import Mapping, Violation
from hwmodels.imc.config import ImcConfig
from hwmodels.imc.slicing import Slicing, slice_codes, weight_codes


@dataclass
class LayerMap:
    """Placement and quantization of one synaptic layer."""

    name: str
    kind: str
    slicing: Slicing
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    rows_used: int               # unrolled rows (C*kh*kw or in_features)
    tile_units: int              # input channels (conv) or rows (linear) per row tile (the last may hold fewer)
    row_tiles: int
    columns: int                 # columns per row tile (outputs x groups + dummy columns)
    col_tiles: int
    positions: int               # array reads per input vector (output pixels; 1 for linear)
    analog: bool                 # input is not binary spikes: fed as bit-planes
    input_max: float             # value range of an analog input
    planes: int
    input_step: float            # value of the least significant bit-plane
    codes: np.ndarray
    scale: np.ndarray
    bias: np.ndarray | None
    steps: np.ndarray            # conversion step per column group (SA reference = step / 2)
    kernel: tuple[int, int] = (1, 1)
    ideal_counts: dict[str, float] = field(default_factory=dict)
    trims: np.ndarray | None = None  # per-column reference trim (row tile, group, output'), None = 0

    @property
    def column_count(self) -> int:
        """Converted columns per read: row tiles x groups x (outputs + offset dummy)."""
        return self.row_tiles * self.slicing.groups * (self.outputs + (1 if self.slicing.dummy else 0))

    @property
    def arrays(self) -> int:
        return self.row_tiles * self.col_tiles

    @property
    def outputs(self) -> int:
        return int(self.codes.shape[0])

    @property
    def cells_used(self) -> int:
        return self.rows_used * self.columns

    def utilisation(self, rows: int, cols: int) -> float:
        return self.cells_used / (self.arrays * rows * cols)


@dataclass
class ImcMapping(Mapping):
    """A graph placed on IMC arrays (``graph`` holds the quantized weights)."""

    config: ImcConfig
    adc: bool
    layers: dict[str, LayerMap]
    notes: list[str] = field(default_factory=list)

    #: True once conversion steps have been set from sample inputs (:meth:`with_steps`)
    calibrated: bool = False

    def with_steps(self, steps: dict[str, list[float]], note: str) -> ImcMapping:
        """A calibrated copy: the given layers' conversion steps replaced, ``note`` added.
        The weights and every other layer are shared with this mapping, which stays as it is."""
        layers = {name: replace(lm, steps=np.asarray(steps[name], dtype=lm.steps.dtype)) if name in steps else lm
                  for name, lm in self.layers.items()}
        return replace(self, layers=layers, notes=[*self.notes, note], calibrated=True)

    def summary(self) -> list[dict[str, Any]]:
        """One row per synaptic layer: arrays, utilisation, columns, planes."""
        c = self.config
        return [{"layer": lm.name, "rows_used": lm.rows_used, "row_tiles": lm.row_tiles,
                 "columns": lm.columns, "col_tiles": lm.col_tiles, "arrays": lm.arrays,
                 "utilisation": lm.utilisation(c.rows, c.cols), "planes": lm.planes}
                for lm in self.layers.values()]


def input_range(graph: ir.Graph, name: str) -> tuple[bool, float, float | None]:
    """(analog, max value, unit) of the tensor a synapse reads, from the graph alone.

    ``unit`` is set when the values are integer multiples of it (sums and averages of
    spikes), so that bit-planes represent them exactly; ``None`` for real values.
    """
    if name == "input":
        return (graph.encoding == "direct", 1.0, None if graph.encoding == "direct" else 1.0)
    node = graph[name]
    if node.kind == "lif":
        return (False, 1.0, 1.0)
    if node.kind == "flatten":
        return input_range(graph, node.inputs[0])
    if node.kind == "pool2d":
        analog, top, unit = input_range(graph, node.inputs[0])
        if node.mode == "max":
            return (analog, top, unit)
        k = node.kernel_size[0] * node.kernel_size[1]
        if node.mode == "avg":
            return (True, top, None if unit is None else unit / k)
        return (True, top * k, unit)
    if node.kind == "add":
        ranges = [input_range(graph, i) for i in node.inputs]
        units = [r[2] for r in ranges]
        unit = min(units) if None not in units and all(abs(u / min(units) - round(u / min(units))) < 1e-9
                                                         for u in units) else None
        return (True, float(sum(r[1] for r in ranges)), unit)
    raise TargetError(f"layer '{name}' ({node.kind}) feeds a crossbar with values that are neither spikes "
                      "nor bounded non-negative inputs; put a LIF layer in between")


def _graph_quant(node: ir.Node, cfg: ImcConfig) -> tuple[int, bool]:
    """(weight bits, codes come from the graph) for one synaptic node."""
    bits = node.precision.get("weight")
    if bits is not None and node.weight_scale is not None:
        if cfg.weight_bits_explicit and bits > cfg.weight_bits:
            raise TargetError(f"layer '{node.name}': {bits}-bit weights do not fit the configured "
                              f"weight_bits = {cfg.weight_bits}")
        return int(bits), True
    return cfg.weight_bits, False


def check_graph(graph: ir.Graph, cfg: ImcConfig) -> list[Violation]:
    """Resource violations: kernel windows taller than an array, grouped convolutions.
    Recurrent connections raise TargetError: the cost model pipelines layers over
    timesteps, which a feedback loop forbids."""
    for src, dst in graph.recurrent_edges():
        name = "imc-adc" if cfg.adc_bits > 1 or cfg.adc_share > 1 else "imc"
        raise TargetError(f"target '{name}' does not run recurrent connections (layer '{dst}' reads '{src}' "
                          "from the previous step)")
    out = []
    for node in graph.synapses():
        if isinstance(node, ir.Conv2d):
            kk = int(node.weight.shape[2] * node.weight.shape[3])
            if kk > cfg.rows:
                out.append(Violation(node.name, "array rows for one kernel window", kk, cfg.rows))
            if node.groups != 1:
                out.append(Violation(node.name, "convolution groups", node.groups, 1))
    return out


def _fanout(lm_kind: str, node: ir.Node, in_shape: tuple[int, ...], weight: torch.Tensor) -> torch.Tensor:
    """d/dx of sum(layer(x, weight)): per input element, its summed weight over all reads."""
    with torch.enable_grad():
        x = torch.ones(1, *in_shape, requires_grad=True)
        w = weight.detach()
        if lm_kind == "conv2d":
            y = F.conv2d(x, w, stride=node.stride, padding=node.padding, dilation=node.dilation)
        else:
            y = x @ w.t()
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0]


def map_layer(graph: ir.Graph, node: ir.Node, shapes: dict[str, tuple[int, ...]], cfg: ImcConfig,
              steps: np.ndarray | None) -> LayerMap:
    bits, from_graph = _graph_quant(node, cfg)
    sl = Slicing(bits, cfg.bits_per_cell, cfg.signed)
    codes, scale = weight_codes(node, sl, from_graph)
    in_shape, out_shape = shapes[node.inputs[0]], shapes[node.name]
    analog, top, unit = input_range(graph, node.inputs[0])
    if analog and unit is not None:               # integer multiples of unit: exact planes
        planes, in_step = max(1, math.ceil(math.log2(top / unit + 1))), unit
    else:
        planes = cfg.input_bits if analog else 1
        in_step = top / (2 ** planes - 1) if analog else 1.0
    cols = node.weight.shape[0] * sl.groups
    if isinstance(node, ir.Conv2d):
        kh, kw = (int(s) for s in node.weight.shape[2:])
        row_tiles = math.ceil(in_shape[0] / (cfg.rows // (kh * kw)))
        unit = math.ceil(in_shape[0] / row_tiles)
        rows_used, positions, kernel = in_shape[0] * kh * kw, int(np.prod(out_shape[1:])), (kh, kw)
    else:
        rows_used, positions, kernel = int(node.weight.shape[1]), 1, (1, 1)
        row_tiles = math.ceil(rows_used / cfg.rows)
        unit = math.ceil(rows_used / row_tiles)
    columns = cols + sl.dummy_columns()
    if steps is None:
        steps = np.full(sl.groups, cfg.step, dtype=np.float32)
    lm = LayerMap(name=node.name, kind=node.kind, slicing=sl, in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                  rows_used=rows_used, tile_units=unit, row_tiles=row_tiles, columns=columns,
                  col_tiles=math.ceil(columns / cfg.cols), positions=positions, analog=analog, input_max=top,
                  planes=planes, input_step=in_step, codes=codes, scale=scale,
                  bias=None if node.bias is None else np.asarray(node.bias, dtype=np.float32),
                  steps=np.asarray(steps, dtype=np.float32), kernel=kernel)
    lm.ideal_counts = full_input_counts(lm, node, slice_codes(torch.from_numpy(codes), sl))
    return lm


def full_input_counts(lm: LayerMap, node: ir.Node, digits: torch.Tensor) -> dict[str, float]:
    """Counters of one read of every position with *all* inputs active (one timestep, one plane):
    active row activations and the summed cell digits on active rows; expected counts
    at input rate r are r times these."""
    kind = "conv2d" if lm.kind == "conv2d" else "linear"
    col_digits = digits.sum(dim=(0, 1)).unsqueeze(0).float()      # (1, C, kh, kw) or (1, in)
    ones = torch.ones_like(col_digits)
    fan = _fanout(kind, node, lm.in_shape, ones)
    dig = _fanout(kind, node, lm.in_shape, col_digits)
    return {"row_activations": float(fan.sum()), "digit_sum": float(dig.sum())}


def learned_steps(graph: ir.Graph, cfg: ImcConfig, adc: bool) -> tuple[dict[str, Any], list[str]]:
    """Conversion steps and reference trims stored by hardware-aware retraining, when they
    match this configuration: {layer: {"steps": [...], "trims": [...] or None}}."""
    meta = graph.meta.get("imc")
    if not isinstance(meta, dict) or "steps" not in meta:
        return {}, []
    want = {"adc_bits": cfg.adc_bits, "rows": cfg.rows, "bits_per_cell": cfg.bits_per_cell, "signed": cfg.signed}
    diff = [k for k, v in want.items() if meta.get(k) != v]
    if diff:
        return {}, [f"retrained conversion steps in the model were ignored: {diff[0]} differs "
                    f"({meta.get(diff[0])} in the model, {want[diff[0]]} here)"]
    synapses = {node.name: node for node in graph.synapses()}
    for name, steps in dict(meta["steps"]).items():
        # weights requantized after retraining: the steps belong to column groups that no longer exist
        if name not in synapses:
            continue
        groups = Slicing(_graph_quant(synapses[name], cfg)[0], cfg.bits_per_cell, cfg.signed).groups
        if len(steps) != groups:
            return {}, [f"retrained conversion steps in the model were ignored: layer '{name}' has {groups} "
                        f"column groups at its stored weight precision, the steps were learned for {len(steps)}"]
    trims = meta.get("trims") or {}
    learned = {name: {"steps": steps, "trims": trims.get(name)} for name, steps in dict(meta["steps"]).items()}
    return learned, [f"conversion steps and per-column SA references learned by retraining at "
                     f"{cfg.adc_bits}-bit conversion"]


def map_graph(graph: ir.Graph, cfg: ImcConfig, adc: bool) -> ImcMapping:
    """Quantize, slice and tile every synaptic layer; the returned graph carries the
    quantized weights (``weight = code * weight_scale``) and their precision."""
    check_budget(estimate_bytes(graph, 0, target="imc"), f"mapping model '{graph.name}' on crossbars")
    shapes = graph.shapes()
    learned, notes = learned_steps(graph, cfg, adc)
    deployed = graph.copy()
    layers = {}
    for node in deployed.synapses():
        found = learned.get(node.name, {})
        steps, trims = found.get("steps"), found.get("trims")
        lm = map_layer(deployed, node, shapes, cfg, steps)
        if trims is not None:
            if len(trims) != lm.column_count:
                raise TargetError(f"layer '{node.name}': {len(trims)} learned reference trims, "
                                  f"{lm.column_count} columns expected")
            lm.trims = np.asarray(trims, dtype=np.float32)
        layers[node.name] = lm
        shape = (-1,) + (1,) * (node.weight.ndim - 1)
        node.weight = (lm.codes * lm.scale.reshape(shape)).astype(np.float32)
        node.weight_scale = lm.scale.copy()
        node.precision = {**node.precision, "weight": lm.slicing.bits}
    return ImcMapping(graph=deployed, config=cfg, adc=adc, layers=layers, notes=notes)
