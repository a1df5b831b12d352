"""How compile time grows with the number of samples: the CIFAR-shaped spiking VGG compiled on
each target for several sample counts (default 100, 300, 1000), one fresh process per compile,
a straight line fitted per target, one JSON and one figure. The network is live on every target
timed (see :func:`build`). On Loihi each max pool runs as a relay population and the VGG needs
about 32,000 cores, 251 Loihi chips: it is compiled with ``chips`` = :data:`LOIHI_CHIPS`.

    .venv/bin/python benchmarks/bench_growth.py                       # digital, imc, loihi at 100/300/1000
    .venv/bin/python benchmarks/bench_growth.py --samples 10 30 --targets digital

Times are CPU seconds of one torch thread (the work done, whatever else shares the machine)
and wall seconds; the peak resident memory of each compile is kept too. The fit
``time = fixed + per_sample * samples`` says whether time grows linearly (``r2`` near 1,
``fixed`` small) and extrapolates the total for 1,000 samples on all targets.
Writes ``out/bench/growth.json`` and ``out/bench/growth.png`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: chips the VGG may use on the Loihi targets (it needs about 251; Pohoiki Springs has 768)
LOIHI_CHIPS = 256


def measure(path: str, target: str, samples: int) -> dict:
    """One default compile of the VGG checkpoint at ``path`` on ``samples`` synthetic images, in this process."""
    import resource
    import time

    import torch

    from deploy import pipeline
    from deploy.io import native
    from deploy.training.arch import vgg
    from hwmodels import target_class

    torch.set_num_threads(1)
    graph = native.load(path)
    x, y = vgg.synthetic_inputs(samples, seed=1)
    wall, cpu = time.perf_counter(), time.process_time()
    tgt = target_class(target)(options={"chips": LOIHI_CHIPS}) if target.startswith("loihi") else target
    rep = pipeline.compile(graph, target=tgt, data=(x, y))
    return {"target": target, "samples": samples, "cpu_s": time.process_time() - cpu,
            "wall_s": time.perf_counter() - wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "spikes_per_inference": rep.totals.spikes,
            "silent_lif_layers": [r.name for r in rep.layers if r.kind == "lif" and r.spike_rate == 0]}


def run(path: Path, target: str, samples: int) -> dict:
    """:func:`measure` in a fresh interpreter (its own peak RSS)."""
    code = f"import json, bench_growth as b; print(json.dumps(b.measure({str(path)!r}, {target!r}, {samples})))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True)
    if proc.returncode:
        return {"target": target, "samples": samples,
                "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_line(samples: list[int], seconds: list[float]) -> dict:
    """Least-squares ``seconds = fixed + per_sample * samples`` and its r²."""
    n, t = np.asarray(samples, float), np.asarray(seconds, float)
    per, fixed = np.polyfit(n, t, 1)
    resid = t - (fixed + per * n)
    r2 = 1.0 - float(resid @ resid) / max(float(((t - t.mean()) ** 2).sum()), 1e-12)
    return {"fixed_s": float(fixed), "per_sample_s": float(per), "r2": r2, "at_1000_s": float(fixed + 1000 * per)}


def plot(rows: list[dict], fits: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for target, fit in fits.items():
        pts = [(r["samples"], r["cpu_s"]) for r in rows if r["target"] == target and "error" not in r]
        n, t = zip(*pts, strict=True)
        line = ax.plot(n, np.asarray(t) / 60, "o", label=f"{target}: {fit['per_sample_s'] * 1e3:.0f} ms/sample")
        grid = np.linspace(0, max(n), 50)
        ax.plot(grid, (fit["fixed_s"] + fit["per_sample_s"] * grid) / 60, "-", color=line[0].get_color(), lw=1)
    ax.set_xlabel("samples")
    ax.set_ylabel("compile time (CPU minutes, one thread)")
    ax.set_title("VGG (CIFAR-10 shape, T = 8): compile time vs samples")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build(path: Path, target: str, pool: str = "max") -> Path:
    """The VGG workload for ``target`` saved at ``path``: seeded weights, thresholds balanced to
    fire at 10 % in float; for the IMC targets, whose 1-bit conversion silences that network from
    its third layer on, every threshold then set so that each layer fires at its float rate on the
    target itself (:func:`deploy.training.finetune.match_rates`): the network measured is live on
    the target it is timed on."""
    import torch

    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.training.arch import vgg
    from deploy.training.finetune import match_rates
    from hwmodels import get_target

    graph = vgg.model(seed=0, pool=pool).to_graph()
    if target.startswith("imc"):
        tgt = get_target(target)
        net = tgt.trainable(graph, noise=False, learn_steps=True, learn_scales=True)
        net.set_resolution(tgt.config.adc_bits)
        net.eval()
        x, _ = vgg.synthetic_inputs(4, seed=2)
        with torch.no_grad():
            net.calibrate(x)
            match_rates(net, SpikingNet(graph), x)
        graph = tgt.export_trained(net)
    native.save(graph, path)
    return path


def main() -> None:
    from bench_scale import output_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=["digital", "imc", "loihi"])
    ap.add_argument("--samples", nargs="+", type=int, default=[100, 300, 1000])
    ap.add_argument("--pool", choices=("avg", "max"), default="max",
                    help="VGG pooling (with avg, loihi refuses the VGG: its first linear layer then reads "
                         "16,384 neurons, four times a core's input axons)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    args = ap.parse_args()
    out = output_dir(args.out)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            path = build(Path(tmp) / f"vgg_cifar_{target}.pt", target, args.pool)
            for n in args.samples:
                rows.append(run(path, target, n))
                print(json.dumps(rows[-1]), flush=True)
    fits = {}
    for target in args.targets:
        ok = [r for r in rows if r["target"] == target and "error" not in r]
        if len(ok) >= 2:
            fits[target] = fit_line([r["samples"] for r in ok], [r["cpu_s"] for r in ok])
    total = sum(f["at_1000_s"] for f in fits.values())
    (out / "growth.json").write_text(json.dumps({"runs": rows, "fits": fits, "total_at_1000_s": total}, indent=2))
    if fits:
        plot(rows, fits, out / "growth.png")
    for target, f in fits.items():
        print(f"{target:8s} {f['per_sample_s'] * 1e3:8.1f} ms/sample + {f['fixed_s']:6.1f} s fixed "
              f"(r2 {f['r2']:.4f}); 1000 samples: {f['at_1000_s'] / 60:.1f} CPU min")
    print(f"all targets, 1000 samples: {total / 60:.1f} CPU min -> {out / 'growth.json'}, {out / 'growth.png'}")


if __name__ == "__main__":
    main()
