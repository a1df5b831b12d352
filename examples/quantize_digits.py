"""Precision search (TinySNN style) on the shipped digits CNN and on a small MNIST SNN.

    python examples/quantize_digits.py              # digits: weights 2..16, neurons 4..24, all roundings, PTQ + QAT
    python examples/quantize_digits.py --mnist      # also train a 784-128-10 SNN on the MNIST train split and search it
    python examples/quantize_digits.py --scheme ptq --per-layer

The same search from the command line:

    deploy quantize examples/models/digits_snn.pt --data digits -o out/quantize/digits

Each run writes search.json, model.pt (a native checkpoint `deploy compile` accepts)
and pareto.png into out/quantize/<dataset>/, and prints the memory saving
against the float32 model at <= 1 point accuracy loss.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deploy.cli.quantize import print_summary
from deploy.core import data
from deploy.core.net import build
from deploy.io import native
from deploy.training.snn import evaluate, fit
from quant import search

ROOT = Path(__file__).resolve().parents[1]
MNIST_SPEC = {"input_shape": [784], "timesteps": 8, "encoding": "direct", "name": "mnist_snn",
              "layers": [{"type": "linear", "out_features": 128}, {"type": "lif", "beta": 0.9},
                         {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}


def mnist_model(path: Path, epochs: int, seed: int) -> Path:
    """Train the small MNIST SNN on the train split of deploy.core.data.load("mnist") (once)."""
    if path.exists():
        return path
    split = data.load("mnist", seed=seed)
    net = build(MNIST_SPEC, seed=seed)
    fit(net, split, epochs=epochs, lr=2e-3, seed=seed)
    acc = evaluate(net, split.x_test, split.y_test)
    native.save(net.to_graph(), path, meta={"dataset": "mnist", "test_accuracy": acc, "epochs": epochs,
                                            "trained_with": "examples/quantize_digits.py", "seed": seed})
    print(f"MNIST SNN: test accuracy {acc:.4f} after {epochs} epochs -> {path}")
    return path


def run(model: Path, dataset: str, args: argparse.Namespace) -> None:
    graph = native.load(model)
    schemes = ("ptq", "qat") if args.scheme == "both" else (args.scheme,)
    result = search(graph, data.load(dataset, seed=args.seed), max_acc_drop=args.max_acc_drop, schemes=schemes,
                    per_layer=args.per_layer, qat_epochs=args.qat_epochs, seed=args.seed, progress=True)
    out = Path(args.out) / dataset
    result.save(out)
    for w in result.warnings:
        print(f"warning: {w}")
    print_summary(result)
    s = result.savings()
    print(f"{dataset}: {result.chosen.config.label()} -> {s['memory']:.2f}x less memory than float32 "
          f"(parameters {s['params']:.2f}x), accuracy {100 * result.baseline['accuracy']:.2f}% -> "
          f"{100 * result.chosen.accuracy:.2f}%, search {result.seconds:.0f} s; written to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", action="store_true", help="also train and search a small MNIST SNN")
    ap.add_argument("--only-mnist", action="store_true", help="skip the digits search")
    ap.add_argument("--scheme", choices=("ptq", "qat", "both"), default="both")
    ap.add_argument("--per-layer", action="store_true")
    ap.add_argument("--max-acc-drop", type=float, default=1.0)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--mnist-epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default="out/quantize")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.only_mnist:
        run(ROOT / "examples" / "models" / "digits_snn.pt", "digits", args)
    if args.mnist or args.only_mnist:
        run(mnist_model(Path(args.out) / "mnist_snn.pt", args.mnist_epochs, args.seed), "mnist", args)


if __name__ == "__main__":
    main()
