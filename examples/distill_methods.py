"""Measure the three distillation methods of this family against their baselines.

1. PKKD (MNIST split, 8000 train / 2000 test): the CNN, the adder net alone and the adder
   net with PKKD (CNN teacher trained alongside), with energy per inference on the
   ``digital`` target's constants (adds priced as adds; not a spiking network);
2. teacher-assistant ensemble (digits): student by KD from the teacher (no assistant), from
   one assistant (twice as wide) and from the DE-weighted ensemble of three assistants
   (3x, 2x, 1.5x wide), same student, three seeds; 20 % of the training split is held out
   for the ensemble weights and no run trains on it;
3. hint points (digits): KD + hint at the fixed pair (last hidden layers) vs ``--hints auto``
   (clustered teacher layers), three seeds.

Prints Markdown tables and writes the numbers to ``--out`` (JSON).

    python examples/distill_methods.py                  # about 30 min on one core
    python examples/distill_methods.py --only pkkd --pkkd-epochs 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deploy.core import data
from deploy.io.atomic import write_text
from deploy.training.distill.distill import build_student, distill, measure
from deploy.training.distill.hint_selection import auto_hint_layers
from deploy.training.distill.pkkd import train as pkkd_train
from deploy.training.distill.ta_ensemble import distill_ensemble, hold_out, train_assistants
from deploy.training.distill.teachers import Teacher, load_teacher
from hwmodels.digital.ann_cost import digital_cost

HERE = Path(__file__).resolve().parent
TEACHER = HERE / "models" / "digits_ann.pt"
STUDENT = HERE / "students" / "digits_student.yaml"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_pkkd(epochs: int, seed: int) -> dict:
    split = data.load("mnist", seed=0)
    rows = {}
    for method in ("cnn", "adder", "pkkd"):
        start = time.perf_counter()
        net, hist, teacher = pkkd_train(split, method, epochs=epochs, seed=seed,
                                        lr=2e-3 if method == "cnn" else 3e-3)
        cost32, cost8 = digital_cost(net, (1, 28, 28), 32), digital_cost(net, (1, 28, 28), 8)
        rows[method] = {"test_acc": hist[-1]["test_acc"], "history": hist,
                        "teacher_acc": hist[-1].get("teacher_acc"), "seconds": round(time.perf_counter() - start),
                        "energy_fp32_j": cost32["totals"]["energy_j"], "energy_int8_j": cost8["totals"]["energy_j"],
                        "adds": cost32["totals"]["adds"], "mults": cost32["totals"]["mults"],
                        "latency_s": cost32["totals"]["latency_s"], "note": cost32["note"]}
        log(f"pkkd/{method}: {rows[method]['test_acc']:.4f} ({rows[method]['seconds']} s)")
    return rows


def run_ta(epochs: int, seeds: list[int]) -> dict:
    split = data.load("digits", seed=0)
    teacher = load_teacher(TEACHER)
    train, _ = hold_out(split)
    kd = {"epochs": epochs}
    out = {"none": [], "one": [], "ensemble": [], "weights": [], "assistant_val_acc": []}
    for seed in seeds:
        assistants = train_assistants(teacher, STUDENT, train, (3.0, 2.0, 1.5), seed, **kd)
        none, _ = distill(teacher, STUDENT, train, method="kd", seed=seed, progress=False, **kd)
        one, _ = distill(Teacher(assistants[1], "assistant 2x"), STUDENT, train, method="kd", seed=seed,
                         progress=False, **kd)
        ens = distill_ensemble(teacher, STUDENT, split, seed=seed, assistants=assistants, **kd)
        for key, net in (("none", none), ("one", one), ("ensemble", ens.student)):
            out[key].append(measure(net, split.x_test, split.y_test))
        out["weights"].append(ens.weights.tolist())
        out["assistant_val_acc"].append(ens.assistant_acc)
        log(f"ta seed {seed}: " + ", ".join(f"{k} {out[k][-1]['accuracy']:.4f}" for k in ("none", "one", "ensemble"))
            + f", weights {np.round(ens.weights, 3).tolist()}")
    return out


def run_hints(epochs: int, seeds: list[int]) -> dict:
    split = data.load("digits", seed=0)
    teacher = load_teacher(TEACHER)
    auto = auto_hint_layers(teacher, build_student(STUDENT), split.x_train[:256])
    out = {"auto_pair": list(auto), "fixed": [], "auto": []}
    for seed in seeds:
        for key, pair in (("fixed", None), ("auto", auto)):
            net, _ = distill(teacher, STUDENT, split, method="hint", hint_layers=pair, epochs=epochs, seed=seed,
                             progress=False)
            out[key].append(measure(net, split.x_test, split.y_test))
        log(f"hints seed {seed}: fixed {out['fixed'][-1]['accuracy']:.4f}, auto {auto} {out['auto'][-1]['accuracy']:.4f}")
    return out


def _ms(rows: list[dict], key: str = "accuracy") -> str:
    v = np.array([r[key] for r in rows])
    return f"{v.mean() * 100:.2f} ± {v.std() * 100:.2f}" if key == "accuracy" else f"{v.mean():.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("pkkd", "ta", "hints"), action="append")
    ap.add_argument("--pkkd-epochs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=10, help="epochs of each digits distillation hop")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("distill_methods.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    parts = args.only or ["pkkd", "ta", "hints"]
    seeds = list(range(args.seeds))
    res = {}
    if "pkkd" in parts:
        res["pkkd"] = run_pkkd(args.pkkd_epochs, 0)
        write_text(args.out, json.dumps(res, indent=1))
        print("\n| MNIST split | test acc | adds | mults | energy/inference fp32 (digital) | int8 |\n|---|---|---|---|---|---|")
        for k, r in res["pkkd"].items():
            print(f"| {k} | {r['test_acc'] * 100:.2f} % | {r['adds']:,} | {r['mults']:,} | "
                  f"{r['energy_fp32_j'] * 1e6:.3f} µJ | {r['energy_int8_j'] * 1e6:.3f} µJ |")
    if "ta" in parts:
        res["ta"] = run_ta(args.epochs, seeds)
        write_text(args.out, json.dumps(res, indent=1))
        print("\n| digits student | accuracy % (mean ± sd, 3 seeds) | spikes/inference |\n|---|---|---|")
        for k in ("none", "one", "ensemble"):
            print(f"| {k} | {_ms(res['ta'][k])} | {_ms(res['ta'][k], 'spikes')} |")
    if "hints" in parts:
        res["hints"] = run_hints(args.epochs, seeds)
        write_text(args.out, json.dumps(res, indent=1))
        print("\n| hint | accuracy % | spikes/inference |\n|---|---|---|")
        for k in ("fixed", "auto"):
            print(f"| {k} | {_ms(res['hints'][k])} | {_ms(res['hints'][k], 'spikes')} |")
    log(f"-> {args.out}")


if __name__ == "__main__":
    main()
