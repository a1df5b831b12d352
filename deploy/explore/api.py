"""``deploy.explore(space, out)``: a design space swept on Ray, resumable, with its Pareto front."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.core.errors import DeployError
from deploy.explore import results
from deploy.explore.pareto import front
from deploy.explore.space import OBJECTIVES, Space, load, parse, point_key
from deploy.explore.store import Store
from deploy.explore.trial import Context


@dataclass
class ExploreResult:
    """What a run left in its folder: every finished point of the space and its front."""

    out: Path
    rows: list[dict[str, Any]]
    front: list[dict[str, Any]]
    directions: dict[str, str]
    computed: list[str] = field(default_factory=list)   # keys computed by this run
    skipped: int = 0                                      # points finished by an earlier run
    errors: list[str] = field(default_factory=list)      # one line per failed trial
    wall_s: float = 0.0
    pareto: dict[str, Any] = field(default_factory=dict)


def _space(space: str | Path | dict[str, Any] | Space) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, dict):
        return parse(space, "space")
    return load(space)


def _progress(enabled: bool) -> Any:
    """A Rich bar on stderr: trials done of the total, done / running / pending, ETA."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("explore"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def explore(space: str | Path | dict[str, Any] | Space, out: str | Path, *, address: str | None = None,
            cpus: int | None = None, cpus_per_trial: int = 1, progress: bool = False,
            console: Any = None, quiet: bool = False) -> ExploreResult:
    """Deploy every point of ``space`` (a SPACE.yaml path, its parsed mapping or a :class:`Space`)
    as a Ray Tune trial and write the results into ``out``.

    Points already finished in ``out`` (same configuration, model, data, samples and seeds)
    are skipped; each new point is stored as soon as its trial reports. ``address`` joins an
    existing Ray cluster; otherwise a local Ray with ``cpus`` CPUs (default: all) is started,
    unless one is already running in this process. ``cpus_per_trial`` CPUs (and torch threads)
    go to each trial. Writes ``results.csv``, ``results.parquet``, ``pareto.json``, ``pareto.png``, ``report.html``
    and prints the front unless ``quiet``.
    """
    from deploy.pipeline import load_test_set, resolve_model

    start = time.perf_counter()
    sp = _space(space)
    for name, value in (("--cpus-per-trial", cpus_per_trial), ("--cpus", cpus)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DeployError(f"{name} must be an integer >= 1, got {value!r}")
    graph = resolve_model(sp.model)
    load_test_set(graph.copy(), sp.data, sp.samples, sp.split_seed)   # the data exists and fits the model
    ctx = Context.of(sp)
    store = Store(out).open()
    points = sp.points()
    keys = [point_key(p, ctx.as_key()) for p in points]
    finished = store.load(set(keys))
    pending = [p for p, k in zip(points, keys, strict=True) if k not in finished]
    skipped = len(finished)
    needs_run = bool(pending) if sp.search == "grid" else len(finished) < sp.trials
    computed: list[str] = []
    errors: list[str] = []
    if needs_run:
        from deploy.explore.runner import run_trials

        bar = _progress(progress)
        with bar if bar is not None else contextlib.nullcontext():
            rec = run_trials(sp, graph, ctx, store, pending, {k: r["metrics"] for k, r in finished.items()},
                             [r["point"] for r in finished.values()], cpus_per_trial=cpus_per_trial,
                             address=address, cpus=cpus, progress=bar)
        computed, errors = rec.computed, rec.errors
    done = store.load(set(keys))
    rows = [done[k] for k in dict.fromkeys(keys) if k in done]
    directions = sp.directions()
    values = [{o: r["metrics"].get(OBJECTIVES[o][0]) for o in directions} for r in rows]
    front_rows = [rows[i] for i in front(values, directions)]
    wall = time.perf_counter() - start
    doc = results.write_all(store.out, rows, front_rows, directions, wall, errors)
    if not quiet:
        results.print_front(front_rows, directions, len(rows), console)
    return ExploreResult(store.out, rows, front_rows, directions, computed, skipped, errors, wall, doc)

