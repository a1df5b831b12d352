"""Bring your own snnTorch class: train it with snnTorch, then compile the same file and weights.

    python examples/bring_your_own/snntorch_class.py                 # -> out/byo/snntorch (1 min of CPU)
    python examples/bring_your_own/snntorch_class.py --epochs 1 --quick

Trains ``snn_class.py`` (snnTorch tutorial 5 style: ``nn.Linear`` + ``snn.Leaky`` defaults, a
loop over time returning the stacked spikes and membranes) on the digits training split with
snnTorch's recipe (cross-entropy on the output membrane at every step, Adam), evaluates it with
its own forward (the class with the most output spikes), and writes what a snnTorch user has:
``OUT/snn_class.py`` (the model file with ``build()``), ``OUT/state.pt`` (``state_dict``) and
``OUT/test.npz`` (the flattened test images the network saw). Then runs

    deploy compile OUT/snn_class.py:build --weights OUT/state.pt --data OUT/test.npz -o OUT/report

(and with ``--target imc`` / ``loihi``, and ``deploy finetune`` for imc, unless ``--quick``) and prints snnTorch's accuracy and
spikes next to the float reference's, which must be equal to the sample.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from byo_common import (  # noqa: E402
    agreement,
    compile_on_targets,
    digits,
    retrain_for_imc,
    save_test,
    write_results,
)

HERE = Path(__file__).resolve().parent


def load_model_file(path: Path):
    """Import the model file the way the user's own training script does."""
    spec = importlib.util.spec_from_file_location("snn_class", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snntorch_eval(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """snnTorch's own evaluation: correct samples (most output spikes) and spikes per inference."""
    counts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counts.append(float(out[0].sum())))
             for m in (net.lif1, net.lif2)]
    with torch.no_grad():
        spk, _ = net(x)
    for h in hooks:
        h.remove()
    correct = int((spk.sum(0).argmax(1) == y).sum())
    return correct, sum(counts) / len(x)


def train(out: Path, epochs: int, seed: int = 0) -> dict:
    """Train the class with snnTorch, write OUT/snn_class.py, state.pt, test.npz; snnTorch's numbers."""
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "snn_class.py", out / "snn_class.py")
    net = load_model_file(out / "snn_class.py").build()
    split = digits()
    x_train = split.x_train.reshape(len(split.x_train), -1)  # the tutorial flattens the images
    x_test = split.x_test.reshape(len(split.x_test), -1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3, betas=(0.9, 0.999))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(x_train), 64):
            idx = perm[i:i + 64]
            _, mem_rec = net(x_train[idx])
            loss = sum(loss_fn(mem, split.y_train[idx]) for mem in mem_rec)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    torch.save(net.state_dict(), out / "state.pt")
    save_test(out / "test.npz", x_test, split.y_test)
    correct, spikes = snntorch_eval(net, x_test, split.y_test)
    return {"framework": "snntorch", "samples": len(x_test), "correct": correct,
            "accuracy": correct / len(x_test), "spikes_per_inference": spikes, "epochs": epochs}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/byo/snntorch"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="compile on digital only (no imc, loihi, finetune)")
    p.add_argument("--no-compile", action="store_true", help="train and write the files only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    own = train(args.out, args.epochs)
    print(f"snnTorch: {own['correct']}/{own['samples']} correct ({own['accuracy']:.2%}), "
          f"{own['spikes_per_inference']:.1f} spikes per inference")
    results = {"source": own, "deploy": {}}
    if not args.no_compile:
        o = args.out
        model = [f"{o}/snn_class.py:build", "--weights", f"{o}/state.pt"]
        results["deploy"] = compile_on_targets(model, o, ["digital"] if args.quick else ["digital", "imc", "loihi"])
        if not args.quick:
            results["deploy"]["imc finetuned"] = retrain_for_imc(model, o, "snn_imc.pt")
        print(agreement(own, results["deploy"]["digital"]))
    write_results(args.out / "results.json", results)
    return results


if __name__ == "__main__":
    main()
