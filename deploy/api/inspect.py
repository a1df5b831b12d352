"""``deploy.inspect``: a model's graph, parameter counts and memory at its stored precision."""

from __future__ import annotations

from typing import Any


def inspect(model: Any, *, trust_pickle: bool = False, weights: str | None = None, dt: float | None = None,
            encoding: str | None = None, timesteps: int | None = None) -> dict[str, Any]:
    """The model's name, input shape, timesteps, encoding, ``graph`` and per-layer rows (``layers``:
    name, kind, shape, params, memory_bytes, state_bytes) with totals ``params`` and ``memory_bytes``."""
    from deploy.pipeline import inspect as run

    return run(model, trust_pickle=trust_pickle, weights=weights, dt=dt, encoding=encoding, timesteps=timesteps)
