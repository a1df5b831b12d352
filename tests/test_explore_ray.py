"""deploy explore on a real local Ray: every trial equals a direct deploy.compile of its point,
reruns skip finished trials, a grown space or a lost trial computes only what is missing, and
Optuna's multi-objective search runs through Ray Tune. One Ray instance for the module, in one
xdist group so two never start at once."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "models" / "digits_snn_imc.pt")
SPACE = {"model": MODEL, "data": "digits", "samples": 24, "seed": 3,
         "targets": {"digital": {}, "imc": {"rows": [64, 128], "bits_per_cell": [1, 2]}},
         "objectives": ["accuracy", "energy"], "search": "grid"}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(ray_local, tmp_path_factory):
    import deploy

    out = tmp_path_factory.mktemp("explore") / "out"
    return out, deploy.explore(copy.deepcopy(SPACE), out, quiet=True)


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every stored trial: an atomic rewrite changes the inode."""
    return {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "trials").glob("*.json")}


def test_every_trial_equals_a_direct_compile_of_its_point(first_run):
    from deploy.pipeline import compile as run_compile
    from hwmodels import target_class

    out, result = first_run
    assert len(result.rows) == 5 and len(result.computed) == 5 and result.skipped == 0 and not result.errors
    assert {r["point"]["target"] for r in result.rows} == {"digital", "imc"}
    for row in result.rows:
        p = row["point"]
        ref = run_compile(MODEL, target=target_class(p["target"])(options=p["options"]), data="digits",
                          samples=24, seed=row["seed"])
        assert row["metrics"]["accuracy"] == ref.accuracy.deployed, p
        assert row["metrics"]["energy_j"] == pytest.approx(ref.totals.energy_j, rel=1e-12), p
        assert row["metrics"]["latency_s"] == pytest.approx(ref.totals.latency_s, rel=1e-12), p
        assert row["report"]["totals"]["memory_bytes"] == ref.totals.memory_bytes, p
        assert row["report"]["target"]["options"]["user"] == p["options"] if p["target"] == "imc" else True
    # the outputs: one CSV row per point, the front marked, pareto.json and the figure
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 5
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["trials"] == 5 and doc["front"]
    assert {f["key"] for f in doc["front"]} == {r["key"] for r in result.front}
    assert (out / "pareto.png").stat().st_size > 10_000 and (out / "results.parquet").is_file()
    # report.html: every point once, the front highlighted; best/ is the best point's own report
    page = (out / "report.html").read_text()
    assert page.count('<tr class="front">') == len(result.front)
    best = max(result.front, key=lambda r: r["metrics"]["accuracy"])
    best_report = json.loads((out / "best" / "report.json").read_text())
    assert best_report["totals"] == best["report"]["totals"] and "best/report.html" in page


def test_rerun_skips_finished_trials_and_a_grown_space_adds_only_new_points(first_run):
    import deploy

    out, first = first_run
    before = _stamps(out)
    again = deploy.explore(copy.deepcopy(SPACE), out, quiet=True)
    assert again.computed == [] and again.skipped == 5
    assert _stamps(out) == before
    assert [r["metrics"] for r in again.rows] == [r["metrics"] for r in first.rows]

    # a trial lost to a killed run (its row never written), two new points (rows: 256) and two
    # that fail on the target (a 3x3 kernel window needs 9 rows; rows: 4)
    lost = first.rows[1]["key"]
    (out / "trials" / f"{lost}.json").unlink()
    grown = copy.deepcopy(SPACE)
    grown["targets"]["imc"]["rows"] = [64, 128, 256, 4]
    result = deploy.explore(grown, out, quiet=True)
    assert len(result.errors) == 2 and all("rows=4" in e and "needs 9 array rows" in e for e in result.errors)
    assert json.loads((out / "pareto.json").read_text())["failed"] == result.errors
    assert all(r["point"]["options"].get("rows") != 4 for r in result.rows)   # failed trials are not stored
    new_keys = {r["key"] for r in result.rows} - set(before)
    assert len(new_keys) == 2 and all(r["point"]["options"]["rows"] == 256
                                      for r in result.rows if r["key"] in new_keys)
    assert sorted(result.computed) == sorted(new_keys | {lost}) and result.skipped == 4
    after = _stamps(out)
    assert {k: after[k] for k in before if k != lost} == {k: v for k, v in before.items() if k != lost}
    recomputed = next(r for r in result.rows if r["key"] == lost)
    assert recomputed["metrics"] == first.rows[1]["metrics"]   # seeded from its configuration


def test_cli_rerun_prints_the_front_without_running_trials(first_run, capsys, tmp_path):
    import yaml

    from deploy.cli.main import main

    out, first = first_run
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    assert main(["explore", str(space), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text and "0 computed, 5 already finished" in text


def test_optuna_search_runs_on_tune_and_resumes(ray_local, tmp_path):
    import deploy
    from deploy.explore.space import parse

    space = copy.deepcopy(SPACE)
    space["search"] = {"optuna": {"trials": 3}}
    result = deploy.explore(space, tmp_path / "opt", quiet=True)
    grid = {json.dumps(p, sort_keys=True) for p in parse(copy.deepcopy(SPACE)).points()}
    assert 1 <= len(result.rows) <= 3 and not result.errors
    assert all(json.dumps(r["point"], sort_keys=True) in grid for r in result.rows)
    assert result.front
    again = deploy.explore(space, tmp_path / "opt", quiet=True)
    assert again.computed == [] and [r["key"] for r in again.rows] == [r["key"] for r in result.rows]


def test_killed_run_keeps_finished_trials_and_resumes_to_the_uninterrupted_table(first_run, ray_local, tmp_path):
    """A driver joined to the running Ray with --address is killed (SIGKILL) as soon as its first
    trial is stored; the rerun computes exactly the missing points, none of the stored ones, and
    ends with the table of the uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    import deploy

    _, uninterrupted = first_run
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "out"
    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, "-m", "deploy.entry", "explore", str(space), "-o", str(out),
                             "--address", address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 600
        while not list((out / "trials").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    stored = _stamps(out)
    assert 1 <= len(stored) <= 5
    for path in (out / "trials").glob("*.json"):
        assert json.loads(path.read_text())["key"] == path.stem   # whole rows only
    resumed = deploy.explore(copy.deepcopy(SPACE), out, quiet=True)
    assert set(resumed.computed) == {r["key"] for r in uninterrupted.rows} - set(stored)
    assert {k: v for k, v in _stamps(out).items() if k in stored} == stored
    table = [(r["key"], r["metrics"]) for r in resumed.rows]
    assert table == [(r["key"], r["metrics"]) for r in uninterrupted.rows]
