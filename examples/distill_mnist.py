"""Distill an ANN teacher into a compact spiking CNN, and compare with plain training.

An ANN teacher is trained on the MNIST split (8000 train / 2000 test images of the
official t10k set; ``--data digits`` for scikit-learn digits); the student spec
(examples/students/<data>_student.yaml) is then trained plainly (cross-entropy) and
distilled with each method. Prints a Markdown table of accuracy, spikes per inference
and energy per inference on the ``digital`` target (and ``imc`` when present) from
``deploy.compile``; writes the students, the teacher and results.json to ``--out``.

    python examples/distill_mnist.py                       # MNIST, about 10 min on one core
    python examples/distill_mnist.py --data digits --epochs 40 --seeds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import torch

from deploy.core import data
from deploy.io import native
from deploy.io.atomic import write_text
from deploy.pipeline import compile as deploy_compile
from deploy.training import ann as annlib
from deploy.training.distill import (
    build_student,
    distill,
    load_student_spec,
    measure,
)
from deploy.training.snn import fit

HERE = Path(__file__).resolve().parent

TEACHERS = {
    "mnist": {"input_shape": [1, 28, 28], "name": "mnist_teacher", "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "pool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "pool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 128}, {"type": "relu"}, {"type": "linear", "out_features": 10}]},
    "digits": {"input_shape": [1, 8, 8], "name": "digits_teacher", "layers": [
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 128}, {"type": "relu"},
        {"type": "linear", "out_features": 10}]},
}


def runs(args: argparse.Namespace) -> list[tuple[str, str | None, dict]]:
    """(row label, method or None for plain training, distill options)."""
    reg = {"spike_reg": args.spike_reg}
    return [("plain (cross-entropy)", None, {}),
            ("kd", "kd", {}),
            ("kd + spike reg", "kd", reg),
            ("hetero-kd", "hetero-kd", {}),
            ("hetero-kd + spike reg", "hetero-kd", reg),
            ("ta + spike reg", "ta", reg),
            ("hint + spike reg", "hint", reg)]


def energy(graph, split, targets: list[str], samples: int) -> dict[str, dict[str, float]]:
    out = {}
    for name in targets:
        rep = deploy_compile(graph, target=name, data=(split.x_test, split.y_test), samples=samples)
        out[name] = {"energy_j": rep.totals.energy_j, "accuracy": rep.accuracy.deployed}
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=sorted(TEACHERS), default="mnist")
    ap.add_argument("--epochs", type=int, default=8, help="student epochs (per stage for ta)")
    ap.add_argument("--teacher-epochs", type=int, default=6)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--spike-reg", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=1, help="average the students over this many seeds")
    ap.add_argument("--energy-samples", type=int, default=500, help="test samples simulated per target")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("-o", "--out", default="out/distill")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out) / args.data
    split = data.load(args.data)
    spec = load_student_spec(HERE / "students" / f"{args.data}_student.yaml")
    targets = ["digital"] + (["imc"] if importlib.util.find_spec("hwmodels.imc") else [])

    start = time.perf_counter()
    teacher = annlib.from_spec(TEACHERS[args.data], seed=0)
    annlib.fit(teacher, split, epochs=args.teacher_epochs, progress=args.progress)
    t_acc = annlib.evaluate(teacher, split.x_test, split.y_test)
    annlib.save(teacher, out / "teacher.pt", meta={"dataset": args.data, "test_accuracy": t_acc})
    print(f"teacher ANN: test accuracy {t_acc:.4f} ({time.perf_counter() - start:.0f} s) -> {out / 'teacher.pt'}")

    results = []
    for label, method, opts in runs(args):
        per_seed = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            if method is None:
                net = build_student(spec, seed=seed)
                fit(net, split, epochs=args.epochs, seed=seed, progress=args.progress)
            else:
                net, _ = distill(teacher, spec, split, method=method, epochs=args.epochs,
                                 temperature=args.temperature, seed=seed, progress=args.progress, **opts)
            seconds = time.perf_counter() - t0
            m = measure(net, split.x_test, split.y_test)
            graph = net.to_graph()
            e = energy(graph, split, targets, args.energy_samples)
            slug = label.split(" (")[0].replace(" + ", "_").replace(" ", "_")
            native.save(graph, out / f"student_{slug}_s{seed}.pt",
                        meta={"dataset": args.data, "method": method or "plain", **opts, **m})
            per_seed.append({**m, "seconds": seconds, **{f"{k}_{t}": v[k] for t, v in e.items() for k in v}})
        row = {"label": label, "method": method or "plain", **opts,
               **{k: mean([r[k] for r in per_seed]) for k in per_seed[0]}}
        results.append(row)
        print(f"  {label:24s} acc {row['accuracy']:.4f}  spikes {row['spikes']:8.1f}  "
              f"{row['seconds']:.0f} s/run", flush=True)

    base = results[0]
    head = ("| student | accuracy (%) | vs plain (pt) | spikes / inference | vs plain | "
            + " | ".join(f"{t} energy (nJ)" for t in targets) + " | train s |")
    lines = [head, "|" + "---|" * (6 + len(targets))]
    for r in results:
        lines.append(f"| {r['label']} | {100 * r['accuracy']:.2f} | {100 * (r['accuracy'] - base['accuracy']):+.2f} | "
                     f"{r['spikes']:.0f} | {100 * (r['spikes'] / base['spikes'] - 1):+.0f}% | "
                     + " | ".join(f"{1e9 * r[f'energy_j_{t}']:.1f}" for t in targets)
                     + f" | {r['seconds']:.0f} |")
    table = "\n".join(lines)
    print(f"\n{args.data}: teacher ANN {100 * t_acc:.2f}%, student {spec.get('name')}, {args.epochs} epochs, "
          f"T={args.temperature:g}, spike reg {args.spike_reg:g}, {args.seeds} seed(s); energy per inference "
          f"on {args.energy_samples} test samples\n")
    print(table)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    write_text(out / "results.json", json.dumps({"data": args.data, "teacher_accuracy": t_acc,
                                                 "args": vars(args), "rows": results}, indent=2))
    write_text(out / "table.md", table + "\n")


if __name__ == "__main__":
    main()
