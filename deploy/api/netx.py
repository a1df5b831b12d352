"""``deploy.netx``: map a model onto Loihi fixed point and write lava-dl's netx HDF5 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError


def netx(model: Any, out: str | Path, *, target: str = "loihi", config: str | None = None,
         trust_pickle: bool = False, weights: str | None = None, dt: float | None = None,
         encoding: str | None = None, timesteps: int | None = None):
    """Map ``model`` to Loihi fixed point (netx-compatible: dense weight exponent 0, bias exponent
    6), write it as a netx .net file at ``out`` and return the Loihi mapping (``network``,
    ``placement``)."""
    from deploy.cli_options import check, load
    from hwmodels import get_target
    from hwmodels.loihi import netx as writer

    check(dt, encoding, timesteps)
    if target not in ("loihi", "loihi2"):
        raise DeployError(f"--target must be loihi or loihi2, got {target!r}")
    graph = load(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    tgt = get_target(target, config)
    tgt = tgt.with_options(netx=True, bias_exp=6)
    mapping = tgt.map(graph)
    writer.export(mapping.network, out)
    return mapping
