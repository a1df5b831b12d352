"""Time of a full precision search of the shipped digits CNN, and what the pruning saves.

    python benchmarks/bench_quant_search.py             # PTQ + QAT, weights 2..16, neurons 4..24, all roundings
    python benchmarks/bench_quant_search.py --scheme ptq

Prints the wall (and CPU) time of the search, the evaluations it made against the size of
the network-level space, and, measured in the same run, the time of one PTQ and
one QAT evaluation, from which the exhaustive search time is extrapolated.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deploy.core import data
from deploy.io import native
from quant import QConfig, evaluate, quantize, search

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheme", choices=("ptq", "both"), default="both")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    graph = native.load(ROOT / "examples" / "models" / "digits_snn.pt")
    split = data.load("digits")
    schemes = ("ptq", "qat") if args.scheme == "both" else ("ptq",)

    t_search, cpu = time.perf_counter(), time.process_time()
    result = search(graph, split, schemes=schemes, progress=False)
    t_search, cpu = time.perf_counter() - t_search, time.process_time() - cpu

    cfg = QConfig(4, 8)
    t_ptq = timed(lambda: evaluate(quantize(graph, cfg, data=split), split.x_test, split.y_test))
    t_qat = timed(lambda: evaluate(quantize(graph, QConfig(4, 8, scheme="qat"), data=split), split.x_test,
                                   split.y_test)) if "qat" in schemes else 0.0
    n_ptq = sum(p.config.scheme == "ptq" for p in result.evaluated)
    n_qat = len(result.evaluated) - n_ptq
    per_family = len(result.space["weight_bits"]) * len(result.space["neuron_bits"]) * len(result.space["rounding"])
    exhaustive = per_family * t_ptq + (per_family * t_qat if "qat" in schemes else 0.0)
    s = result.savings()
    print(f"digits CNN, {args.threads} thread(s), schemes {'+'.join(schemes)}")
    print(f"  search: {t_search:.1f} s wall ({cpu:.1f} s CPU), {len(result.evaluated)} evaluations ({n_ptq} PTQ, {n_qat} QAT), "
          f"{result.skipped} skipped as dominated, of {result.space['size']} network-level configurations")
    qat_note = f", one QAT evaluation {t_qat:.2f} s" if "qat" in schemes else ""
    print(f"  one PTQ evaluation {t_ptq:.2f} s{qat_note} -> exhaustive search ~{exhaustive / 60:.0f} min, "
          f"{exhaustive / t_search:.0f}x the pruned search")
    print(f"  chosen {result.chosen.config.label()}: {100 * result.chosen.accuracy:.2f}% "
          f"(float {100 * result.baseline['accuracy']:.2f}%), memory {result.chosen.memory_bytes / 1024:.2f} KB "
          f"vs {result.baseline['memory_bytes'] / 1024:.2f} KB float32 = {s['memory']:.2f}x "
          f"(parameters {s['params']:.2f}x)")


if __name__ == "__main__":
    main()
