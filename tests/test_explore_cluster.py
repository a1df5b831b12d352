"""deploy explore on a two-node Ray cluster inside this machine (ray.cluster_utils.Cluster, one
CPU per node): trials run on both nodes, rows land in the driver's folder, and every point equals
a direct deploy.compile, the same reference the local run is held to."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "models" / "digits_snn_imc.pt")
SPACE = {"model": MODEL, "data": "digits", "samples": 24, "seed": 3,
         "targets": {"digital": {}, "imc": {"rows": [64, 128, 256], "bits_per_cell": [1]}},
         "objectives": ["accuracy", "energy"], "search": "grid"}


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    yield c
    ray.shutdown()
    c.shutdown()


def test_two_node_cluster_runs_trials_on_both_nodes_with_local_results(cluster, tmp_path):
    import ray

    import deploy
    from deploy.pipeline import compile as run_compile
    from hwmodels import target_class

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    result = deploy.explore(copy.deepcopy(SPACE), tmp_path / "out", quiet=True)
    assert len(result.rows) == 4 and len(result.computed) == 4 and not result.errors
    assert len({r["node_id"] for r in result.rows}) == 2, "trials should spread over both nodes"
    for row in result.rows:
        p = row["point"]
        ref = run_compile(MODEL, target=target_class(p["target"])(options=p["options"]), data="digits",
                          samples=24, seed=row["seed"])
        assert row["metrics"]["accuracy"] == ref.accuracy.deployed, p
        assert row["metrics"]["energy_j"] == pytest.approx(ref.totals.energy_j, rel=1e-12), p
    assert sorted(p.stem for p in (tmp_path / "out" / "trials").glob("*.json")) == sorted(result.computed)
