"""Rerun the commands behind the README's numbers and print claimed vs measured side by side.

    .venv/bin/python examples/reproduce.py --quick          # the fast subset (under 10 minutes)
    .venv/bin/python examples/reproduce.py                  # everything, retraining included
    .venv/bin/python examples/reproduce.py --only quantize -o out/reproduce.json

Every README number is a :class:`Claim` here: the value the README states, the
command that produces it (a :class:`Run`, shared by the claims it measures) and
how to read the value from what the command writes. A claim holds when the
measured value lies within its tolerance (accuracies are exact to the reported
digits; costs within 1 %). The exit code is 1 when a claim does not hold.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = str(Path(sys.executable).with_name("deploy"))


@dataclass
class Run:
    """One command; ``{out}`` in its arguments is replaced by a fresh output folder and
    ``{out:NAME}`` by the output folder of the earlier run NAME."""

    name: str
    argv: str
    quick: bool = True
    output: str = "report"  # report | dir | file: what {out} names

    def command(self, out: Path) -> list[str]:
        text = re.sub(r"\{out:([\w-]+)\}", lambda m: str(out.parent / m.group(1)), self.argv)
        args = shlex.split(text.replace("{out}", str(out)))
        if args[0] == "deploy":
            args[0] = DEPLOY
        elif args[0] == "python":
            args[0] = sys.executable
        return args


@dataclass
class Claim:
    """A number the README states, with the run that measures it."""

    run: str
    what: str
    claimed: float
    read: Callable[[Path], float]
    unit: str = "%"
    rel_tol: float = 0.0
    abs_tol: float = 0.0
    measured: float | None = field(default=None, init=False)

    def holds(self) -> bool:
        if self.measured is None:
            return False
        return abs(self.measured - self.claimed) <= max(self.abs_tol, self.rel_tol * abs(self.claimed))


# -- readers ------------------------------------------------------------------------------
def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def acc(key: str = "deployed") -> Callable[[Path], float]:
    """Accuracy in % from a compile report (``deployed`` or ``reference``)."""
    return lambda out: 100 * _report(out)["accuracy"][key]


def compared_acc(out: Path) -> float:
    return 100 * _report(out)["comparison"]["accuracy_deployed"]


def ratio(key: str) -> Callable[[Path], float]:
    """A ``--compare`` ratio (compared ÷ this) from a compile report."""
    return lambda out: _report(out)["comparison"]["ratios"][key]


def comparison(key: str, scale: float = 1.0) -> Callable[[Path], float]:
    """A field of a compile report's ``comparison`` (the ``--compare`` target, or ``this_*``)."""
    return lambda out: _report(out)["comparison"][key] * scale


def total(key: str, scale: float = 1.0) -> Callable[[Path], float]:
    return lambda out: _report(out)["totals"][key] * scale


def search(key: str, scale: float = 1.0) -> Callable[[Path], float]:
    """A field of the chosen configuration in ``search.json``."""
    return lambda out: json.loads((out / "search.json").read_text())["chosen"][key] * scale


def checkpoint_meta(*keys: str, scale: float = 100.0) -> Callable[[Path], float]:
    """A number in a written checkpoint's ``meta`` (``{out}`` is the checkpoint's folder)."""

    def read(out: Path) -> float:
        meta = torch.load(out / "model.pt", weights_only=True)["meta"]
        for k in keys:
            meta = meta[k]
        return float(meta) * scale

    return read


def results_json(name: str, key: str) -> Callable[[Path], float]:
    """A number in a JSON file an example script writes into ``{out}``."""
    return lambda out: float(json.loads((out / name).read_text())[key])


def byo(*keys: str, scale: float = 100.0) -> Callable[[Path], float]:
    """A number in a bring-your-own-model script's ``results.json``."""

    def read(out: Path) -> float:
        doc = json.loads((out / "results.json").read_text())
        for k in keys:
            doc = doc[k]
        return float(doc) * scale

    return read


