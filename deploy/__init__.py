"""neurodeploy: deploy, quantize and cost spiking neural networks on simulated hardware.

Python API: every ``deploy`` command is one function with the same options (the CLI wraps
them), loaded on first use so ``import deploy`` stays cheap::

    import deploy
    report = deploy.compile("examples/models/digits_snn.pt", target="imc", compare="imc-adc")
    print(report); report.save("out/")
    problems = deploy.check("examples/models/digits_snn.pt", target="loihi")
    graph = deploy.load_model("model.nir"); graph = deploy.from_torch(module)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute), imported on first access
_LAZY = {
    "compile": ("deploy.api.compile", "compile"),
    "check": ("deploy.api.check", "check"),
    "inspect": ("deploy.api.inspect", "inspect"),
    "quantize": ("deploy.api.quantize", "quantize"),
    "finetune": ("deploy.api.finetune", "finetune"),
    "distill": ("deploy.api.distill", "distill"),
    "convert": ("deploy.api.convert", "convert"),
    "export": ("deploy.api.export", "export"),
    "netx": ("deploy.api.netx", "netx"),
    "report": ("deploy.api.report", "report"),
    "train": ("deploy.training.recipes", "train"),
    "explore": ("deploy.explore.api", "explore"),
    "load_model": ("deploy.io.loader", "load_model"),
    "from_torch": ("deploy.io.loader", "from_torch"),
    "Graph": ("deploy.core.ir", "Graph"),
    "Report": ("deploy.report.schema", "Report"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps the API functions ``deploy.training.convert``, ``deploy.training.distill`` and ``deploy.report`` in place
    when their same-named submodules are imported (the import system would set the module as the
    package attribute); the submodules stay reachable through ``sys.modules`` and ``from`` imports."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["__version__", *_LAZY]
