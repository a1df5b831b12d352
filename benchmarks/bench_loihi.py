"""Loihi target: the vectorized reference vs real Lava per sample, same inputs, same run.

    .venv/bin/python benchmarks/bench_loihi.py                 # 20 samples through Lava per network
    .venv/bin/python benchmarks/bench_loihi.py --samples 40 --model examples/models/digits_snn.pt

Two networks: the shipped digits CNN (analog input, graded messages) and a conv net on
DVS-like event frames (binary spikes in, three 3x3 convolutions and a classifier).
The reference runs the whole test set (digits: 360 samples; events: 256) in batches of
32 (best of ``--repeats``); Lava runs a seeded subset one sample at a time (build +
compile once, on one sample first, then the timed run). Prints, per network, both
times per sample and their ratio (target >= 1000x), as wall time and as CPU time (this process
and Lava's finished runtime processes: the work done, whatever else loads the machine), whether every layer's spikes agree on
the Lava samples and the reference's accuracy; ``--json PATH`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from deploy.core import data, ir
from deploy.io import native
from hwmodels.loihi import Loihi1Target, reference
from hwmodels.loihi.lava_backend import run_lava
from hwmodels.loihi.network import encode_input

ROOT = Path(__file__).resolve().parents[1]
#: samples per reference batch: the integer state of a batch stays in cache
CHUNK = 32


def event_conv_net(size: int = 32, classes: int = 11, seed: int = 0) -> ir.Graph:
    """Three 3x3 convolutions (8, 16, 16 channels; the last two strided) and a classifier on
    (2, size, size) event frames, T = 8, with thresholds that keep every layer firing."""
    rng = np.random.default_rng(seed)
    spec = [(8, 2, 1), (16, 8, 2), (16, 16, 2)]
    nodes, prev, side = [], "input", size
    for i, (out, inp, stride) in enumerate(spec, start=1):
        w = (rng.standard_normal((out, inp, 3, 3)) * (2.0 / (inp * 9)) ** 0.5).astype(np.float32)
        nodes += [ir.Conv2d(f"c{i}", [prev], weight=w, stride=stride, padding=1),
                  ir.LIF(f"l{i}", [f"c{i}"], beta=0.9, threshold=0.5)]
        prev, side = f"l{i}", (side - 1) // stride + 1
    n_in = spec[-1][0] * side * side
    w = (rng.standard_normal((classes, n_in)) * (2.0 / n_in) ** 0.5).astype(np.float32)
    nodes += [ir.Flatten("f", [prev]), ir.Linear("fc", ["f"], weight=w), ir.LIF("out", ["fc"], beta=0.9, threshold=0.5)]
    return ir.Graph((2, size, size), nodes, timesteps=8, encoding="events", name="event_conv")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (Lava's runtime processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _best(fn, repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, c0 = time.perf_counter(), _cpu()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu() - c0)
    return min(wall), min(cpu)


def measure(graph: ir.Graph, x_all: torch.Tensor, y_all: torch.Tensor, lava_samples: int, repeats: int = 3,
            seed: int = 0) -> dict:
    """Reference (whole set, one batch) vs Lava (a seeded subset, per sample) on one network."""
    torch.set_num_threads(1)
    mapping = Loihi1Target().map(graph)
    net = mapping.network
    xq_all = encode_input(net, x_all)

    def whole_set() -> dict[str, torch.Tensor]:
        parts = [reference.run(net, xq_all[:, i:i + CHUNK]) for i in range(0, len(x_all), CHUNK)]
        return {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}

    t_ref, c_ref = _best(whole_set, repeats)
    full = whole_set()
    out = full[net.output][net.population(net.output).start:].sum(0).float()
    acc = float((out.argmax(-1) == y_all).float().mean())
    pick = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))[:lava_samples]
    xq = xq_all[:, pick]
    run_lava(net, xq[:, :1])                                   # build + compile, untimed
    start, c0 = time.perf_counter(), _cpu()
    lava = run_lava(net, xq)
    t_lava, c_lava = time.perf_counter() - start, _cpu() - c0
    agree = all(torch.equal(full[p.name][:, pick], lava[p.name]) for p in net.populations)
    ref_ps, lava_ps = t_ref / len(x_all), t_lava / lava_samples
    return {"network": graph.name, "populations": len(net.populations), "steps": net.steps,
            "reference_samples": len(x_all), "reference_ms_per_sample": ref_ps * 1e3,
            "lava_samples": lava_samples, "lava_s_per_sample": lava_ps, "ratio": lava_ps / ref_ps,
            "spike_exact": agree, "reference_accuracy": acc,
            "reference_cpu_ms_per_sample": c_ref / len(x_all) * 1e3, "lava_cpu_s_per_sample": c_lava / lava_samples,
            "cpu_ratio": (c_lava / lava_samples) / (c_ref / len(x_all))}


def run(lava_samples: int = 20, repeats: int = 3, model: str | Path = ROOT / "examples/models/digits_snn.pt",
        seed: int = 0) -> list[dict]:
    """Both networks' measurements."""
    graph = native.load(model)
    split = data.load("digits")
    x = data.fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    rows = [measure(graph, x, split.y_test, lava_samples, repeats, seed)]
    ev = event_conv_net()
    xe, ye = data.synthetic_events(256, ev.timesteps, ev.input_shape[1], 11, activity=0.3, seed=1)
    rows.append(measure(ev, xe, ye, lava_samples, repeats, seed))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| network | reference ms/sample (samples) | Lava s/sample | Lava / reference (wall) "
             "| reference CPU ms/sample | Lava CPU s/sample | Lava / reference (CPU) | spike-exact |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['reference_ms_per_sample']:.3f} ({r['reference_samples']}) | "
              f"{r['lava_s_per_sample']:.3f} | {r['ratio']:.0f}x | {r['reference_cpu_ms_per_sample']:.3f} | "
              f"{r['lava_cpu_s_per_sample']:.3f} | {r['cpu_ratio']:.0f}x | {r['spike_exact']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "examples/models/digits_snn.pt"))
    ap.add_argument("--samples", type=int, default=20, help="samples run through Lava per network")
    ap.add_argument("--repeats", type=int, default=3, help="reference timing repeats (best of)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random subset of test samples")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = run(args.samples, args.repeats, args.model, args.seed)
    print(table(rows))
    print("target: Lava / reference >= 1000x per sample, spike-exact")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
