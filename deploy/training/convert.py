"""ANN -> SNN conversion: ReLU networks become IF networks (beta = 1, subtractive reset).

Rate coding: a spike of layer ``l`` stands for the activation value ``lambda_l``, so an
IF neuron of threshold ``theta_l`` firing at rate ``r`` approximates ``a_l = lambda_l * r``.
Each synapse into a neuron with gain ``g = theta / lambda`` gets ``W' = W * lambda_src * g``
and ``b' = b * g`` (``lambda_src = 1`` for the analog, direct-encoded input). Ordinary layers
use ``g = 1`` (threshold = lambda); after a residual add with an identity shortcut,
``g = 1 / lambda_src`` so the shortcut's spikes enter unscaled.

``lambda_l`` comes from data (``method="threshold-balance"``: the maximum or a percentile
of the non-zero ReLU outputs on calibration samples, Rueckauer et al. 2017) or from a
trained clip bound (``method="clip"``: :class:`deploy.training.ann.Clip`, TCL, Ho & Chang 2021).
BatchNorm folds into the preceding linear/conv. An optional bias shift of ``theta/(2T)``
per step stands in for an initial membrane of ``theta/2`` (it centres the rate-quantization
error). The output layer is an ``li`` readout with ``beta = 0``: its mean over time is
``W' * rate + b``, the ANN's logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.core import ir
from deploy.core.data import Split, fit_to_model
from deploy.core.data import load as load_data
from deploy.core.errors import DataError, DeployError, ModelError
from deploy.training.ann import Clip, Residual

METHODS = ("threshold-balance", "clip")
_SKIP = (nn.Dropout, nn.Identity)
_ACTS = (nn.ReLU, Clip)
_HINTS = {
    nn.MaxPool2d: "max-pooling has no rate-coded IF equivalent; use AvgPool2d",
    nn.Sigmoid: "only ReLU (or deploy.training.ann.Clip) activations become IF neurons",
    nn.Tanh: "only ReLU (or deploy.training.ann.Clip) activations become IF neurons",
}


# -- parsing the ANN into an ordered structure -------------------------------------------
@dataclass
class _Leaf:
    name: str
    module: nn.Module


@dataclass
class _Block:
    name: str
    body: list
    shortcut: list
    act: _Leaf


def _children(m: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """Ordered children of a container we know how to read, else None."""
    if isinstance(m, nn.Sequential):
        return list(m.named_children())
    layers = getattr(m, "layers", None)
    if isinstance(layers, nn.ModuleDict) and type(m).__name__ == "ANN":   # deploy.training.distill.teachers.ANN
        return [(f"layers.{k}", v) for k, v in layers.items()]
    return None


def _parse(m: nn.Module, prefix: str) -> list:
    kids = _children(m)
    if kids is None:
        raise ModelError(f"layer '{prefix or type(m).__name__}' ({type(m).__name__}): convert reads "
                         "nn.Sequential containers, deploy.training.ann.Residual blocks and plain layers")
    items: list = []
    for name, c in kids:
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(c, Residual):
            if not isinstance(c.act, _ACTS):
                raise ModelError(f"layer '{path}.act' ({type(c.act).__name__}): a residual block must "
                                 "end in ReLU or Clip")
            items.append(_Block(path, _parse(c.body, f"{path}.body"), _parse(c.shortcut, f"{path}.shortcut"),
                                _Leaf(f"{path}.act", c.act)))
        elif _children(c) is not None:
            items.extend(_parse(c, path))
        elif isinstance(c, _SKIP):
            continue
        elif isinstance(c, (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d,
                            nn.AdaptiveAvgPool2d, nn.Flatten, *_ACTS)):
            items.append(_Leaf(path, c))
        else:
            hint = next((h for cls, h in _HINTS.items() if isinstance(c, cls)),
                        "supported: Linear, Conv2d, ReLU, AvgPool2d, BatchNorm1d/2d, Flatten, "
                        "deploy.training.ann.Clip and deploy.training.ann.Residual")
            raise ModelError(f"layer '{path}' ({type(c).__name__}) cannot be converted to an SNN: {hint}")
    return items


def _run(items: list, x: torch.Tensor, hook=None) -> torch.Tensor:
    """The ANN forward over the parsed structure; ``hook(name, act_output)`` sees every activation."""
    for it in items:
        if isinstance(it, _Block):
            x = it.act.module(_run(it.body, x, hook) + _run(it.shortcut, x, hook))
            if hook:
                hook(it.act.name, x)
        else:
            x = it.module(x)
            if hook and isinstance(it.module, _ACTS):
                hook(it.name, x)
    return x


def _acts(items: list) -> list[_Leaf]:
    out = []
    for it in items:
        if isinstance(it, _Block):
            out += _acts(it.body) + _acts(it.shortcut) + [it.act]
        elif isinstance(it.module, _ACTS):
            out.append(it)
    return out


# -- BatchNorm folding -----------------------------------------------------------------------
def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module,
            where: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of ``bn(synapse(x))`` with BN in eval mode: ``W' = W*s``, ``b' = (b - mean)*s + beta``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ModelError(f"layer '{where}': BatchNorm without running statistics cannot be folded")
    if bn.num_features != weight.shape[0]:
        raise ModelError(f"layer '{where}': BatchNorm has {bn.num_features} features, "
                         f"the layer before it {weight.shape[0]} outputs")
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    s = gamma / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    w = weight * s.view(-1, *[1] * (weight.dim() - 1))
    return w.detach(), ((b - bn.running_mean) * s + beta).detach()


# -- calibration ---------------------------------------------------------------------------------
class _Calibration:
    """Collects per-activation statistics: the max, or non-zero values for a percentile."""

    def __init__(self, percentile: float):
        self.percentile = percentile
        self.values: dict[str, list[torch.Tensor]] = {}

    def __call__(self, name: str, y: torch.Tensor) -> None:
        v = y.detach().flatten()
        v = v[v > 0]
        if self.percentile >= 100:
            v = v.max().reshape(1) if v.numel() else v
        self.values.setdefault(name, []).append(v)

    def scale(self, name: str) -> float:
        v = torch.cat(self.values.get(name, [torch.zeros(0)]))
        if v.numel() == 0:
            return 1.0   # a layer that never fires: any positive threshold keeps it silent
        if self.percentile >= 100:
            return float(v.max())
        return float(np.percentile(v.numpy().astype(np.float64), self.percentile))


def _calibration_data(data: Any, input_shape: tuple[int, ...] | None, samples: int | None,
                      seed: int) -> torch.Tensor:
    if data is None:
        raise DataError("threshold balancing needs calibration data (a dataset name such as 'digits', "
                        "a Split or a tensor of inputs); or use method='clip'")
    if isinstance(data, str):
        data = load_data(data, seed=seed)
    if isinstance(data, Split):
        x = data.x_train
    elif isinstance(data, (tuple, list)):
        x = data[0]
    else:
        x = data
    if not isinstance(x, torch.Tensor) or len(x) == 0:
        raise DataError("calibration data is empty or not a tensor")
    if input_shape is not None:
        x = fit_to_model(x.float(), input_shape)
    return x[:samples] if samples else x


# -- graph construction -------------------------------------------------------------------------
@dataclass
class _Value:
    """A node's output: name, shape, what one unit stands for, and whether it is spikes."""

    node: str
    shape: tuple[int, ...]
    scale: float = 1.0
    spikes: bool = False


