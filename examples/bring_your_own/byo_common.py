"""Helpers the bring-your-own-model scripts share: the digits split, the test file, compiling on
the targets, retraining for imc."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import torch

from deploy.core import data


def digits() -> data.Split:
    """The digits split every script trains and tests on (pixels in [0, 1], (N, 1, 8, 8), seed 0)."""
    return data.load("digits", seed=0)


def save_test(path: Path, x: torch.Tensor, y: torch.Tensor) -> Path:
    """Write the test inputs exactly as the framework saw them, as ``.npz`` arrays ``x``, ``y``."""
    np.savez(path, x=x.detach().numpy().astype(np.float32), y=y.numpy().astype(np.int64))
    return path


def compile_report(args: list[str]) -> dict:
    """Run ``deploy compile ARGS -o ...`` through the CLI and return the numbers of its report.json."""
    from deploy.cli import main

    out = Path(args[args.index("-o") + 1])
    command = "deploy compile " + shlex.join(args)
    code = main(["compile", *args, "--no-figures"])
    if code != 0:
        raise SystemExit(f"{command} failed with exit code {code}")
    rep = json.loads((out / "report.json").read_text())
    acc = rep["accuracy"]
    return {"command": command, "target": rep["target"]["name"], "samples": acc["samples"],
            "reference": acc["reference"], "deployed": acc["deployed"],
            "correct_reference": round(acc["reference"] * acc["samples"]),
            "correct_deployed": round(acc["deployed"] * acc["samples"]),
            "spikes_per_inference": rep["totals"]["spikes"], "energy_j": rep["totals"]["energy_j"],
            "warnings": [w["code"] for w in rep.get("warnings", [])]}


def write_results(path: Path, results: dict) -> None:
    """Write the measured numbers as JSON next to the model files."""
    path.write_text(json.dumps(results, indent=2) + "\n")


def finetune(args: list[str]) -> str:
    """Run ``deploy finetune ARGS`` (IMC-aware retraining) through the CLI; returns the command."""
    from deploy.cli import main

    command = "deploy finetune " + shlex.join(args)
    if main(["finetune", *args]) != 0:
        raise SystemExit(f"{command} failed")
    return command


def compile_on_targets(model: list[str], out: Path, targets: list[str]) -> dict[str, dict]:
    """``deploy compile MODEL --data OUT/test.npz`` on each target (MODEL: the path and its model
    options); one printed line and the report's numbers per target."""
    reports = {}
    for target in targets:
        rep = compile_report([*model, "--data", f"{out}/test.npz", "--target", target, "-o", f"{out}/report_{target}"])
        reports[target] = rep
        print(f"{target}: float reference {rep['correct_reference']}/{rep['samples']}, deployed "
              f"{rep['correct_deployed']}/{rep['samples']}, {rep['spikes_per_inference']:.2f} spikes per "
              f"inference  [{rep['command']}]")
    return reports


def retrain_for_imc(model: list[str], out: Path, name: str, data: str = "digits", epochs: int | None = None) -> dict:
    """``deploy finetune MODEL --target imc -o OUT/NAME`` (the crossbar's partial-sum quantization in
    training), then the retrained model compiled on imc against OUT/test.npz; its numbers and both commands."""
    retrained = out / name
    cmd = finetune([*model, "--target", "imc", "--data", data, *(["--epochs", str(epochs)] if epochs else []),
                    "-o", str(retrained)])
    rep = compile_report([str(retrained), "--data", f"{out}/test.npz", "--target", "imc",
                          "-o", f"{out}/report_imc_ft"])
    print(f"imc after finetune: deployed {rep['correct_deployed']}/{rep['samples']}  [{cmd}; {rep['command']}]")
    return {**rep, "finetune": cmd}


def agreement(own: dict, rep: dict) -> str:
    """The framework's run vs the float reference: correct samples and spikes per inference."""
    n = own["samples"]
    same_acc = own["correct"] == rep["correct_reference"]
    line = (f"{own['framework']} {own['correct']}/{n} correct vs float reference {rep['correct_reference']}/{n}: "
            f"{'equal' if same_acc else 'DIFFERENT'}")
    if "spikes_per_inference" in own:
        a, b = own["spikes_per_inference"] * n, rep["spikes_per_inference"] * n
        line += f"; spikes {a:.0f} vs {b:.0f} in {n} samples: {'equal' if round(a) == round(b) else 'DIFFERENT'}"
    return line
