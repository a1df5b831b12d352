"""``deploy.compile``: map, simulate and cost a model on a target (see :func:`deploy.pipeline.compile`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.core import progress as bars


def compile(model: Any, target: Any = "digital", data: Any = "digits", *, out: str | Path | None = None,
            figures: bool = True, progress: bool | None = None, **options: Any):
    """Map ``model`` onto ``target``, simulate it on ``data`` and return the :class:`Report`.

    ``data``: digits | mnist | events | a data file | an ``(x, y)`` tuple, or ``"none"`` / ``None``
    for assumed-rate mode (every spiking layer fires at ``rate``; no accuracy), as on the CLI.
    ``out``: also write report.json/.md/.html (and PNG figures unless ``figures=False``) there.
    ``progress``: bars per simulated batch (default: when stderr is a terminal). Other options
    (``samples``, ``timesteps``, ``config``, ``compare``, ``seed``, ``split_seed``, ``rate``,
    ``batch_size``, ``trust_pickle``, ``weights``, ``dt``, ``encoding``, ``max_memory``, ``device``)
    are those of ``deploy compile``."""
    from deploy.pipeline import compile as run

    show = bars.enabled() if progress is None else progress
    report = run(model, target=target, data=None if isinstance(data, str) and data == "none" else data,
                 progress=show, **options)
    if out is not None:
        report.save(out, figures=figures)
    return report
