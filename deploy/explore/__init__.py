"""Co-design exploration: sweep targets, their options and precision on Ray Tune, resumably,
and report the Pareto front (``deploy explore SPACE.yaml -o OUT``).

    import deploy
    result = deploy.explore("examples/explore/digits.yaml", "out/explore")
    result.front        # the non-dominated points, each with its objectives and report

Modules: :mod:`~deploy.explore.space` (the SPACE.yaml format and its checks),
:mod:`~deploy.explore.trial` (one point), :mod:`~deploy.explore.runner` (Ray Tune),
:mod:`~deploy.explore.store` (the resumable output folder), :mod:`~deploy.explore.pareto`,
:mod:`~deploy.explore.results` (tables, figure, terminal table), :mod:`~deploy.explore.command`
(the CLI). Importing this package loads neither torch nor Ray.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def explore(*args: Any, **kwargs: Any) -> Any:
    """See :func:`deploy.explore.api.explore`."""
    from deploy.explore.api import explore as run

    return run(*args, **kwargs)


class _CallableModule(types.ModuleType):
    """``deploy.explore`` is this package once imported; calling it runs :func:`explore`, so
    ``deploy.explore(space, out)`` works whether or not the package was imported before."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return explore(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["explore"]
