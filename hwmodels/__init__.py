"""Hardware targets behind one protocol (:class:`hwmodels.base.Target`).

Targets are imported lazily so that, e.g., Lava is loaded only for Loihi.
"""

from __future__ import annotations

import importlib
import importlib.util

from deploy.core.errors import TargetError

#: target name -> "module:Class"
TARGETS: dict[str, str] = {
    "digital": "hwmodels.digital:DigitalTarget",
    "imc": "hwmodels.imc:ImcTarget",
    "imc-adc": "hwmodels.imc:ImcAdcTarget",
    "loihi": "hwmodels.loihi:Loihi1Target",
    "loihi2": "hwmodels.loihi:Loihi2Target",
}


def target_class(name: str):
    if name not in TARGETS:
        raise TargetError(f"unknown target {name!r} (choose from {', '.join(available())})")
    module, cls = TARGETS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"target {name!r} is not available: {exc}") from None


def get_target(name: str, config: str | None = None):
    """Instantiate a target by name, with an optional ``--config`` YAML of overrides."""
    return target_class(name).from_config(config)


def available() -> list[str]:
    """Targets whose module is present in this installation."""
    out = []
    for name, ref in TARGETS.items():
        if importlib.util.find_spec(ref.split(":")[0]) is not None:
            out.append(name)
    return out
