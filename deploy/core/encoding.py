"""Input encoders: static inputs in [0, 1] to time-major tensors (T, B, ...)."""

from __future__ import annotations

import torch


def encode(x: torch.Tensor, timesteps: int, encoding: str = "direct",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode a batch ``x`` (B, ...) over ``timesteps``.

    - ``direct``: the value is an input current every step;
    - ``rate``: Bernoulli spikes with probability ``x`` each step (seeded by ``generator``);
    - ``latency``: one spike at step ``round((1 - x) * (T - 1))``, none for ``x == 0``;
    - ``events``: ``x`` is already (B, T, ...) event frames; only transposed.
    """
    if encoding == "events":
        if x.shape[1] != timesteps:
            raise ValueError(f"event input has {x.shape[1]} timesteps, model expects {timesteps}")
        return x.transpose(0, 1).contiguous()
    x = x.clamp(0, 1)
    if encoding == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape).contiguous()
    if encoding == "rate":
        p = x.unsqueeze(0).expand(timesteps, *x.shape)
        return torch.bernoulli(p, generator=generator)
    if encoding == "latency":
        t_spike = torch.round((1 - x) * (timesteps - 1)).long()
        steps = torch.arange(timesteps).view(-1, *[1] * x.dim())
        return ((steps == t_spike.unsqueeze(0)) & (x.unsqueeze(0) > 0)).to(x.dtype)
    raise ValueError(f"unknown encoding {encoding!r}")
