"""``deploy.export``: write a model as NIR, ONNX (synaptic layers) or a native checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError

FORMATS = ("nir", "onnx", "native")


def export(model: Any, format: str, out: str | Path, *, trust_pickle: bool = False, weights: str | None = None,
           dt: float | None = None, encoding: str | None = None, timesteps: int | None = None) -> Path:
    """Write ``model`` to ``out`` as ``format`` (nir | onnx | native) and return ``out``; ``dt``
    (seconds) is the step a NIR model is read with and a NIR file is written with. For Lava-dl
    netx use :func:`deploy.netx`."""
    from deploy.cli_options import check, load
    from deploy.pipeline import is_nir_source

    check(dt, encoding, timesteps)
    if format not in FORMATS:
        hint = "; for Lava-dl netx use `deploy netx`" if format == "netx" else ""
        raise DeployError(f"unknown export format {format!r} (choose from {', '.join(FORMATS)}){hint}")
    if dt is not None and format != "nir" and not is_nir_source(model):
        raise DeployError("--dt applies to NIR models read or written; neither the model nor --format is NIR")
    graph = load(model, trust_pickle, weights, dt=dt if is_nir_source(model) else None, encoding=encoding,
                 timesteps=timesteps)
    if format == "nir":
        from deploy.io.nir_io import write_nir

        write_nir(graph, out, **({"dt": dt} if dt is not None else {}))
    elif format == "onnx":
        from deploy.io.onnx_export import export_onnx

        export_onnx(graph, out)
    else:
        from deploy.io import native

        native.save(graph, out)
    return Path(out)
