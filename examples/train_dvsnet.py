"""Train the built-in DVSNet on the synthetic event set and save it as a native checkpoint.

The shipped ``examples/models/dvsnet.pt`` is two runs of this script (the second
continues the first; its meta records both commands, under ``init``)::

    python examples/train_dvsnet.py -o /tmp/dvsnet_stage1.pt            # 4 epochs, 256 samples, batch 16, lr 2e-3
    python examples/train_dvsnet.py --init /tmp/dvsnet_stage1.pt --epochs 5 --batch-size 8 --lr 1e-3 \
        -o examples/models/dvsnet.pt

The first run alone reaches 36 % (the cosine schedule ends before the deep
network has learned much); continuing at lr 2e-3 with batch 8 diverged (chance
after two epochs), at lr 1e-3 it learns.

The network is ``build(dvsnet(timesteps=5))`` (64x64x2 event frames, eleven 3x3
convolutions of 32 channels, max-pools after convolutions 3/5/7/9/11, 128 -> 11,
T = 5): the topology of the ADC-less IMC study, unchanged. Data:
``deploy.core.data.events(timesteps=5, size=64, classes=11, seed=0)``, i.e. training
samples ``synthetic_events(n, 5, 64, 11, seed=0)`` and test samples
``synthetic_events(128, 5, 64, 11, seed=1)``. ``deploy compile --data events``
(``deploy.pipeline.load_test_set``) draws ``synthetic_events(n, T, 64, 11, seed=1)``
with n = ``--samples`` (default 64); since ``synthetic_events`` gives the same
first samples for any n, those are the first n samples of this test split.

Before training, every LIF threshold is set (in layer order) so that the layer
fires at about ``--rate`` on a few training samples
(:func:`deploy.training.arch.dvsnet.balance_thresholds`): with the default initialisation
the third and later layers are silent and receive no useful gradient. Training is
the project's loop (:func:`deploy.training.snn.fit`: BPTT, arctan surrogate, Adam with
a cosine schedule, cross-entropy on output spike counts), one thread, seeded and
deterministic. The script prints the test accuracy and every LIF layer's spike
rate on the test split; the checkpoint's meta records them with the epochs, seed
and command.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.training.arch.dvsnet import balance_thresholds, dvsnet
from deploy.training.snn import evaluate, fit

#: what a continued run records of the checkpoint it started from
INIT_KEYS = ("command", "epochs", "train_samples", "batch_size", "lr", "seed", "initial_rate", "test_accuracy",
             "minutes", "init")


@torch.no_grad()
def spike_rates(net: SpikingNet, x: torch.Tensor, batch_size: int = 16) -> dict[str, float]:
    """Mean firing rate of every LIF layer (spikes per neuron and timestep) on event streams ``x``."""
    names = [n.name for n in net.graph.nodes if n.kind == "lif"]
    sums = dict.fromkeys(names, 0.0)
    for i in range(0, len(x), batch_size):
        _, values = net.run(x[i:i + batch_size], record=True)
        for name in names:
            sums[name] += float(values[name].mean()) * len(x[i:i + batch_size])
    return {name: s / len(x) for name, s in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-samples", type=int, default=256, help="training event streams (seed 0)")
    ap.add_argument("--test-samples", type=int, default=128, help="test event streams (seed 1)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rate", type=float, default=0.15, help="initial firing rate the thresholds are set to")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="continue training this native checkpoint (no threshold balancing)")
    ap.add_argument("-o", "--out", default="examples/models/dvsnet.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    split = data.events(timesteps=5, size=64, classes=11, n_train=args.train_samples,
                        n_test=args.test_samples, seed=0)
    init = None
    if args.init:
        graph = native.load(args.init)
        init = {"path": args.init, **{k: graph.meta[k] for k in INIT_KEYS if k in graph.meta}}
        net = SpikingNet(graph)
    else:
        net = build(dvsnet(timesteps=5), seed=args.seed)
        balance_thresholds(net, split.x_train[:8], rate=args.rate)
    history = fit(net, split, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                  progress=True)
    for rec in history:
        print(f"epoch {rec['epoch']}: loss {rec['loss']:.3f} train {rec['train_acc']:.3f} "
              f"test {rec['test_acc']:.3f}", flush=True)
    acc = evaluate(net, split.x_test, split.y_test, batch_size=16)
    rates = spike_rates(net, split.x_test)
    graph = net.to_graph()
    minutes = (time.perf_counter() - start) / 60
    command = "python examples/train_dvsnet.py " + " ".join(sys.argv[1:])
    native.save(graph, args.out, meta={
        "dataset": "events (synthetic, 50% activity; train seed 0, test seed 1)", "test_accuracy": acc,
        "test_samples": len(split.x_test), "train_samples": len(split.x_train), "epochs": args.epochs,
        "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "initial_rate": args.rate,
        "spike_rates": rates, "history": history, "minutes": round(minutes, 1),
        "trained_with": "examples/train_dvsnet.py", "command": command.strip(), "init": init})
    print("spike rate per LIF layer (test split): "
          + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    silent = [k for k, v in rates.items() if v == 0]
    if silent:
        print(f"WARNING: silent layers on the test split: {', '.join(silent)}")
    print(f"test accuracy {acc:.4f} on {len(split.x_test)} samples after {len(history)} epochs "
          f"({minutes:.1f} min) -> {args.out}")


if __name__ == "__main__":
    main()
