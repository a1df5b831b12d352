"""Accuracy vs programming variation on the IMC targets (figure + JSON).

    .venv/bin/python examples/imc_variation_sweep.py -o out/imc_variation
    .venv/bin/python examples/imc_variation_sweep.py --model out/digits_snn_imc.pt --sigmas 0 0.1 0.2

Every point programs a fresh chip (seeded) with lognormal conductance variation
of relative sigma ``s`` on every cell and evaluates the digits test split;
``--chips`` chips per point give the mean and spread. Curves: the shipped model
on ``imc-adc`` (5-bit ADC) and a retrained model on ``imc`` (``--model``; by
default a short retraining is run first).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deploy.core import data
from deploy.io import native
from deploy.io.atomic import atomic_write, staged_dir, write_text
from deploy.training.finetune import finetune
from hwmodels.imc import ImcAdcTarget, ImcTarget

ROOT = Path(__file__).resolve().parents[1]


def sweep(cls, graph, split, sigmas, chips: int, model: str) -> list[dict]:
    x = data.fit_to_model(split.x_test, graph.input_shape, graph.encoding)
    rows = []
    for sigma in sigmas:
        accs = []
        for chip in range(chips if sigma > 0 else 1):
            tgt = cls(options={"variation": float(sigma), "variation_model": model, "seed": chip})
            act = tgt.simulate(tgt.map(graph), x)
            accs.append(float((act.predictions == split.y_test).float().mean()))
        rows.append({"sigma": float(sigma), "mean": float(np.mean(accs)), "std": float(np.std(accs)), "chips": accs})
        print(f"  {cls.name:8s} sigma {sigma:5.2f}: accuracy {np.mean(accs):.4f} +- {np.std(accs):.4f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a model retrained for imc (default: retrain the shipped one)")
    ap.add_argument("--epochs", type=int, default=8, help="retraining epochs when --model is not given")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--chips", type=int, default=3)
    ap.add_argument("--variation-model", choices=("lognormal", "gaussian"), default="lognormal")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/imc_variation"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = data.load("digits")
    shipped = native.load(ROOT / "examples" / "models" / "digits_snn.pt")
    tuned = native.load(args.model) if args.model else finetune(shipped, ImcTarget(), split, epochs=args.epochs,
                                                                 lr=2e-3, progress=True)[0]
    results = {"imc-adc (shipped model)": sweep(ImcAdcTarget, shipped, split, args.sigmas, args.chips,
                                                args.variation_model),
               "imc (retrained model)": sweep(ImcTarget, tuned, split, args.sigmas, args.chips,
                                              args.variation_model)}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, rows in results.items():
        s = [r["sigma"] for r in rows]
        ax.errorbar(s, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], marker="o", capsize=3, label=label)
    ax.set_xlabel(f"programming variation sigma ({args.variation_model}, relative)")
    ax.set_ylabel("digits test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with staged_dir(args.out) as stage:
        atomic_write(stage / "accuracy_vs_variation.png", lambda p: fig.savefig(p, dpi=120, format="png"))
        write_text(stage / "accuracy_vs_variation.json", json.dumps(results, indent=2))
    print(f"figure and data written to {args.out}")


if __name__ == "__main__":
    main()
