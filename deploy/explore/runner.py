"""Run the pending points of a space as Ray Tune trials; rows are stored by the driver as they finish.

Grid search hands Tune the pending points; Optuna search (multi-objective TPE through
``ray.tune.search.optuna.OptunaSearch``) draws from the same lists, with the finished
points enqueued first so the sampler learns from them (their trials return the stored
result at once: nothing is recomputed). The trainable gets the model graph through Ray's
object store, so workers on other machines need no copy of the model file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.core import ir
from deploy.explore.space import OBJECTIVES, Space, point_key, point_label, point_seed
from deploy.explore.store import Store
from deploy.explore.trial import Context, run_point

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")          # Tune's plain reporter, silenced by verbose=0
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")   # no CSV/JSON/TensorBoard loggers
from ray import tune  # noqa: E402


def _trainable(config: dict[str, Any], graph: ir.Graph, ctx: Context, done: dict[str, dict[str, Any]],
               threads: int, finetune: dict[str, Any] | None) -> None:
    """One Tune trial: deploy the point of ``config`` (or return the stored objectives of a
    finished one, ``done``: key -> metrics)."""
    import ray
    import torch

    point = config["point"] if "point" in config else point_from_params(config, finetune)
    key = point_key(point, ctx.as_key())
    if key in done:
        tune.report({**_objectives(done[key]), "key": key, "cached": True})
        return
    torch.set_num_threads(threads)
    seed = point_seed(key)
    start = time.perf_counter()
    metrics, report = run_point(graph, point, ctx, seed)
    row = {"key": key, "point": point, "seed": seed, "metrics": metrics, "report": report.to_dict(),
           "duration_s": time.perf_counter() - start, "node": socket.gethostname(),
           "node_id": ray.get_runtime_context().get_node_id()}
    tune.report({**_objectives(metrics), "key": key, "cached": False, "row": json.dumps(row)})


def _objectives(metrics: dict[str, Any]) -> dict[str, float]:
    """Tune's metrics: every objective by name (NaN when a target does not report it)."""
    return {name: float("nan") if metrics.get(field) is None else float(metrics[field])
            for name, (field, _) in OBJECTIVES.items()}


def point_params(point: dict[str, Any]) -> dict[str, Any]:
    """A point as Optuna's flat parameters: ``target``, ``<target>.<option>``, ``quant.<key>``."""
    out: dict[str, Any] = {"target": point["target"]}
    out.update({f"{point['target']}.{k}": v for k, v in point["options"].items()})
    out.update({f"quant.{k}": v for k, v in (point.get("quant") or {}).items()})
    return out


def point_from_params(params: dict[str, Any], finetune: dict[str, Any] | None) -> dict[str, Any]:
    """The inverse of :func:`point_params` (``finetune`` applies to IMC targets)."""
    from deploy.explore.space import FINETUNE_TARGETS, QUANT_KEYS

    target = params["target"]
    options = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{target}.")}
    quant = {k: params[f"quant.{k}"] for k in QUANT_KEYS if f"quant.{k}" in params} or None
    return {"target": target, "options": options, "quant": quant,
            "finetune": finetune if target in FINETUNE_TARGETS else None}


class DefineByRun:
    """Optuna's conditional space: a target, then that target's options, then the precision
    (a class, not a closure, so Tune can checkpoint the searcher)."""

    def __init__(self, targets: dict[str, dict[str, list[Any]]], quant: dict[str, list[Any]] | None):
        self.targets, self.quant = targets, quant or {}

    def __call__(self, trial: Any) -> None:
        target = trial.suggest_categorical("target", list(self.targets))
        for opt, values in self.targets[target].items():
            trial.suggest_categorical(f"{target}.{opt}", values)
        for key, values in self.quant.items():
            trial.suggest_categorical(f"quant.{key}", values)


class Recorder(tune.Callback):
    """Tune callback on the driver: store every computed row the moment its trial reports, and
    keep the progress (done / running / pending / failed) up to date."""

    def __init__(self, store: Store, total: int, progress: Any = None):
        self.store, self.total, self.progress = store, total, progress
        self.running = self.finished = 0
        self.computed: list[str] = []
        self.cached: list[str] = []
        self.errors: list[str] = []
        self.task = None if progress is None else progress.add_task("trials", total=total)
        self.update()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running += 1
        self.update()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("row"):
            self.store.write(json.loads(result["row"]))
            self.computed.append(result["key"])
        else:
            self.cached.append(result["key"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running -= 1
        self.finished += 1
        self.update()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running -= 1
        config = trial.config
        point = config["point"] if "point" in config else point_from_params(config, None)
        self.errors.append(f"{point_label(point)}: {_error_line(trial)}")
        self.update()

    def update(self) -> None:
        if self.progress is None:
            return
        pending = max(0, self.total - self.finished - self.running - len(self.errors))
        self.progress.update(self.task, completed=self.finished + len(self.errors),
                             description=f"{self.finished} done, {self.running} running, {pending} pending"
                                         + (f", {len(self.errors)} failed" if self.errors else ""))


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's error (the exception), else the trial's name."""
    path = getattr(trial, "error_file", None)
    with contextlib.suppress(OSError, TypeError):
        lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return str(trial)


@contextlib.contextmanager
def ray_session(address: str | None, cpus: int | None) -> Any:
    """A Ray connection: the running one (e.g. a test's), ``address``'s cluster, or a new local
    Ray with ``cpus`` CPUs (default: the machine's); shut down afterwards if started here."""
    import ray

    started = not ray.is_initialized()
    if started:
        # "local": a new instance, never one found running on this machine (ray.init's default)
        kw = {"address": address} if address else {"address": "local", "num_cpus": cpus or os.cpu_count() or 1}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kw)
    # a failed trial is reported once, as a line of its own (Recorder.errors), not as Tune's traceback
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def run_trials(space: Space, graph: ir.Graph, ctx: Context, store: Store, pending: list[dict[str, Any]],
               done: dict[str, dict[str, Any]], done_points: list[dict[str, Any]], cpus_per_trial: int = 1, address: str | None = None,
               cpus: int | None = None, progress: Any = None) -> Recorder:
    """Run ``pending`` points (grid) or ``space.trials`` Optuna trials on Ray; returns what ran.

    ``done`` maps finished keys to their metrics, ``done_points`` lists their points."""
    finetune = None if space.finetune_epochs is None else {"epochs": space.finetune_epochs}
    with ray_session(address, cpus) as ray:
        total = len(pending) if space.search == "grid" else space.trials
        recorder = Recorder(store, total, progress)
        if total == 0:
            return recorder
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, graph=graph, ctx=ctx, done=done, threads=cpus_per_trial,
                                 finetune=finetune), {"cpu": cpus_per_trial})
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_trial)
        if space.search == "grid":
            param_space: dict[str, Any] = {"point": tune.grid_search(pending)}
            tune_config = tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True)
        else:
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = space.directions()
            warm = [point_params(p) for p in done_points][:space.trials]
            search = OptunaSearch(space=DefineByRun(space.targets, space.quant), metric=list(directions),
                                  mode=list(directions.values()), seed=space.seed,
                                  points_to_evaluate=warm or None)
            param_space = {}
            tune_config = tune.TuneConfig(search_alg=search, num_samples=space.trials,
                                          max_concurrent_trials=slots, reuse_actors=True)
        storage = tempfile.mkdtemp(prefix="explore-tune-")
        try:
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                               run_config=tune.RunConfig(storage_path=storage, name="explore", verbose=0,
                                                         callbacks=[recorder]))
            tuner.fit()
        finally:
            shutil.rmtree(storage, ignore_errors=True)
        return recorder
