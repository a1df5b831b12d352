"""Exploration overhead: a design space run on Ray Tune vs the same points deployed standalone.

    .venv/bin/python benchmarks/bench_explore.py                 # examples/explore/digits.yaml (40 points)
    .venv/bin/python benchmarks/bench_explore.py --quick         # a 4-point space (digital, imc)

Measured in one run: the explore wall time of the whole space (a fresh output folder, the
machine's cores), the wall time per trial (explore wall x concurrent trials / points), and, for
the first ``--standalone`` points, the wall time of the same point deployed in a fresh process
(quantize + compile, the trial's own work, process start and imports included: what running the
points one command at a time costs). Prints both and their ratio (the goal: per trial <= 1.5x
standalone) and writes them to ``out/bench/explore.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

QUICK = {"model": "examples/models/digits_snn.pt", "data": "digits", "samples": 120, "seed": 0,
         "targets": {"digital": {}, "imc": {"rows": [128], "bits_per_cell": [1], "calibrate": True}},
         "quant": {"weight_bits": [4, 8], "neuron_bits": [8], "scheme": "ptq"},
         "objectives": ["accuracy", "energy", "latency"], "search": "grid"}

#: one point deployed in a fresh process, exactly as a trial does (deploy.explore.trial.run_point)
STANDALONE = """
import json, sys
from deploy.explore.space import parse
from deploy.explore.trial import Context, run_point
from deploy.pipeline import resolve_model
space, index, seed = parse(json.loads(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
ctx = Context.of(space)
metrics, _ = run_point(resolve_model(space.model), space.points()[index], ctx, seed)
print(json.dumps(metrics))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "examples" / "explore" / "digits.yaml"))
    ap.add_argument("--quick", action="store_true", help="a built-in 4-point space instead of --space")
    ap.add_argument("--standalone", type=int, default=2, help="points also deployed in a fresh process")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    args = ap.parse_args()

    import deploy

    doc = QUICK if args.quick else yaml.safe_load(Path(args.space).read_text())
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = deploy.explore(doc, Path(tmp) / "run", cpus=cpus, quiet=True)
        wall = time.perf_counter() - start
    rows = result.rows
    if not rows:
        sys.exit("error: the space produced no finished trial")
    per_trial = wall * min(cpus, len(rows)) / len(rows)
    own = sum(r.get("duration_s") or 0.0 for r in rows) / len(rows)

    from deploy.explore.space import parse

    points = parse(doc).points()
    standalone = []
    for i, row in enumerate(rows[:args.standalone]):
        key = json.dumps(row["point"], sort_keys=True)
        index = next(j for j, p in enumerate(points) if json.dumps(p, sort_keys=True) == key)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", STANDALONE, json.dumps(doc), str(index), str(row["seed"])],
                             cwd=ROOT, capture_output=True, text=True, check=True)
        standalone.append(time.perf_counter() - t0)
        same = json.loads(out.stdout.splitlines()[-1]) == row["metrics"]
        print(f"point {i}: standalone {standalone[-1]:.1f} s, same objectives as its trial: {same}")
    mean_alone = sum(standalone) / len(standalone) if standalone else float("nan")
    res = {"points": len(rows), "cpus": cpus, "explore_wall_s": wall, "wall_per_trial_s": per_trial,
           "trial_own_work_s": own, "standalone_s": standalone, "per_trial_over_standalone": per_trial / mean_alone}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "explore.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"{len(rows)} points on {cpus} CPUs: explore {wall:.1f} s, {per_trial:.1f} s per trial "
          f"({own:.1f} s of own work); standalone {mean_alone:.1f} s per point; "
          f"per trial / standalone = {res['per_trial_over_standalone']:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
