"""Bring your own Sinabs (Speck-style) CNN: train it with Sinabs, export NIR, compile the file.

    python examples/bring_your_own/sinabs_nir.py           # -> out/byo/sinabs (about 3 min of CPU)

A Speck-style CNN (no biases; conv 1->16, IAF, 2x2 sum pooling, conv 16->32, IAF, sum pooling,
flatten, linear 128->10, IAF; ``SingleSpike`` and ``MembraneReset``) is trained with Sinabs by
backpropagation through time (Sinabs' surrogate gradient) on the digits training split. The
inputs are what a Speck chip takes, spike frames: each pixel in [0, 1] is the probability of a
spike at each of T = 16 steps (fresh frames every batch; one seeded set for the test split).
The batch and time axes are flattened, as ``IAFSqueeze`` and Speck-style networks take them.
The script evaluates it with Sinabs' own forward (most output spikes), exports it with
``sinabs.to_nir`` (IAF -> NIR IF, reset to 0; ``graph.infer_types()`` before ``nir.write``),
stores the test frames as ``(N, T, 1, 8, 8)`` and runs

    deploy compile OUT/speck.nir --timesteps 16 --encoding events --data OUT/test.npz --target digital

and the same on imc and loihi, and ``deploy finetune --epochs 5`` for imc on ``OUT/train.npz``
(the training split as one seeded draw of spike frames, ``x_train`` / ``y_train``; 5 epochs
keep it to a few minutes). Sinabs' default
``MembraneSubtract`` would not survive the file: NIR's IF resets to ``v_reset`` (see
tests/test_nir_frameworks.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nir
import numpy as np
import sinabs
import sinabs.layers as sl
import torch
from sinabs.activation import MembraneReset, SingleSpike

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


def build() -> torch.nn.Sequential:
    def iaf():
        return sl.IAFSqueeze(num_timesteps=T, spike_fn=SingleSpike, reset_fn=MembraneReset())

    return torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                               torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(128, 10, bias=False), iaf())


def spike_frames(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 1, 8, 8) pixels -> (N, T, 1, 8, 8) Bernoulli spike frames."""
    p = x.unsqueeze(1).expand(len(x), T, *x.shape[1:])
    return (torch.rand(p.shape, generator=generator) < p).float()


def run(net: torch.nn.Sequential, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Sinabs' own forward on (N, T, ...) frames: output spikes (N, T, 10), all IAF spikes per sample."""
    for m in net:
        if isinstance(m, sl.StatefulLayer):
            m.reset_states()
    counts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: counts.append(float(out.detach().sum())))
             for m in net if isinstance(m, sl.IAFSqueeze)]
    n = len(frames)
    out = net(frames.reshape(n * T, *frames.shape[2:])).reshape(n, T, -1)
    for h in hooks:
        h.remove()
    return out, sum(counts) / n


def train(out: Path, epochs: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    split = digits()
    x_test = spike_frames(split.x_test, torch.Generator().manual_seed(seed + 1000))
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(epochs):
        perm = torch.randperm(len(split.x_train), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            spikes, _ = run(net, spike_frames(split.x_train[idx]))
            loss = torch.nn.functional.cross_entropy(spikes.sum(1), split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        spikes, per_inference = run(net, x_test)
        correct = int((spikes.sum(1).argmax(1) == split.y_test).sum())
        graph = sinabs.to_nir(net, x_test[:2].reshape(2 * T, 1, 8, 8))
    graph.infer_types()  # fills the conv input shapes nir.write needs
    nir.write(out / "speck.nir", graph)
    save_test(out / "test.npz", x_test, split.y_test)
    x_train = spike_frames(split.x_train, torch.Generator().manual_seed(seed + 2000))  # one draw, for finetune
    np.savez(out / "train.npz", x=x_test.numpy(), y=split.y_test.numpy(), x_train=x_train.numpy(),
             y_train=split.y_train.numpy())
    return {"framework": "sinabs", "samples": len(x_test), "correct": correct, "accuracy": correct / len(x_test),
            "spikes_per_inference": per_inference, "epochs": epochs}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/byo/sinabs"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--targets", default="digital,imc,loihi")
    p.add_argument("--no-finetune", action="store_true", help="skip deploy finetune for imc")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    own = train(args.out, args.epochs)
    print(f"Sinabs: {own['correct']}/{own['samples']} correct ({own['accuracy']:.2%}), "
          f"{own['spikes_per_inference']:.2f} spikes per inference")
    results = {"source": own, "deploy": {}}
    o, targets = args.out, args.targets.split(",")
    model = [f"{o}/speck.nir", "--timesteps", str(T), "--encoding", "events"]
    results["deploy"] = compile_on_targets(model, o, targets)
    if "digital" in results["deploy"]:
        print(agreement(own, results["deploy"]["digital"]))
    if "imc" in targets and not args.no_finetune:
        results["deploy"]["imc finetuned"] = retrain_for_imc(model, o, "speck_imc.pt", data=f"{o}/train.npz",
                                                             epochs=5)
    write_results(o / "results.json", results)
    return results


if __name__ == "__main__":
    main()
