"""Record what a module's ``forward()`` does on one sample (no code analysis).

The way NIR's own torch tracer works: forward hooks on the leaf modules record
each call (its input and primary output tensor) and a ``TorchFunctionMode``
records the tensor operations run between leaf calls (adds, reshapes, ...).
A loop over time calls the same leaves again and again; :func:`timestep_slots`
finds that repetition. Turning the record into a graph is
:mod:`deploy.io.torch_import`'s job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass
class Call:
    """One call of a leaf module: its (first) input and primary output tensor."""

    name: str
    module: nn.Module
    inp: torch.Tensor | None
    out: torch.Tensor | None


@dataclass
class Op:
    """A tensor operation outside leaf modules; ``tensors`` are its tensor arguments."""

    name: str
    args: tuple
    kwargs: dict
    tensors: list[torch.Tensor]
    outputs: list[torch.Tensor]


@dataclass
class Trace:
    """The calls and operations of one forward pass, in order."""

    sample: torch.Tensor
    events: list[Call | Op] = field(default_factory=list)
    #: forward()'s (first) returned tensor
    result: torch.Tensor | None = None

    @property
    def calls(self) -> list[Call]:
        return [e for e in self.events if isinstance(e, Call)]


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _primary(obj: Any) -> torch.Tensor | None:
    """The tensor a leaf passes on: itself, or the first element of a tuple (snnTorch's spikes)."""
    return next(_tensors(obj[0] if isinstance(obj, (tuple, list)) and obj else obj), None)


class _Recorder(TorchFunctionMode):
    def __init__(self, trace: Trace):
        super().__init__()
        self.trace, self.depth, self.pending = trace, 0, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            outs = list(_tensors(out))
            if outs:
                self.trace.events.append(Op(getattr(func, "__name__", type(func).__name__), args, kwargs,
                                            list(_tensors((args, kwargs))), outs))
        return out

    def enter(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.depth == 0:
            self.pending.append(next(_tensors((args, kwargs)), None))
        self.depth += 1

    def leave(self, name: str, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.trace.events.append(Call(name, module, self.pending.pop(), _primary(output)))


def leaf_modules(module: nn.Module, is_leaf: Callable[[nn.Module], bool],
                 prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Modules the trace records as units (``is_leaf`` or childless), with dotted names."""
    if is_leaf(module) or not any(True for _ in module.children()):
        return [(prefix, module)]
    out = []
    for name, child in module.named_children():
        out += leaf_modules(child, is_leaf, f"{prefix}.{name}" if prefix else name)
    return out


def record(module: nn.Module, sample: torch.Tensor, is_leaf: Callable[[nn.Module], bool]) -> Trace:
    """Run ``module(sample)`` once in eval mode without gradients, recording leaf calls and ops.

    Buffers (e.g. snnTorch's hidden ``mem``) and train/eval flags are restored afterwards.
    """
    trace = Trace(sample)
    rec = _Recorder(trace)
    buffers = [(m, dict(m._buffers)) for m in module.modules()]
    modes = [(m, m.training) for m in module.modules()]
    handles = []
    for name, m in leaf_modules(module, is_leaf):
        handles.append(m.register_forward_pre_hook(lambda mod, a, kw, n=name: rec.enter(n, mod, a, kw),
                                                   with_kwargs=True))
        handles.append(m.register_forward_hook(lambda mod, a, kw, o, n=name: rec.leave(n, mod, a, kw, o),
                                               with_kwargs=True))
    try:
        module.eval()
        with torch.no_grad(), rec:
            trace.result = _primary(module(sample))
    finally:
        for h in handles:
            h.remove()
        for m, bufs in buffers:
            m._buffers.clear()
            m._buffers.update(bufs)
        for m, mode in modes:
            m.training = mode
    return trace


def timestep_slots(calls: list[Call]) -> tuple[list[int], int]:
    """For each call, the index of the call of the first timestep it repeats; and the repetitions.

    Calls of modules used once (before or after a loop) are their own slot; the
    rest must repeat one period of module calls (one timestep) a whole number of times.
    """
    keys = [id(c.module) for c in calls]
    count = Counter(keys)
    looped = [i for i, k in enumerate(keys) if count[k] > 1]
    if not looped:
        return list(range(len(keys))), 1
    lo, hi = looped[0], looped[-1] + 1
    mid = keys[lo:hi]
    period = next(p for p in range(1, len(mid) + 1)
                  if len(mid) % p == 0 and all(mid[i] == mid[i - p] for i in range(p, len(mid))))
    slots = list(range(lo)) + [lo + (i - lo) % period for i in range(lo, hi)] + list(range(hi, len(keys)))
    return slots, len(mid) // period