# -- the README's numbers ------------------------------------------------------------------
RUNS = [
    Run("digits-digital", "deploy compile examples/models/digits_snn.pt --target digital --no-figures -o {out}"),
    Run("mlp-digital", "deploy compile examples/models/digits_mlp.pt --target digital --no-figures -o {out}"),
    Run("digits-loihi", "deploy compile examples/models/digits_snn.pt --target loihi --no-figures -o {out}"),
    Run("zero-loihi", "deploy compile examples/models/digits_snn_zero.pt --target loihi --no-figures -o {out}"),
    Run("digits-imc-naive", "deploy compile examples/models/digits_snn.pt --target imc --compare imc-adc "
                            "--no-figures -o {out}"),
    Run("demo", "deploy compile examples/models/digits_snn_imc.pt --target imc --compare imc-adc --data digits "
                "--no-figures -o {out}"),
    Run("dvsnet-imc", "deploy compile examples/models/dvsnet_imc.pt --target imc --compare imc-adc --data events "
                      "--no-figures -o {out}"),
    Run("bntt", "deploy compile examples/models/digits_bntt_snn.pt --target digital --no-figures -o {out}"),
    Run("resnet", "deploy compile examples/models/digits_resnet_snn.pt --target digital --no-figures -o {out}"),
    Run("one-step", "deploy compile examples/models/digits_one_step_snn.pt --target digital --no-figures -o {out}"),
    Run("quantize", "deploy quantize examples/models/digits_snn.pt --data digits --max-acc-drop 1 -o {out}",
        output="dir"),
    Run("quantize-compile", "deploy compile {out:quantize}/model.pt --target digital --no-figures -o {out}"),
    Run("quantize-loihi", "deploy quantize examples/models/digits_snn_zero.pt --data digits --target loihi "
                          "--scheme ptq --rounding nearest --objective edp --max-latency 3.4e-4 -o {out}",
        output="dir"),
    Run("quantize-loihi-compile", "deploy compile {out:quantize-loihi}/model.pt --target loihi --no-figures "
                                  "-o {out}"),
    Run("byo-snntorch", "python examples/bring_your_own/snntorch_class.py --quick --out {out}", quick=False,
        output="dir"),
    Run("byo-norse", "python examples/bring_your_own/norse_nir.py --targets digital,loihi --no-finetune --out {out}",
        quick=False, output="dir"),
    Run("cartpole", "python examples/sdqn_cartpole.py --returns-only --out {out}/returns.json", output="dir"),
    Run("finetune", "deploy finetune examples/models/digits_snn.pt --target imc --epochs 25 --lr 2e-3 "
                    "-o {out}/model.pt", quick=False, output="dir"),
]

CLAIMS = [
    Claim("digits-digital", "digits CNN, float accuracy (README: Models)", 98.06, acc("reference"), abs_tol=0.005),
    Claim("mlp-digital", "digits MLP, float accuracy (README: Models)", 97.78, acc("reference"), abs_tol=0.005),
    Claim("digits-loihi", "digits CNN on loihi, reset to zero (README: Loihi)", 95.83, acc(), abs_tol=0.005),
    Claim("zero-loihi", "zero-reset digits CNN, float (README: Loihi)", 96.67, acc("reference"), abs_tol=0.005),
    Claim("zero-loihi", "zero-reset digits CNN on loihi (README: Loihi)", 97.22, acc(), abs_tol=0.005),
    Claim("digits-imc-naive", "digits CNN mapped naively on imc (README: IMC)", 7.50, acc(), abs_tol=0.005),
    Claim("digits-imc-naive", "digits CNN on imc-adc without retraining (README: IMC)", 98.61, compared_acc,
          abs_tol=0.005),
    Claim("digits-imc-naive", "collapsed digits CNN: energy imc-adc / imc (README: IMC)", 4.93, ratio("energy"),
          unit="x", abs_tol=0.005),
    Claim("digits-imc-naive", "collapsed digits CNN: latency imc-adc / imc", 60.1, ratio("latency"), unit="x",
          abs_tol=0.05),
    Claim("demo", "live imc-retrained CNN: energy imc-adc / imc (README: IMC)", 4.87, ratio("energy"), unit="x",
          abs_tol=0.005),
    Claim("demo", "live imc-retrained CNN: latency imc-adc / imc", 60.1, ratio("latency"), unit="x", abs_tol=0.05),
    Claim("demo", "live imc-retrained CNN on imc-adc", 95.0, compared_acc, abs_tol=0.005),
    Claim("demo", "shipped imc-retrained CNN on imc (make demo)", 98.33, acc(), abs_tol=0.005),
    Claim("demo", "shipped imc-retrained CNN, float reference", 94.44, acc("reference"), abs_tol=0.005),
    Claim("dvsnet-imc", "DVSNet retrained for imc, on imc, 64 streams (README: IMC)", 98.4375, acc(),
          abs_tol=0.005),
    Claim("dvsnet-imc", "the same on imc-adc", 9.375, compared_acc, abs_tol=0.005),
    Claim("dvsnet-imc", "DVSNet spikes per inference on imc", 538.1, comparison("this_spikes", 1e-3), unit="k",
          abs_tol=0.05),
    Claim("dvsnet-imc", "DVSNet spikes per inference on imc-adc", 553.4, comparison("spikes", 1e-3), unit="k",
          abs_tol=0.05),
    Claim("dvsnet-imc", "live DVSNet: energy imc-adc / imc", 5.37, ratio("energy"), unit="x", abs_tol=0.005),
    Claim("dvsnet-imc", "live DVSNet: latency imc-adc / imc", 16.0, ratio("latency"), unit="x", abs_tol=0.05),
    Claim("cartpole", "PL-SDQN deployable graph: return over 100 episodes (README: spiking DQN)", 488.7,
          results_json("returns.json", "return_ir_float_100"), unit="", abs_tol=0.05),
    Claim("cartpole", "its spike-readout variant (Loihi): return over 100 episodes", 485.7,
          results_json("returns.json", "return_spike_readout_100"), unit="", abs_tol=0.05),
    Claim("cartpole", "the policy distilled for imc: return over 100 episodes on the imc simulator", 467.7,
          results_json("returns.json", "return_imc_100"), unit="", abs_tol=0.05),
    Claim("bntt", "BNTT family (README: Model families)", 98.06, acc("reference"), abs_tol=0.005),
    Claim("resnet", "residual family (README: Model families)", 97.78, acc("reference"), abs_tol=0.005),
    Claim("one-step", "one-timestep family (README: Model families)", 96.39, acc("reference"), abs_tol=0.005),
    Claim("quantize", "quantize digits CNN: chosen accuracy (README: Quantization)", 97.22, search("accuracy", 100),
          abs_tol=0.005),
    Claim("quantize", "quantize digits CNN: chosen memory, KB", 7.02, search("memory_bytes", 1 / 1024), unit="KB",
          abs_tol=0.005),
    Claim("quantize-compile", "compile of the chosen checkpoint on digital = the search's number", 97.22, acc(),
          abs_tol=0.005),
    Claim("quantize-loihi", "Loihi search: chosen accuracy (README: Quantization)", 96.94,
          search("accuracy", 100), abs_tol=0.005),
    Claim("quantize-loihi", "Loihi search: chosen energy per inference", 3.64, search("energy_j", 1e6), unit="uJ",
          abs_tol=0.005),
    Claim("quantize-loihi", "Loihi search: chosen latency per inference", 325.0, search("latency_s", 1e6),
          unit="us", abs_tol=0.5),
    Claim("quantize-loihi-compile", "compile of the Loihi search's checkpoint on loihi", 96.94, acc(),
          abs_tol=0.005),
    Claim("quantize-loihi-compile", "its energy per inference on loihi", 3.64, total("energy_j", 1e6), unit="uJ",
          abs_tol=0.005),
    Claim("byo-snntorch", "snnTorch class: snnTorch's own accuracy (README: Bring your own model)", 96.39,
          byo("source", "accuracy"), abs_tol=0.005),
    Claim("byo-snntorch", "snnTorch class: our float reference (equal to snnTorch's)", 96.39,
          byo("deploy", "digital", "reference"), abs_tol=0.005),
    Claim("byo-norse", "norse NIR: norse's own accuracy", 96.67, byo("source", "accuracy"), abs_tol=0.005),
    Claim("byo-norse", "norse NIR: our float reference (equal to norse's)", 96.67,
          byo("deploy", "digital", "reference"), abs_tol=0.005),
    Claim("byo-norse", "norse NIR on loihi", 96.11, byo("deploy", "loihi", "deployed"), abs_tol=0.005),
    Claim("finetune", "deploy finetune seed 0 on imc (README: IMC)", 98.33,
          checkpoint_meta("accuracy", "retrained"), abs_tol=0.005),
]