@dataclass
class _Synapse:
    name: str
    module: nn.Module
    src: _Value
    weight: torch.Tensor
    bias: torch.Tensor | None
    bn: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, scales: dict[str, float], timesteps: int, shift: bool, readout: str):
        self.scales, self.timesteps, self.shift, self.readout = scales, timesteps, shift, readout
        self.nodes: list[ir.Node] = []

    def _add(self, node: ir.Node, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        self.nodes.append(node)
        return node.name, node.out_shape([shape] * max(len(node.inputs), 1))

    @staticmethod
    def _id(prefix: str, path: str) -> str:
        return f"{prefix}{path.replace('.', '_')}"

    def emit_synapse(self, syn: _Synapse, gain: float, shift: float = 0.0) -> str:
        """Write the scaled synapse node; returns its name."""
        w = syn.weight * syn.src.scale * gain
        b = (syn.bias if syn.bias is not None else torch.zeros(w.shape[0])) * gain + shift
        w, b = w.detach().numpy().astype(np.float32), b.detach().numpy().astype(np.float32)
        if isinstance(syn.module, nn.Linear):
            node = ir.Linear(self._id("fc", syn.name), [syn.src.node], weight=w, bias=b)
        else:
            m = syn.module
            if isinstance(m.padding, str) or m.padding_mode != "zeros":
                raise ModelError(f"layer '{syn.name}': only numeric zero padding converts, got {m.padding!r}")
            node = ir.Conv2d(self._id("conv", syn.name), [syn.src.node], weight=w, bias=b, stride=m.stride,
                             padding=m.padding, dilation=m.dilation, groups=m.groups)
        self.nodes.append(node)
        return node.name

    def emit_neuron(self, name: str, inputs: list[str], threshold: float) -> str:
        node = ir.LIF(self._id("if", name), inputs, beta=1.0, threshold=float(threshold), reset="subtract")
        self.nodes.append(node)
        return node.name

    def out_shape(self, syn: _Synapse) -> tuple[int, ...]:
        m = syn.module
        if isinstance(m, nn.Linear):
            if int(np.prod(syn.src.shape)) != m.in_features or len(syn.src.shape) != 1:
                raise ModelError(f"layer '{syn.name}': expects {m.in_features} inputs, gets shape {syn.src.shape}")
            return (m.out_features,)
        node = ir.Conv2d("probe", ["x"], weight=np.zeros(tuple(m.weight.shape), np.float32), stride=m.stride,
                         padding=m.padding if not isinstance(m.padding, str) else 0,
                         dilation=m.dilation, groups=m.groups)
        node.validate([syn.src.shape])
        return node.out_shape([syn.src.shape])

    def activation(self, syn: _Synapse, act: _Leaf) -> _Value:
        lam = self.scales[act.name]
        shape = self.out_shape(syn)
        shift = lam / (2 * self.timesteps) if self.shift else 0.0
        self.emit_synapse(syn, 1.0, shift)
        name = self.emit_neuron(act.name, [self.nodes[-1].name], lam)
        return _Value(name, shape, lam, True)

    def run(self, items: list, v: _Value) -> tuple[_Value, _Synapse | None]:
        """Walk ``items`` from value ``v``; returns the last value and a synapse still open."""
        pending: _Synapse | None = None
        for it in items:
            if isinstance(it, _Block):
                if pending is not None:
                    raise ModelError(f"layer '{it.name}': a residual block must follow an activation, "
                                     f"not the bare layer '{pending.name}'")
                v = self.block(it, v)
                continue
            m = it.module
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if pending is not None:
                    raise ModelError(f"layer '{it.name}': two synaptic layers in a row ('{pending.name}' "
                                     "has no activation); fold them or add a ReLU")
                pending = _Synapse(it.name, m, v, m.weight.detach().clone(),
                                   None if m.bias is None else m.bias.detach().clone())
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if pending is None or pending.bn:
                    raise ModelError(f"layer '{it.name}' (BatchNorm): can only be folded directly after a "
                                     "Linear or Conv2d layer")
                pending.weight, pending.bias = fold_bn(pending.weight, pending.bias, m, it.name)
                pending.bn.append(it.name)
            elif isinstance(m, _ACTS):
                if pending is None:
                    continue   # inputs here are non-negative already: ReLU is the identity
                v, pending = self.activation(pending, it), None
            else:
                if pending is not None:
                    raise ModelError(f"layer '{it.name}' ({type(m).__name__}) between '{pending.name}' and its "
                                     "activation is not supported")
                v = self.reshape(it, v)
        return v, pending

    def reshape(self, it: _Leaf, v: _Value) -> _Value:
        m = it.module
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ModelError(f"layer '{it.name}' (Flatten): only start_dim=1, end_dim=-1 is supported")
            node = ir.Flatten(self._id("flatten", it.name), [v.node])
        else:
            if len(v.shape) != 3:
                raise ModelError(f"layer '{it.name}' ({type(m).__name__}): needs a (C, H, W) input, got {v.shape}")
            if isinstance(m, nn.AdaptiveAvgPool2d):
                out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
                out = tuple(v.shape[1 + i] if o is None else o for i, o in enumerate(out))
                if any(v.shape[1 + i] % out[i] for i in range(2)):
                    raise ModelError(f"layer '{it.name}' (AdaptiveAvgPool2d): input {v.shape[1:]} is not a "
                                     f"multiple of the output size {out}")
                k = (v.shape[1] // out[0], v.shape[2] // out[1])
                node = ir.Pool2d(self._id("pool", it.name), [v.node], mode="avg", kernel_size=k, stride=k)
            else:
                if not m.count_include_pad and m.padding not in (0, (0, 0)) or m.ceil_mode:
                    raise ModelError(f"layer '{it.name}' (AvgPool2d): ceil_mode and count_include_pad=False "
                                     "are not supported")
                node = ir.Pool2d(self._id("pool", it.name), [v.node], mode="avg", kernel_size=m.kernel_size,
                                 stride=m.stride or m.kernel_size, padding=m.padding)
        node.validate([v.shape])
        self.nodes.append(node)
        return _Value(node.name, node.out_shape([v.shape]), v.scale, False)

    def block(self, blk: _Block, v: _Value) -> _Value:
        """act(body(x) + shortcut(x)) as synapses -> add -> IF."""
        branches = [self.run(blk.body, v), self.run(blk.shortcut, v)]
        direct = {round(val.scale, 12) for val, syn in branches if syn is None}
        if len(direct) > 1:
            raise ModelError(f"layer '{blk.name}': both branches end without a synaptic layer at different "
                             "scales; put a 1x1 conv on one of them")
        gain = 1.0 / direct.pop() if direct else 1.0
        lam = self.scales[blk.act.name]
        shift = lam * gain / (2 * self.timesteps) if self.shift else 0.0
        inputs, shapes = [], []
        for val, syn in branches:
            if syn is None:
                inputs.append(val.node)
                shapes.append(val.shape)
            else:
                shapes.append(self.out_shape(syn))
                inputs.append(self.emit_synapse(syn, gain, shift))
                shift = 0.0
        if len(set(shapes)) != 1:
            raise ModelError(f"layer '{blk.name}': body and shortcut shapes differ: {shapes}")
        add = ir.Add(self._id("add", blk.name), inputs)
        self.nodes.append(add)
        name = self.emit_neuron(blk.act.name, [add.name], lam * gain)
        return _Value(name, shapes[0], lam, True)

    def output(self, syn: _Synapse | None, v: _Value, out_scale: float | None) -> None:
        if syn is None:
            return   # the network ends in an activation: its IF spike counts are the readout
        if self.readout == "li":
            self.emit_synapse(syn, 1.0)
            self.nodes.append(ir.LI(self._id("out", syn.name), [self.nodes[-1].name], beta=0.0))
        else:
            lam = out_scale or 1.0
            self.emit_synapse(syn, 1.0, lam / (2 * self.timesteps) if self.shift else 0.0)
            self.emit_neuron(f"out_{syn.name}", [self.nodes[-1].name], lam)


# -- public API ------------------------------------------------------------------------------------
def convert(ann: nn.Module, method: str = "threshold-balance", timesteps: int = 32, data: Any = None,
            percentile: float = 99.9, input_shape: tuple[int, ...] | None = None, samples: int | None = 2000,
            shift: bool = True, readout: str = "li", name: str | None = None, seed: int = 0,
            batch_size: int = 256) -> ir.Graph:
    """Convert a ReLU ANN into an IF SNN :class:`~deploy.core.ir.Graph` (direct encoding).

    ``data``: calibration inputs for ``method="threshold-balance"`` (dataset name, Split,
    tensor or (x, y)); ``percentile=100`` uses the maximum activation. ``method="clip"``
    takes every threshold from a trained :class:`deploy.training.ann.Clip` bound (no data needed).
    ``readout``: "li" (mean output current, the default) or "if" (spike counts).
    """
    if method not in METHODS:
        raise DeployError(f"unknown conversion method {method!r} (choose from {', '.join(METHODS)})")
    if int(timesteps) < 1:
        raise DeployError(f"timesteps must be >= 1, got {timesteps}")
    if not 0 < percentile <= 100:
        raise DeployError(f"percentile must lie in (0, 100], got {percentile}")
    if readout not in ("li", "if"):
        raise DeployError(f"readout must be 'li' or 'if', got {readout!r}")
    if not isinstance(ann, nn.Module):
        raise ModelError(f"convert takes a torch nn.Module, got {type(ann).__name__}")
    items = _parse(ann, "")
    acts = _acts(items)
    first = items[0] if items and isinstance(items[0], _Leaf) else None
    mlp_shape = (first.module.in_features,) if first and isinstance(first.module, nn.Linear) else None
    shape = tuple(input_shape or getattr(ann, "input_shape", None) or mlp_shape or ())
    ann = ann.eval()

    x = None
    if method == "threshold-balance" or data is not None:
        x = _calibration_data(data, shape or None, samples, seed)
        shape = shape or tuple(x.shape[1:])
    if not shape:
        raise ModelError("the ANN's input shape is unknown: pass input_shape=(C, H, W) or (features,)")
    needs_out = readout == "if"
    calib = _Calibration(percentile)
    scales: dict[str, float] = {}
    if x is not None:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                y = _run(items, xb, calib)
                if i == 0:
                    _check_forward(ann, xb, y)
                if needs_out:
                    calib("__out__", y)
    if method == "clip":
        for a in acts:
            if not isinstance(a.module, Clip):
                raise ModelError(f"layer '{a.name}' ({type(a.module).__name__}): method 'clip' needs every "
                                 "activation to be a trained deploy.training.ann.Clip; use method 'threshold-balance'")
            scales[a.name] = float(a.module.bound.detach().abs())
    else:
        scales = {a.name: calib.scale(a.name) for a in acts}
    out_scale = calib.scale("__out__") if needs_out and x is not None else None

    builder = _Builder(scales, int(timesteps), shift, readout)
    v, pending = builder.run(items, _Value("input", shape))
    builder.output(pending, v, out_scale)
    meta = {"converted_from": "ann", "method": method, "timesteps_calibrated": int(timesteps),
            "bias_shift": bool(shift), "readout": readout,
            "scales": {k: round(float(s), 6) for k, s in scales.items()}}
    if method == "threshold-balance":
        meta.update(percentile=float(percentile), calibration_samples=len(x))
    graph = ir.Graph(input_shape=shape, nodes=builder.nodes, timesteps=int(timesteps), encoding="direct",
                     name=name or "converted_snn", meta=meta)
    return graph.validate()


def _check_forward(ann: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The parsed structure must compute what the module computes (catches custom forwards)."""
    try:
        ref = ann(x)
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot vouch for the parse
        raise ModelError(f"the ANN fails on calibration inputs of shape {tuple(x.shape[1:])}: "
                         f"{str(exc).splitlines()[0][:160]}") from None
    if ref.shape != y.shape or not torch.allclose(ref, y, rtol=1e-4, atol=1e-4):
        raise ModelError("the ANN's forward differs from its layers run in order (custom forward?); "
                         "convert reads nn.Sequential models and deploy.training.ann.Residual blocks")

