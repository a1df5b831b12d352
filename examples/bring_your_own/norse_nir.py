"""Bring your own norse network: train it with norse, export NIR, compile the file.

    python examples/bring_your_own/norse_nir.py            # -> out/byo/norse (about 2 min of CPU)

A 64-128-10 network of ``LIFBoxCell`` layers (norse's leaky integrate-and-fire without a
synaptic current, dt = 1 ms, tau_mem = 10 ms) is trained with norse's SuperSpike surrogate
gradient on the digits training split (pixels as a constant input current for T = 16 steps,
cross-entropy on the output spike counts). The output layer is LIF, not norse's usual
``LIBoxCell`` readout, because Loihi runs no leaky integrator without spikes. The script
evaluates it with norse's own loop over time, exports it with ``norse.torch.to_nir``, writes
it with ``nir.write`` (norse's 0-d parameters stored as 1-element arrays, which nir 1.0.8
needs) and runs

    deploy compile OUT/norse.nir --dt 1e-6 --timesteps 16 --data OUT/test.npz --target digital

and the same on imc and loihi. norse writes tau already multiplied by its time scaling
factor 1e-3 (10 ms -> 1e-5), so ``--dt 1e-6`` reproduces norse's 1 ms step (decay 0.9).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nir
import norse.torch as norse
import torch

from deploy.io.nir_io import writable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from byo_common import (  # noqa: E402
    agreement,
    compile_on_targets,
    digits,
    retrain_for_imc,
    save_test,
    write_results,
)

T = 16


def build() -> norse.SequentialState:
    return norse.SequentialState(torch.nn.Linear(64, 128), norse.LIFBoxCell(),
                                 torch.nn.Linear(128, 10), norse.LIFBoxCell())


def run(net: norse.SequentialState, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """norse's own simulation: output spikes (T, B, 10) and all LIF spikes per sample."""
    spikes = []
    hooks = [net[i].register_forward_hook(lambda _m, _i, out: spikes.append(float(out[0].detach().sum()))) for i in (1, 3)]
    state, outs = None, []
    for _ in range(T):
        out, state = net(x, state)
        outs.append(out)
    for h in hooks:
        h.remove()
    return torch.stack(outs), sum(spikes) / len(x)



def train(out: Path, epochs: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    split = digits()
    x_train, x_test = split.x_train.reshape(-1, 64), split.x_test.reshape(-1, 64)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(epochs):
        perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(x_train), 32):
            idx = perm[i:i + 32]
            spikes, _ = run(net, x_train[idx])
            loss = torch.nn.functional.cross_entropy(spikes.sum(0), split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        spikes, per_inference = run(net, x_test)
    correct = int((spikes.sum(0).argmax(1) == split.y_test).sum())
    nir.write(out / "norse.nir", writable(norse.to_nir(net, torch.zeros(1, 64))))
    save_test(out / "test.npz", x_test, split.y_test)
    return {"framework": "norse", "samples": len(x_test), "correct": correct, "accuracy": correct / len(x_test),
            "spikes_per_inference": per_inference, "epochs": epochs}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/byo/norse"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--targets", default="digital,imc,loihi")
    p.add_argument("--no-finetune", action="store_true", help="skip deploy finetune for imc")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    own = train(args.out, args.epochs)
    print(f"norse: {own['correct']}/{own['samples']} correct ({own['accuracy']:.2%}), "
          f"{own['spikes_per_inference']:.2f} spikes per inference")
    results = {"source": own, "deploy": {}}
    o, targets = args.out, args.targets.split(",")
    model = [f"{o}/norse.nir", "--dt", "1e-6", "--timesteps", str(T)]
    results["deploy"] = compile_on_targets(model, o, targets)
    if "digital" in results["deploy"]:
        print(agreement(own, results["deploy"]["digital"]))
    if "imc" in targets and not args.no_finetune:
        results["deploy"]["imc finetuned"] = retrain_for_imc(model, o, "norse_imc.pt")
    write_results(o / "results.json", results)
    return results


if __name__ == "__main__":
    main()
