"""Bring your own torch ANN: train a plain ReLU CNN with torch, convert it, compile the SNN.

    python examples/bring_your_own/torch_ann.py            # -> out/byo/ann (about 1 min of CPU)

A plain ``nn.Sequential`` (conv 1->16, ReLU, avg-pool, conv 16->32, ReLU, avg-pool, flatten,
linear 128->10) is trained with torch on the digits training split and saved the way many
torch users save a whole model, ``torch.save(model, "ann.pt")`` (a pickle: loading it runs
code, hence ``--trust-pickle``). Its own accuracy is measured with ``model(x).argmax(1)``.
Then the script runs

    deploy convert OUT/ann.pt --trust-pickle --data digits -T 16 --readout if -o OUT/snn.pt
    deploy compile OUT/snn.pt --data OUT/test.npz --target digital -o OUT/report_digital

(and on imc and loihi), and ``deploy finetune --epochs 5`` for imc. Thresholds come from the 99.9th percentile of the ReLU outputs on
training images; ``--readout if`` gives an IF output layer counted by spikes, which Loihi runs
(the default ``li`` mean-current readout it does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from byo_common import compile_on_targets, digits, retrain_for_imc, save_test, write_results  # noqa: E402

T = 16


def build() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(128, 10))


def train(out: Path, epochs: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    split = digits()
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(split.x_train), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            loss = nn.functional.cross_entropy(model(split.x_train[idx]), split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = int((model(split.x_test).argmax(1) == split.y_test).sum())
    torch.save(model, out / "ann.pt")
    save_test(out / "test.npz", split.x_test, split.y_test)
    return {"framework": "torch (ANN)", "samples": len(split.x_test), "correct": correct,
            "accuracy": correct / len(split.x_test), "epochs": epochs}


def main(argv: list[str] | None = None) -> dict:
    from deploy.cli import main as deploy_main

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/byo/ann"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--targets", default="digital,imc,loihi")
    p.add_argument("--no-finetune", action="store_true", help="skip deploy finetune for imc")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    own = train(args.out, args.epochs)
    print(f"torch ANN: {own['correct']}/{own['samples']} correct ({own['accuracy']:.2%})")
    o = args.out
    convert = ["convert", f"{o}/ann.pt", "--trust-pickle", "--data", "digits", "-T", str(T), "--readout", "if",
               "-o", f"{o}/snn.pt"]
    if deploy_main(convert) != 0:
        raise SystemExit("deploy " + " ".join(convert) + " failed")
    results = {"source": own, "convert": "deploy " + " ".join(convert), "deploy": {}}
    targets = args.targets.split(",")
    results["deploy"] = compile_on_targets([f"{o}/snn.pt"], o, targets)
    if "imc" in targets and not args.no_finetune:
        results["deploy"]["imc finetuned"] = retrain_for_imc([f"{o}/snn.pt"], o, "snn_imc.pt", epochs=5)
    write_results(o / "results.json", results)
    return results


if __name__ == "__main__":
    main()
