"""``deploy.check``: will a model run on a target, and if not, what to change.

Every target is asked for its resource violations (:meth:`hwmodels.base.Target.check`: layer,
resource, need, limit) and then mapped, so structural refusals (layer kinds, readout, reset
mode, fixed-point overflow) surface too. Each problem carries the fix when one exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deploy.core.errors import DeployError

#: (pattern in the target's message or resource, fix); the first match wins
FIXES: tuple[tuple[str, str], ...] = (
    (r"output layer must be lif.*got li\b|type 'li' is not supported",
     "use a spiking (IF/LIF) readout: `deploy convert ... --readout if` for a converted ANN, or retrain "
     "with a lif output layer"),
    (r"output layer must be lif", "end the network with a lif layer (predictions are output spike counts)"),
    (r"reset 'subtract'", "retrain with reset 'zero', or drop the target option strict_reset"),
    (r"max pooling", "use avg or sum pooling"),
    (r"saturate=True", "lower the weight/threshold precision (`deploy quantize`), or pass the target option "
                       "saturate: true in --config to clip"),
    (r"array rows for one kernel window", "a larger crossbar: --config with options: {rows: NEED}"),
    (r"convolution groups", "use groups=1 convolutions"),
    (r"recurrent", "remove the recurrent connection, or use the digital or loihi targets"),
    (r"cores in total", "use loihi2 (more memory per core), quantize the weights (`deploy quantize "
                        "--target loihi --max-cores N`), or allow more chips (--config options: {chips: N})"),
    (r"per core", "quantize the weights to fewer bits (`deploy quantize --target TARGET`) or use loihi2"),
)


@dataclass
class Problem:
    """One reason a model does not run on a target."""

    target: str
    layer: str | None
    message: str
    resource: str | None = None
    need: float | None = None
    limit: float | None = None
    fix: str | None = None

    def __str__(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.target}: {self.message}{fix}"


def _fix(text: str, need: float | None = None) -> str | None:
    for pattern, fix in FIXES:
        if re.search(pattern, text):
            return fix.replace("NEED", f"{need:g}") if need is not None else fix
    return None


def _layer(text: str) -> str | None:
    m = re.search(r"layer '([^']+)'", text)
    return m.group(1) if m else None


def check_target(graph: Any, target: Any) -> list[Problem]:
    """Problems of ``graph`` on one target instance (empty when it maps)."""
    from deploy.core.errors import TargetError

    try:
        violations = target.check(graph)
        if not violations:
            target.map(graph)
    except TargetError as exc:
        text = str(exc)
        return [Problem(target.name, _layer(text), text, fix=_fix(text))]
    return [Problem(target.name, v.layer, str(v), resource=v.resource, need=v.need, limit=v.limit,
                    fix=_fix(v.resource, v.need)) for v in violations]


def check(model: Any, target: str | list[str] | None = None, *, config: str | None = None,
          trust_pickle: bool = False, weights: str | None = None, dt: float | None = None,
          encoding: str | None = None, timesteps: int | None = None) -> dict[str, list[Problem]]:
    """Validate ``model`` against ``target`` (a name, a list, or every installed target) and return
    each target's problems, empty when the model fits; ``config`` (spec constants / options) applies
    to every target."""
    from deploy.cli_options import check as check_options
    from deploy.cli_options import load
    from hwmodels import available, get_target

    check_options(dt, encoding, timesteps)
    names = available() if target is None else [target] if isinstance(target, str) else list(target)
    if not names:
        raise DeployError("no target to check against")
    targets = [get_target(n, config) for n in names]  # unknown names fail before the model loads
    graph = load(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)
    return {t.name: check_target(graph, t) for t in targets}
