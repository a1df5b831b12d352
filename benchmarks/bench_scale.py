"""Simulation at scale: per workload and target, samples/s of the target simulation vs a plain
torch float forward of the same network on the same batches, compile overhead, peak resident
memory, and the Loihi reference vs Lava; one JSON and one Markdown table.

    .venv/bin/python benchmarks/bench_scale.py                      # the default run (make bench)
    .venv/bin/python benchmarks/bench_scale.py --vgg-samples 100 300 1000 --targets digital imc

Workloads: DVSNet (64x64x2 events, eleven 32-channel convolutions, T = 5; synthetic event
streams; the shipped trained checkpoints, live on the target measured: ``dvsnet.pt`` on
digital, ``dvsnet_imc.pt`` on the IMC targets, random weights with balanced thresholds when
they are missing) and the CIFAR-10-shaped spiking VGG
(:mod:`deploy.training.arch.vgg`, T = 8, synthetic images; on the IMC targets its thresholds
rate-matched on the crossbar so that it is live there, :func:`bench_growth.build`). Every (workload, target, samples) runs
in a fresh process, so its peak RSS is that compile's own; times are CPU seconds of one
torch thread (robust to other jobs on the machine; the compile's wall time is kept too). In it, ``deploy.compile`` runs
with default settings (batch size from the memory budget, float reference on), then, on the
same batches, the target simulation alone, the float reference alone and the plain float
forward (``SpikingNet.run`` without statistics). Ratios, measured in one run:

- ``sim / float``: target simulation time / plain float forward time (targets: digital <= 1.5,
  imc <= 4 on DVSNet);
- ``overhead``: compile wall time / (target simulation + float reference when it runs
  separately) (target <= 1.3);
- ``Lava / reference``: per sample, from :mod:`bench_loihi` (target >= 1000).

Writes ``out/bench/bench.json`` and ``out/bench/bench.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_workload(name: str, path: Path) -> None:
    """Save workload ``name`` as a native checkpoint at ``path`` (weights seeded, thresholds balanced)."""
    from deploy.core import data
    from deploy.core.net import build
    from deploy.io import native
    from deploy.training.arch import vgg
    from deploy.training.arch.dvsnet import balance_thresholds, dvsnet

    if name == "dvsnet":
        net = build(dvsnet(timesteps=5), seed=0)
        x, _ = data.synthetic_events(2, 5, 64, 11, activity=0.5, seed=1)
        balance_thresholds(net, x, rate=0.15)
    else:
        net = vgg.model(seed=0)
    native.save(net.to_graph(), path)


def shipped(name: str, target: str) -> Path | None:
    """The trained checkpoint of workload ``name`` that is live on ``target``, if shipped."""
    if name != "dvsnet":
        return None
    path = ROOT / "examples" / "models" / ("dvsnet_imc.pt" if target.startswith("imc") else "dvsnet.pt")
    return path if path.exists() else None


def live_vgg(folder: Path, name: str, target: str) -> Path | None:
    """The VGG rate-matched on an IMC target, live there (:func:`bench_growth.build`)."""
    if name != "vgg_cifar" or not target.startswith("imc"):
        return None
    from bench_growth import build

    return build(folder / f"{name}_{target}.pt", target)


def inputs(name: str, graph, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from deploy.core import data
    from deploy.training.arch import vgg

    if name == "dvsnet":
        return data.synthetic_events(n, graph.timesteps, 64, 11, activity=0.5, seed=1)
    return vgg.synthetic_inputs(n, seed=1)


def output_dir(path: str) -> Path:
    """The folder the results go to, created if missing."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _timed(fn) -> tuple[object, float]:
    """``fn()`` and the CPU time it took (one torch thread: CPU time is the work done, whatever
    else shares the machine; the wall time of the compile is recorded apart)."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def measure_one(name: str, path: str, target: str, samples: int) -> dict:
    """One compile and its parts, in this process (called in a fresh one by :func:`run_one`)."""
    from deploy import pipeline
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from hwmodels import get_target
    from hwmodels.base import simulate_float

    torch.set_num_threads(1)
    graph = native.load(path)
    x, y = inputs(name, graph, samples)
    wall = time.perf_counter()
    rep, t_compile = _timed(lambda: pipeline.compile(graph, target=target, data=(x, y)))
    wall = time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tgt = get_target(target)
    batch = pipeline.auto_batch_size(graph, [target], samples)
    mapping = tgt.calibrate(tgt.map(graph), x, batch)
    gen = torch.Generator().manual_seed(0)
    _, t_sim = _timed(lambda: tgt.simulate(mapping, x, batch_size=batch, generator=gen))
    t_ref = 0.0 if tgt.simulates_float(mapping) else _timed(lambda: simulate_float(graph, x, batch))[1]
    net = SpikingNet(graph).eval()

    def plain() -> None:
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                net.run(x[i:i + batch])

    _, t_float = _timed(plain)
    return {"workload": name, "target": target, "samples": samples, "batch_size": batch,
            "compile_wall_s": wall, "compile_s": t_compile, "simulate_s": t_sim, "reference_s": t_ref, "float_forward_s": t_float,
            "samples_per_s": samples / t_sim, "float_samples_per_s": samples / t_float,
            "sim_over_float": t_sim / t_float, "overhead": t_compile / (t_sim + t_ref),
            "peak_rss_bytes": peak, "accuracy_deployed": rep.accuracy.deployed,
            "spikes_per_inference": rep.totals.spikes}


def run_one(name: str, path: Path, target: str, samples: int) -> dict:
    """:func:`measure_one` in a fresh interpreter (its own peak RSS)."""
    code = (f"import json, bench_scale as b; print(json.dumps(b.measure_one({name!r}, {str(path)!r}, "
            f"{target!r}, {samples})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent,
                          capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"workload": name, "target": target, "samples": samples, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], loihi: list[dict]) -> str:
    head = ("| workload | target | samples | batch | samples/s (target) | samples/s (float) | sim / float "
            "| compile CPU s | overhead | peak RSS MB |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['workload']} | {r['target']} | {r['samples']} | | {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['workload']} | {r['target']} | {r['samples']} | {r['batch_size']} | "
                     f"{r['samples_per_s']:.2f} | {r['float_samples_per_s']:.2f} | {r['sim_over_float']:.2f} | "
                     f"{r['compile_s']:.1f} | {r['overhead']:.2f} | {r['peak_rss_bytes'] / 2 ** 20:.0f} |")
    if loihi:
        from bench_loihi import table as loihi_table

        lines += ["", loihi_table(loihi)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=["digital", "imc"])
    ap.add_argument("--dvs-samples", nargs="*", type=int, default=[16])
    ap.add_argument("--vgg-samples", nargs="*", type=int, default=[8])
    ap.add_argument("--lava-samples", type=int, default=10, help="samples through Lava per network (0: skip)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    args = ap.parse_args()
    out = output_dir(args.out)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, counts in (("dvsnet", args.dvs_samples), ("vgg_cifar", args.vgg_samples)):
            if not counts:
                continue
            path = Path(tmp) / f"{name}.pt"
            build_workload(name, path)
            for target in args.targets:
                model = shipped(name, target) or live_vgg(Path(tmp), name, target) or path
                for n in counts:
                    rows.append(run_one(name, model, target, n))
                    print(json.dumps(rows[-1]), flush=True)
    loihi = []
    if args.lava_samples > 0:
        from bench_loihi import run as loihi_run

        loihi = loihi_run(lava_samples=args.lava_samples, repeats=2)
    text = table(rows, loihi)
    (out / "bench.json").write_text(json.dumps({"compile": rows, "loihi_vs_lava": loihi}, indent=2))
    (out / "bench.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
