"""neurodeploy: deploy, quantize and cost spiking neural networks on simulated hardware.

Python API (the CLI is a thin wrapper over these)::

    import deploy
    report = deploy.compile("examples/models/digits_snn.pt", target="imc", compare="imc-adc")
    print(report); report.save("out/")
    graph = deploy.load_model("model.nir"); graph = deploy.from_torch(module)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "compile": ("deploy.pipeline", "compile"),
    "inspect": ("deploy.pipeline", "inspect"),
    "load_model": ("deploy.io.loader", "load_model"),
    "from_torch": ("deploy.io.loader", "from_torch"),
    "convert": ("deploy.train.convert", "convert"),
    "Graph": ("deploy.core.ir", "Graph"),
    "Report": ("deploy.report.schema", "Report"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deploy' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
