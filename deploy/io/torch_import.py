"""Convert live torch / snnTorch modules to the IR by their structure (no tracing).

Supported: ``nn.Sequential`` (nested too) of ``nn.Linear``, ``nn.Conv2d``,
``nn.AvgPool2d``, ``nn.MaxPool2d``, ``nn.Flatten``, ``nn.Identity``/``nn.Dropout``
(skipped: identity at inference), snnTorch ``Leaky`` and ``Synaptic``, this
project's own ``deploy.snn.neurons.LIF``/``LI``, and a whole ``SpikingNet``.
ANN activations are rejected (convert the ANN first); anything else is an
error naming the layer and its type.

snnTorch reset timing. The IR resets right after the spike (see
:mod:`deploy.ir`). snnTorch's default ``reset_delay=True`` applies the reset one
step later, without decaying it: ``u[t] = beta u[t-1] + x[t] - s[t-1] thr``
where the IR has ``beta (u[t-1] - s[t-1] thr)``. Consequences, all checked
against snnTorch in ``tests/test_io_torch.py``:

- ``reset_delay=False``: identical spikes for reset "zero"; for "subtract"
  identical as long as the membrane never exceeds twice the threshold, which
  holds whenever no single step's input current exceeds the threshold
  (otherwise snnTorch subtracts the threshold once more before deciding the
  next spike);
- ``reset_delay=True``: identical for ``Leaky`` with reset "zero" and for
  reset "subtract" with ``beta = 1``; otherwise the IR model differs slightly
  and a warning says so (build the snnTorch net with ``reset_delay=False``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy import ir
from deploy.errors import ModelError
from deploy.io.nir_io import compact
from deploy.snn import neurons

ANN_LAYERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
              nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
              nn.Softmax, nn.LogSoftmax, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
SKIPPED = (nn.Identity, nn.Dropout, nn.Dropout2d)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().float().numpy().copy()


def _is_snntorch(m: nn.Module, cls: str) -> bool:
    return type(m).__name__ == cls and type(m).__module__.startswith("snntorch")


def flatten_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf layers of (nested) ``nn.Sequential`` containers, with dotted names."""
    if not isinstance(module, nn.Sequential):
        kind = type(module).__name__
        raise ModelError(f"model '{prefix or kind}': {kind} is not an nn.Sequential; its forward() "
                         "cannot be converted: wrap its layers in nn.Sequential")
    out = []
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        out += flatten_layers(child, full) if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def _conv(name: str, m: nn.Conv2d, inputs: list[str]) -> ir.Conv2d:
    if m.padding_mode != "zeros":
        raise ModelError(f"layer '{name}': Conv2d padding_mode {m.padding_mode!r} is not supported")
    pad = m.padding
    if isinstance(pad, str):
        k, d = m.kernel_size, m.dilation
        if pad == "valid":
            pad = (0, 0)
        elif all(x % 2 for x in k):
            pad = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
        else:
            raise ModelError(f"layer '{name}': padding='same' needs an odd kernel, got {k}")
    return ir.Conv2d(name, inputs, weight=_np(m.weight), bias=_np(m.bias), stride=m.stride,
                     padding=pad, dilation=m.dilation, groups=m.groups)


def _pool(name: str, m: nn.Module, inputs: list[str]) -> ir.Pool2d:
    kind = type(m).__name__
    if m.ceil_mode:
        raise ModelError(f"layer '{name}': {kind} with ceil_mode=True is not supported")
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise ModelError(f"layer '{name}': AvgPool2d divisor_override is not supported")
        if not m.count_include_pad and m.padding not in (0, (0, 0)):
            raise ModelError(f"layer '{name}': AvgPool2d count_include_pad=False is not supported")
        mode = "avg"
    else:
        if m.dilation not in (1, (1, 1)) or m.return_indices:
            raise ModelError(f"layer '{name}': MaxPool2d with dilation or return_indices is not supported")
        mode = "max"
    return ir.Pool2d(name, inputs, mode=mode, kernel_size=m.kernel_size,
                     stride=m.stride if m.stride is not None else m.kernel_size, padding=m.padding)


