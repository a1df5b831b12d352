"""Train a small ANN, convert it to an IF spiking network, and plot accuracy against timesteps.

    python examples/convert_digits.py                    # digits and MNIST, both methods
    python examples/convert_digits.py --datasets digits  # digits only (about a minute)

For each dataset: an ANN with BatchNorm (threshold balancing, 99.9th percentile; with the
mean-current ``li`` readout and with an IF spike-count readout) and the same ANN with
trainable clipping layers (TCL, method "clip") are trained on the training split,
converted at each T, and evaluated on the test split. Writes
``examples/models/{digits,mnist}_ann.pt``, ``examples/models/digits_converted_snn.pt``
(threshold balancing with the IF readout, which every target runs, at the smallest T
within 1 point of the ANN), the figure
``out/convert/accuracy_vs_T.png`` and ``out/convert/results.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from deploy.core import data
from deploy.core.net import SpikingNet
from deploy.io import native
from deploy.io.atomic import atomic_write, write_text
from deploy.training import ann as annlib
from deploy.training.convert import convert
from deploy.training.snn import evaluate

TIMESTEPS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def make_ann(dataset: str, act: str) -> annlib.ANN:
    """Digits: three 3x3 convs (as the shipped SNN); MNIST: two convs with average pooling."""
    def a():
        return annlib.Clip(2.0) if act == "clip" else nn.ReLU()
    if dataset == "digits":
        layers = [nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), a(),
                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), a(),
                  nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), a(),
                  nn.Flatten(), nn.Linear(128, 10)]
        return annlib.ANN(layers, (1, 8, 8))
    layers = [nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), a(), nn.AvgPool2d(2),
              nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), a(), nn.AvgPool2d(2),
              nn.Flatten(), nn.Linear(32 * 7 * 7, 10)]
    return annlib.ANN(layers, (1, 28, 28))


#: (label, conversion method, ANN activation, SNN readout)
RUNS = (("threshold-balance", "threshold-balance", "relu", "li"),
        ("threshold-balance, IF readout", "threshold-balance", "relu", "if"),
        ("clip (TCL)", "clip", "clip", "li"))


def sweep(model: nn.Module, split: data.Split, method: str, readout: str, x_test: torch.Tensor,
          y_test: torch.Tensor) -> dict[int, float]:
    out = {}
    for t in TIMESTEPS:
        graph = convert(model, method=method, timesteps=t, data=split, percentile=99.9, readout=readout)
        out[t] = evaluate(SpikingNet(graph), x_test, y_test)
        print(f"  {method:18s} {readout} readout  T={t:3d}  SNN accuracy {out[t]:.4f}", flush=True)
    return out


def smallest_t(acc: dict[int, float], ref: float, tol: float = 0.01) -> int | None:
    return next((t for t in sorted(acc) if acc[t] >= ref - tol), None)


def run(dataset: str, epochs: int, test_samples: int | None, seed: int, models: Path) -> dict:
    split = data.load(dataset, seed=seed)
    x_test, y_test = split.x_test[:test_samples], split.y_test[:test_samples]
    res: dict = {"dataset": dataset, "test_samples": len(x_test), "methods": {}}
    models_by_act: dict[str, tuple[nn.Module, float]] = {}
    for label, method, act, readout in RUNS:
        if act not in models_by_act:
            torch.manual_seed(seed)
            model = make_ann(dataset, act)
            annlib.fit(model, split, epochs=epochs, seed=seed, progress=True)
            models_by_act[act] = (model, annlib.evaluate(model, x_test, y_test))
            print(f"{dataset}: ANN ({act}) test accuracy {models_by_act[act][1]:.4f}", flush=True)
        model, ann_acc = models_by_act[act]
        acc = sweep(model, split, method, readout, x_test, y_test)
        t_min = smallest_t(acc, ann_acc)
        res["methods"][label] = {"method": method, "readout": readout, "ann_accuracy": ann_acc,
                                 "snn_accuracy": acc, "smallest_T_within_1pt": t_min}
        if act == "relu" and readout == "li":
            annlib.save(model, models / f"{dataset}_ann.pt",
                        meta={"dataset": dataset, "test_accuracy": ann_acc, "epochs": epochs,
                              "trained_with": "examples/convert_digits.py"})
        if dataset == "digits" and readout == "if" and t_min is not None:
            # spike-count readout: runs on every target, Loihi included
            graph = convert(model, timesteps=t_min, data=split, readout="if", name="digits_converted_snn")
            native.save(graph, models / "digits_converted_snn.pt",
                        meta={"dataset": dataset, "test_accuracy": acc[t_min], "ann_accuracy": ann_acc,
                              "family": "ann-to-snn conversion", "trained_with": "examples/convert_digits.py"})
    return res


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        lines = set()
        for (label, r), color in zip(res["methods"].items(), ("C0", "C2", "C1"), strict=False):
            ts = sorted(r["snn_accuracy"])
            ax.plot(ts, [100 * r["snn_accuracy"][t] for t in ts], "o-", color=color, label=f"SNN, {label}")
            if r["ann_accuracy"] not in lines:
                lines.add(r["ann_accuracy"])
                act = "ReLU" if r["method"] == "threshold-balance" else "clip"
                ax.axhline(100 * r["ann_accuracy"], color=color, ls="--", label=f"ANN ({act})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(max(0, min(ax.get_ylim()[0], 80)), 100)
        ax.set_title(f"ANN->SNN conversion on {res['dataset']} ({res['test_samples']} test images)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"])
    ap.add_argument("--epochs", type=int, default=40, help="ANN epochs on digits (MNIST uses a quarter)")
    ap.add_argument("--mnist-test-samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, default=Path("examples/models"))
    ap.add_argument("--out", type=Path, default=Path("out/convert"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    for ds in args.datasets:
        epochs = args.epochs if ds == "digits" else max(1, args.epochs // 4)
        results.append(run(ds, epochs, args.mnist_test_samples if ds == "mnist" else None, args.seed, args.models))
    write_text(args.out / "results.json", json.dumps(results, indent=2))
    plot(results, args.out / "accuracy_vs_T.png")
    for res in results:
        for label, r in res["methods"].items():
            print(f"{res['dataset']:6s} {label:30s} ANN {r['ann_accuracy']:.4f}; smallest T within 1 point: "
                  f"{r['smallest_T_within_1pt']}")
    print(f"figure: {args.out / 'accuracy_vs_T.png'}")


if __name__ == "__main__":
    main()
