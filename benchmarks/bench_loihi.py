"""Loihi target: reference model vs real Lava, same inputs, same run; deployed accuracy.

    .venv/bin/python benchmarks/bench_loihi.py                 # 20 samples through Lava
    .venv/bin/python benchmarks/bench_loihi.py --samples 60 --model examples/models/digits_snn.pt

Lava runs a seeded random subset of the digits test split. Prints the wall time of the vectorized reference and of Lava (build + compile +
run, and run only) on the same samples, their ratio, whether every layer's
spikes agree, and the accuracy of the deployed model: float (as trained),
float with Loihi's reset to zero, the reference on the whole test split and
Lava on the benchmarked samples.
"""

from __future__ import annotations

import argparse
import time

import torch

from deploy.core import data
from deploy.core.net import SpikingNet
from deploy.io import native
from hwmodels.loihi import Loihi1Target, reference
from hwmodels.loihi.lava_backend import run_lava
from hwmodels.loihi.network import encode_input


def _acc(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="examples/models/digits_snn.pt")
    ap.add_argument("--samples", type=int, default=20, help="samples run through Lava")
    ap.add_argument("--repeats", type=int, default=5, help="reference timing repeats (best of)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random subset of test samples")
    args = ap.parse_args()
    torch.set_num_threads(1)

    graph = native.load(args.model)
    split = data.load("digits")
    x_all = data.fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    pick = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(args.seed))[:args.samples]
    x, y = x_all[pick], split.y_test[pick]
    mapping = Loihi1Target().map(graph)
    net = mapping.network
    xq = encode_input(net, x)

    t_ref = min(_timed(lambda: reference.run(net, encode_input(net, x)))[1] for _ in range(args.repeats))
    ref = reference.run(net, xq)
    start = time.perf_counter()
    lava = run_lava(net, xq[:, :1])
    t_first = time.perf_counter() - start
    lava_rest, t_rest = _timed(lambda: run_lava(net, xq))
    t_lava = t_rest
    agree = all(torch.equal(ref[p.name], lava_rest[p.name]) for p in net.populations)
    del lava

    def window_counts(run):
        return run[net.output][net.population(net.output).start:].sum(0).float()

    pred_ref, pred_lava = window_counts(ref).argmax(-1), window_counts(lava_rest).argmax(-1)
    zero = graph.copy()
    for node in zero.nodes:
        if node.kind == "lif":
            node.reset = "zero"
    full = reference.run(net, encode_input(net, x_all))
    print(f"model {args.model}: {len(net.populations)} LIF populations, {net.steps} Lava steps per sample, "
          f"{mapping.placement.cores} cores")
    print(f"reference : {t_ref * 1e3:9.2f} ms for {len(x)} samples (best of {args.repeats})")
    print(f"lava      : {t_lava:9.2f} s  for {len(x)} samples (build + compile + run; "
          f"a 1-sample build + compile + run took {t_first:.2f} s)")
    print(f"ratio     : {t_lava / t_ref:9.0f}x  (lava / reference, same inputs, same run; target >= 100x)")
    print(f"agreement : every layer, every step, spike for spike: {agree}")
    print(f"accuracy  : float (as trained) {_acc(SpikingNet(graph).predict(x_all), split.y_test):.4f}, "
          f"float reset-to-zero {_acc(SpikingNet(zero).predict(x_all), split.y_test):.4f}, "
          f"Loihi reference {_acc(window_counts(full).argmax(-1), split.y_test):.4f} "
          f"({len(x_all)} test samples)")
    print(f"            on the {len(x)} Lava samples (seed {args.seed}): float {_acc(SpikingNet(graph).predict(x), y):.4f}, "
          f"reference {_acc(pred_ref, y):.4f}, Lava {_acc(pred_lava, y):.4f}")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


if __name__ == "__main__":
    main()
