"""Where a simulation runs: the torch device of the network and of each batch (``--device``).

The CPU is the default, and a CPU run is :func:`deploy.core.metrics.simulate_module` itself. On
another device the network moves there once; each batch is encoded on the CPU (so rate-encoded
inputs draw the same spikes as on the CPU), moves to the device, runs there with full float32
precision (no TF32), and what it recorded comes back to the CPU before its statistics are taken:
the activity and the predictions are CPU values on every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from deploy.core import ir
from deploy.core.errors import DeployError
from deploy.core.metrics import Activity, simulate_module

#: accelerator back ends torch can report as present (``torch.<type>.is_available()``)
ACCELERATORS = ("cuda", "mps", "xpu")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, or a one-line :class:`DeployError` when it is no
    device name, not a device that computes (e.g. ``meta``) or not present on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeployError(f"--device {device}: {str(exc).splitlines()[0]}") from None
    if dev.type == "cpu":
        return dev
    if dev.type not in ACCELERATORS:
        raise DeployError(f"--device {device}: simulations run on cpu or an accelerator "
                          f"({', '.join(ACCELERATORS)}), not on {dev.type}")
    backend = getattr(torch, dev.type, None)
    if backend is None or not backend.is_available():
        raise DeployError(f"--device {device}: no {dev.type.upper()} device available "
                          f"(torch.{dev.type}.is_available() is False)")
    count = getattr(backend, "device_count", lambda: 1)()
    if dev.index is not None and dev.index >= count:
        raise DeployError(f"--device {device}: this machine has {count} {dev.type.upper()} device(s), "
                          f"{dev.type}:0 to {dev.type}:{count - 1}")
    return dev


@contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, float32 matmuls and convolutions in full precision (TF32 off) while inside."""
    if device.type != "cuda":
        yield
        return
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = False
        yield
    finally:
        for f, value in zip(flags, saved, strict=True):
            f.allow_tf32 = value


class _OnDevice:
    """A SpikingNet-like module (``run``, ``encode``) moved to ``device``: :meth:`run` encodes a
    CPU batch on the CPU, runs it on the device and returns what it recorded on the CPU. Every
    other attribute (e.g. ``pop_counters``) is the module's."""

    def __init__(self, net: torch.nn.Module, device: torch.device):
        self.net, self.device = net.to(device), device

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def run(self, x: torch.Tensor, record: bool = False, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.net.encode(x, generator).to(self.device)
        with full_float32(self.device):
            out, values = self.net.run(s, record=record, encoded=True)
        return out.cpu(), {name: v.cpu() for name, v in values.items()}


def simulate_on(net: torch.nn.Module, graph: ir.Graph, x: torch.Tensor, batch_size: int = 128,
                generator: torch.Generator | None = None, progress: bool = False,
                device: str | torch.device = "cpu") -> Activity:
    """:func:`~deploy.core.metrics.simulate_module` with ``net`` and each batch of ``x`` (CPU,
    model-shaped) on ``device``; the activity and predictions are on the CPU. ``net`` moves to
    the device (``Module.to``)."""
    device = torch.device(device)
    if device.type != "cpu":
        net = _OnDevice(net, device)
    return simulate_module(net, graph, x, batch_size, generator, progress)
