"""IMC simulation speed: the crossbar simulator vs the plain float forward and vs the
bit-sliced float forward (the floor of a float simulator: all partial sums as one tiled
conv/matmul, no conversion), same net, same batch, measured in one run. Ideal conv layers
on ``imc`` run in int8 (sense amplifier folded into the convolution) and go below that floor.
Times are CPU seconds of one torch thread (robust to other jobs on the machine), median of the
repeats, the three networks interleaved.

    .venv/bin/python benchmarks/bench_imc.py [--repeats 5]

Target: imc / sliced floor <= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.training.arch.dvsnet import balance_thresholds, dvsnet
from hwmodels.imc import ImcTarget

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeats: int) -> list[float]:
    """CPU seconds of ``repeats`` calls of ``fn`` (one thread: the work done, whatever else runs)."""
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return out


@torch.no_grad()
def bench(name: str, graph, x: torch.Tensor, repeats: int) -> dict[str, float]:
    tgt = ImcTarget()
    mapping = tgt.map(graph)
    nets = {"float": SpikingNet(mapping.graph).eval(), "sliced floor": tgt.network(mapping, floor=True),
            "imc": tgt.network(mapping)}
    enc = nets["float"].encode(x)
    runs = {k: [] for k in nets}
    for _ in range(repeats):                      # interleaved, so that load changes hit all three
        for key, net in nets.items():
            runs[key] += _time(lambda net=net: net.run(enc, encoded=True), 1)
    nets["imc"].pop_counters()
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"{name}: batch {x.shape[0]}, T={graph.timesteps}; median CPU time of {repeats} runs")
    for key, val in med.items():
        print(f"  {key:13s} {val * 1e3:9.1f} ms")
    print(f"  imc / float         = {med['imc'] / med['float']:.2f}")
    print(f"  imc / sliced floor  = {med['imc'] / med['sliced floor']:.2f}   (target <= 1.5)")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--digits-batch", type=int, default=256)
    ap.add_argument("--dvs-batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = data.load("digits")
    bench("digits_snn (shipped)", native.load(ROOT / "examples" / "models" / "digits_snn.pt"),
          split.x_test[:args.digits_batch], args.repeats)
    net = build(dvsnet(timesteps=5))
    x, _ = data.synthetic_events(args.dvs_batch, 5, 64, 11, activity=0.5, seed=1)
    balance_thresholds(net, x[:2], rate=0.15)
    bench("dvsnet (64x64x2 events, 11 conv + fc)", net.to_graph(), x, args.repeats)


if __name__ == "__main__":
    main()
