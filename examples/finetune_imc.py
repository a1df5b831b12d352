"""Hardware-aware retraining for the ADC-less IMC target: float vs naive vs retrained accuracy.

    .venv/bin/python examples/finetune_imc.py                      # digits (shipped model) + MNIST
    .venv/bin/python examples/finetune_imc.py --skip-mnist --seeds 0 1 2 -o out/finetune_imc.json

Digits: the shipped spiking CNN. MNIST: a small spiking MLP trained here on the
MNIST split (8,000 train / 2,000 test images of the official t10k set). Each
model is evaluated in float, mapped naively on ``imc`` (1-bit sense amplifiers,
default options), and after ``deploy.training.finetune`` with each training seed
(the data split stays the one the float model was trained on); the table gives
every seed and the mean. The digits model retrained with the first seed is
written next to the JSON (``digits_snn_imc.pt``) when ``-o`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.io.atomic import write_text
from deploy.training.finetune import finetune
from deploy.training.snn import evaluate, fit
from hwmodels.imc import ImcTarget

ROOT = Path(__file__).resolve().parents[1]
MNIST_MLP = {"input_shape": [784], "timesteps": 4, "encoding": "direct", "name": "mnist_mlp",
             "layers": [{"type": "linear", "out_features": 128}, {"type": "lif", "beta": 0.9},
                        {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}


def on_target(target: ImcTarget, graph, split) -> float:
    x = data.fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    act = target.simulate(target.map(graph), x)
    return float((act.predictions == split.y_test).float().mean())


def study(name: str, graph, split, args) -> tuple[dict, object]:
    """Float, naive and retrained (one per seed) accuracy of ``graph``; returns the row and
    the model retrained with the first seed."""
    target = ImcTarget(options={"rows": args.rows, "cols": args.rows})
    row = {"float": evaluate(SpikingNet(graph), split.x_test, split.y_test),
           "naive": on_target(target, graph, split), "runs": []}
    first = None
    for seed in args.seeds:
        t0 = time.perf_counter()
        tuned, history = finetune(graph, target, split, epochs=args.epochs, lr=args.lr,
                                  progressive=args.progressive, augment=args.augment,
                                  learn_scales=args.learn_scales, seed=seed, progress=True)
        acc = on_target(target, tuned, split)
        seconds = time.perf_counter() - t0
        row["runs"].append({"seed": seed, "retrained": acc, "seconds": seconds, "history": history})
        first = tuned if first is None else first
        print(f"{name:7s} seed {seed}: imc retrained {acc:.4f} ({seconds:.0f} s)")
    accs = [r["retrained"] for r in row["runs"]]
    row["retrained_mean"] = statistics.fmean(accs)
    row["retrained_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
    row["gap_pp"] = 100 * (row["float"] - row["retrained_mean"])
    print(f"{name:7s} float {row['float']:.4f} | imc naive {row['naive']:.4f} | imc retrained "
          f"{row['retrained_mean']:.4f} +- {row['retrained_std']:.4f} over {len(accs)} seeds "
          f"(gap {row['gap_pp']:+.2f} pp, {args.epochs} epochs, augment {args.augment})")
    return row, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=25, help="retraining epochs")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--augment", type=int, default=0, help="shifted copies of each training image (0-8)")
    ap.add_argument("--rows", type=int, default=128, help="array rows and columns")
    ap.add_argument("--max-scales", dest="learn_scales", action="store_false",
                    help="weight scales max|w| / qmax instead of learned ones")
    ap.add_argument("--progressive", action="store_true", help="ADC bits 4 -> 3 -> 2 -> 1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="retraining seeds")
    ap.add_argument("--mnist-float-epochs", type=int, default=8)
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--skip-mnist", action="store_true")
    ap.add_argument("-o", "--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if not args.skip_digits:
        graph = native.load(ROOT / "examples" / "models" / "digits_snn.pt")
        results["digits"], tuned = study("digits", graph, data.load("digits"), args)
        if args.out:
            native.save(tuned, args.out.with_name("digits_snn_imc.pt"), meta={"finetuned_for": "imc"})
    if not args.skip_mnist:
        split = data.load("mnist")
        net = build(MNIST_MLP, seed=0)
        fit(net, split, epochs=args.mnist_float_epochs, lr=2e-3, seed=0, progress=True)
        results["mnist"], _ = study("mnist", net.to_graph(), split, args)
    if args.out:
        write_text(args.out, json.dumps(results, indent=2))
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