def _snntorch_neuron(name: str, m: nn.Module, inputs: list[str], shape: tuple[int, ...]) -> ir.LIF:
    kind = type(m).__name__
    if float(m.graded_spikes_factor.detach().float().mean()) != 1.0 or m.graded_spikes_factor.numel() != 1:
        raise ModelError(f"layer '{name}': snnTorch {kind} with graded spikes is not supported")
    if m.inhibition or m.state_quant:
        raise ModelError(f"layer '{name}': snnTorch {kind} with inhibition or state_quant is not supported")
    reset = {0: "subtract", 1: "zero"}.get(int(m.reset_mechanism_val))
    if reset is None:
        raise ModelError(f"layer '{name}': snnTorch reset_mechanism 'none' is not supported")
    beta = compact(_np(m.beta.clamp(0, 1)), shape)
    alpha = compact(_np(m.alpha.clamp(0, 1)), shape) if kind == "Synaptic" else 0.0
    if m.reset_delay:
        exact = kind == "Leaky" and reset == "zero" or reset == "subtract" and np.all(np.asarray(beta) == 1)
        if not exact:
            warnings.warn(f"layer '{name}': snnTorch {kind}(reset_delay=True) resets one step later "
                          "than the IR; spikes may differ slightly (use reset_delay=False for an "
                          "exact match)", UserWarning, stacklevel=4)
    return ir.LIF(name, inputs, beta=beta, threshold=compact(_np(m.threshold), shape), reset=reset,
                  alpha=alpha)


def _node(name: str, m: nn.Module, inputs: list[str], shape: tuple[int, ...]) -> ir.Node | None:
    kind = type(m).__name__
    if isinstance(m, SKIPPED):
        return None
    if isinstance(m, nn.Linear):
        return ir.Linear(name, inputs, weight=_np(m.weight), bias=_np(m.bias))
    if isinstance(m, nn.Conv2d):
        return _conv(name, m, inputs)
    if isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
        return _pool(name, m, inputs)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ModelError(f"layer '{name}': Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) "
                             "is not supported (only start_dim=1, end_dim=-1)")
        return ir.Flatten(name, inputs)
    if _is_snntorch(m, "Leaky") or _is_snntorch(m, "Synaptic"):
        return _snntorch_neuron(name, m, inputs, shape)
    if isinstance(m, neurons.LIF):
        return ir.LIF(name, inputs, beta=compact(_np(m.beta.clamp(0, 1)), shape),
                      threshold=compact(_np(m.threshold), shape), reset=m.reset,
                      alpha=compact(_np(m.alpha), shape))
    if isinstance(m, neurons.LI):
        return ir.LI(name, inputs, beta=compact(_np(m.beta), shape))
    if isinstance(m, ANN_LAYERS):
        raise ModelError(f"layer '{name}': ANN layer {kind}: convert it with `deploy convert`")
    raise ModelError(f"layer '{name}': unsupported layer type {kind} ({type(m).__module__})")


def _input_shape(layers: list[tuple[str, nn.Module]], sample_input: Any) -> tuple[int, ...]:
    if isinstance(sample_input, torch.Tensor):
        if sample_input.dim() < 2:
            raise ModelError(f"sample_input must be a batch (B, ...), got shape {tuple(sample_input.shape)}")
        return tuple(int(s) for s in sample_input.shape[1:])
    if sample_input is not None:
        return tuple(int(s) for s in sample_input)
    first = next((m for _, m in layers if not isinstance(m, SKIPPED)), None)
    if isinstance(first, nn.Linear):
        return (int(first.in_features),)
    name = next((n for n, m in layers if m is first), "?")
    raise ModelError(f"layer '{name}': input size unknown for {type(first).__name__}; pass "
                     "sample_input (a batch) or input_shape (C, H, W)")


def convert(module: nn.Module, sample_input: torch.Tensor | tuple[int, ...] | None = None,
            timesteps: int = 8, encoding: str = "direct", name: str | None = None) -> ir.Graph:
    """Convert ``module`` to a validated Graph.

    ``sample_input`` is a batch ``(B, ...)`` as one timestep of the module sees it,
    or the input shape without batch; optional when the first layer is Linear.
    A ``SpikingNet`` keeps its own timesteps and encoding.
    """
    from deploy.snn.net import SpikingNet

    if isinstance(module, SpikingNet):  # keeps its own timesteps and encoding
        return module.to_graph()
    layers = flatten_layers(module)
    shape = _input_shape(layers, sample_input)
    input_shape, nodes, prev = shape, [], "input"
    for qual, m in layers:
        node = _node(qual.replace(".", "_"), m, [prev], shape)
        if node is None:
            continue
        node.validate([shape])
        shape = tuple(int(s) for s in node.out_shape([shape]))
        nodes.append(node)
        prev = node.name
    if not nodes:
        raise ModelError(f"model {type(module).__name__} has no convertible layers")
    graph = ir.Graph(input_shape=input_shape, nodes=nodes, timesteps=int(timesteps), encoding=encoding,
                     name=name or type(module).__name__.lower(), meta={"source": "torch module"})
    return graph.validate()
