"""Spiking neurons as ordinary torch modules with surrogate gradients, and the one
neuron kernel every simulator runs.

Inputs and outputs are time-major, shaped ``(T, B, *features)``; the loop over
time lives here, everything else in the network is applied to all timesteps at
once. The dynamics are those of :mod:`deploy.core.ir`: reset right after the spike,
or with ``reset_delay`` snnTorch's delayed, undecayed subtraction.

:class:`NeuronKernel` writes the discrete LIF dynamics once (decay, integrate,
fire, reset); :class:`FloatKernel` (this module), ``quant.neurons.FixedPointKernel``
and ``hwmodels.loihi.reference.LoihiKernel`` only choose the arithmetic.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ATanSpike(torch.autograd.Function):
    """Heaviside forward (strict ``x > 0``), arctangent surrogate backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


def spike(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Heaviside spike of ``x`` with the arctangent surrogate gradient."""
    return ATanSpike.apply(x, alpha)


def _param(value, learn: bool) -> torch.Tensor | nn.Parameter:
    t = torch.as_tensor(value, dtype=torch.float32).clone()
    return nn.Parameter(t) if learn else t


def broadcast_to_features(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a scalar, per-channel ``(C,)`` or per-neuron parameter against ``x`` of shape (B, C, ...)."""
    if p.dim() == 1 and x.dim() > 2 and p.numel() == x.shape[1]:
        return p.view(-1, *[1] * (x.dim() - 2))
    return p


class NeuronKernel:
    """Discrete leaky integrate-and-fire dynamics, written once for every arithmetic.

    One step ``t`` (as NIR's CubaLIF, discretized; ``alpha = 0`` drops the current)::

        i[t] = integrate_current(decay(i[t-1], alpha), x[t])
        v[t] = integrate(decay(v[t-1], beta), i[t] - s[t-1] * thr)   # the term only with reset_delay
        s[t] = fire(v[t])                                            # v[t] > thr, strict
        v[t] = reset(v[t], s[t])     # v - s * thr ("subtract") | v * (1 - s) ("zero"); not with reset_delay

    A leaky integrator (LI readout) is the same without ``fire`` and ``reset``.
    Subclasses supply the arithmetic of the four hooks (float, fixed point, Loihi
    integers); ``beta``, ``thr`` and ``alpha`` are already broadcast against one
    step's ``(B, *features)`` and in the subclass's units. ``x`` may be any
    sequence of steps; :meth:`run` stacks the outputs.
    """

    def __init__(self, beta: torch.Tensor, thr: torch.Tensor | None = None, alpha: torch.Tensor | None = None,
                 reset: str = "subtract", reset_delay: bool = False):
        self.beta, self.thr, self.alpha = beta, thr, alpha
        self.reset_mode = reset
        self.reset_delay = bool(reset_delay) and reset == "subtract"

    #: True when the hooks update the state in place (outputs are then copied out every step)
    inplace = False

    # -- arithmetic hooks -------------------------------------------------------------
    def decay(self, v: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def integrate(self, v: torch.Tensor, x: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """``v + x``, minus ``r * thr`` (the previous step's spikes) with a delayed reset."""
        v = v + x
        return v if r is None else v - r * self.thr

    def integrate_current(self, i: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.integrate(i, x)

    def fire(self, v: torch.Tensor) -> torch.Tensor:
        return v > self.thr

    def reset(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.reset_mode == "subtract":
            return v - s * self.thr
        return v * (1 - s)

    def zeros(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(like)

    # -- dynamics -----------------------------------------------------------------------
    def init_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero membrane, current and last spike for one step's shape."""
        return {"v": self.zeros(like), "i": self.zeros(like), "r": self.zeros(like)}

    def step(self, state: dict[str, torch.Tensor], x_t: torch.Tensor, spiking: bool = True) -> torch.Tensor:
        """Advance ``state`` by one step; returns the spikes (or the membrane when not ``spiking``)."""
        if self.alpha is not None:
            state["i"] = self.integrate_current(self.decay(state["i"], self.alpha), x_t)
            x_t = state["i"]
        delayed = state["r"] if spiking and self.reset_delay else None
        v = state["v"] = self.integrate(self.decay(state["v"], self.beta), x_t, delayed)
        if not spiking:
            return v
        s = self.fire(v)
        state["r"] = s.detach()
        if not self.reset_delay:
            state["v"] = self.reset(v, state["r"])
        return s

    def run(self, x, spiking: bool = True, record_state: bool = False):
        """All steps of ``x`` (T, B, ...): stacked spikes (or membranes), plus the membranes after
        each step's reset with ``record_state``."""
        state = self.init_state(x[0])
        out, states = [], []
        for x_t in x:
            y = self.step(state, x_t, spiking)
            out.append(y.clone() if self.inplace and not spiking else y)
            if record_state:
                states.append(state["v"].detach().clone())
        return (torch.stack(out), torch.stack(states)) if record_state else torch.stack(out)


class FloatKernel(NeuronKernel):
    """Float32 arithmetic. With ``grad`` the spike carries the arctangent surrogate
    (:func:`spike`); without it (inference) every step updates the state in place."""

    def __init__(self, beta, thr=None, alpha=None, reset="subtract", reset_delay=False, grad: bool = True,
                 surrogate_alpha: float = 2.0):
        super().__init__(beta, thr, alpha, reset, reset_delay)
        self.grad, self.surrogate_alpha = grad, surrogate_alpha

    @property
    def inplace(self) -> bool:
        return not self.grad

    def decay(self, v, factor):
        return factor * v if self.grad else v.mul_(factor)

    def integrate(self, v, x, r=None):
        if self.grad:
            return super().integrate(v, x, r)
        v = v.add_(x)
        return v if r is None else v.sub_(r * self.thr)

    def fire(self, v):
        if self.grad:
            return spike(v - self.thr, self.surrogate_alpha)
        return torch.gt(v, self.thr).to(v.dtype)

    def reset(self, v, s):
        if self.grad:
            return super().reset(v, s)
        if self.reset_mode == "subtract":
            return v.sub_(s * self.thr)
        return v.mul_(1 - s)


def needs_grad(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """True when a gradient can flow through ``x`` or ``params`` (else the kernels run in place)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


class LIF(nn.Module):
    """Leaky integrate-and-fire (IF with ``beta=1``), optional synaptic current ``alpha``.

    ``reset_delay=True`` (reset "subtract" only) subtracts the threshold of a spike
    at the next step, undecayed: ``v[t] = beta v[t-1] + i[t] - s[t-1] thr``.
    """

    def __init__(self, beta=0.9, threshold=1.0, reset: str = "subtract", alpha=0.0,
                 learn_threshold: bool = False, learn_beta: bool = False, surrogate_alpha: float = 2.0,
                 reset_delay: bool = False):
        super().__init__()
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")
        self.reset, self.surrogate_alpha = reset, surrogate_alpha
        self.reset_delay = bool(reset_delay) and reset == "subtract"  # a delayed zero reset is the same
        for name, val, learn in (("beta", beta, learn_beta), ("threshold", threshold, learn_threshold),
                                 ("alpha", alpha, False)):
            p = _param(val, learn)
            if isinstance(p, nn.Parameter):
                self.register_parameter(name, p)
            else:
                self.register_buffer(name, p)

    def kernel(self, like: torch.Tensor, grad: bool) -> FloatKernel:
        """The float kernel with this layer's parameters, broadcast against one step ``like``."""
        use_current = bool(torch.any(self.alpha != 0))
        return FloatKernel(broadcast_to_features(self.beta.clamp(0, 1), like),
                           broadcast_to_features(self.threshold, like),
                           broadcast_to_features(self.alpha, like) if use_current else None,
                           self.reset, self.reset_delay, grad, self.surrogate_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(x[0], needs_grad(x, self.beta, self.threshold)).run(x)

    def extra_repr(self) -> str:
        return f"reset={self.reset}" + (", reset_delay=True" if self.reset_delay else "")


class LI(nn.Module):
    """Leaky integrator readout: outputs the membrane potential at every step."""

    def __init__(self, beta=1.0):
        super().__init__()
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = broadcast_to_features(self.beta, x[0])
        return FloatKernel(beta, grad=needs_grad(x, self.beta)).run(x, spiking=False)