def run_all(runs: list[Run], claims: list[Claim], workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run every command, read its claims; returns the run records."""
    records = {}
    for run in runs:
        out = workdir / run.name
        if run.output == "dir":
            out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        log(f"[{run.name}] {shlex.join(run.command(out))}")
        proc = subprocess.run(run.command(out), cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        records[run.name] = {"command": run.argv, "exit_code": proc.returncode, "seconds": round(seconds, 1)}
        if proc.returncode != 0:
            log(f"  failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}")
            continue
        for claim in (c for c in claims if c.run == run.name):
            try:
                claim.measured = float(claim.read(out))
            except (KeyError, TypeError, FileNotFoundError, json.JSONDecodeError) as exc:
                log(f"  cannot read '{claim.what}': {type(exc).__name__}: {exc}")
        log(f"  done in {seconds:.0f} s")
    return records


def table(claims: list[Claim]) -> str:
    rows = [("claim", "claimed", "measured", "holds")]
    for c in claims:
        m = "n/a" if c.measured is None else f"{c.measured:.2f} {c.unit}"
        rows.append((c.what, f"{c.claimed:.2f} {c.unit}", m, "yes" if c.holds() else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the fast runs (under 10 minutes)")
    ap.add_argument("--only", nargs="+", metavar="RUN", help=f"runs to do: {', '.join(r.name for r in RUNS)}")
    ap.add_argument("-o", "--out", type=Path, help="write claimed vs measured as JSON here")
    args = ap.parse_args(argv)
    unknown = set(args.only or ()) - {r.name for r in RUNS}
    if unknown:
        ap.error(f"unknown run(s): {', '.join(sorted(unknown))}")
    runs = [r for r in RUNS if (not args.quick or r.quick) and (not args.only or r.name in args.only)]
    claims = [c for c in CLAIMS if c.run in {r.name for r in runs}]
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        records = run_all(runs, claims, Path(tmp), lambda s: print(s, file=sys.stderr, flush=True))
    print(table(claims))
    ok = all(c.holds() for c in claims)
    if args.out:
        doc = {"runs": records, "claims": [{"run": c.run, "what": c.what, "claimed": c.claimed, "unit": c.unit,
                                            "measured": c.measured, "holds": c.holds()} for c in claims]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))
    print(f"{sum(c.holds() for c in claims)} of {len(claims)} claims hold")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
