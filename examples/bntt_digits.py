"""Train a spiking CNN with BatchNorm through time (BNTT) on digits and fold it for deployment.

    python examples/bntt_digits.py              # -> examples/models/digits_bntt_snn.pt

Each ``timescale`` node trains as a separate BatchNorm per timestep
(:class:`deploy.training.bntt.BNTT`, Kim & Panda 2021); ``net.to_graph()`` folds the statistics into
per-timestep, per-channel scale and shift. BNTT lets a short window (T=4) train well.
"""

from __future__ import annotations

import argparse

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.training import bntt
from deploy.training.snn import evaluate, fit


def spec(timesteps: int = 4, beta: float = 0.95) -> dict:
    t = timesteps
    return {"input_shape": [1, 8, 8], "timesteps": t, "encoding": "direct", "name": "digits_bntt_snn",
            "layers": [
                {"type": "conv2d", "name": "conv1", "out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False},
                bntt.spec_layer(16, t, "bntt1"), {"type": "lif", "name": "lif1", "beta": beta},
                {"type": "conv2d", "name": "conv2", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1,
                 "bias": False},
                bntt.spec_layer(32, t, "bntt2"), {"type": "lif", "name": "lif2", "beta": beta},
                {"type": "conv2d", "name": "conv3", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1,
                 "bias": False},
                bntt.spec_layer(32, t, "bntt3"), {"type": "lif", "name": "lif3", "beta": beta},
                {"type": "flatten", "name": "flatten"},
                {"type": "linear", "name": "fc", "out_features": 10},
                {"type": "lif", "name": "readout", "beta": beta}]}   # spike counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default="examples/models/digits_bntt_snn.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = data.load("digits")
    net = bntt.attach(build(spec(args.timesteps), seed=args.seed))
    fit(net, split, epochs=args.epochs, seed=args.seed)
    trained = evaluate(net, split.x_test, split.y_test)
    graph = net.to_graph()                       # BNTT statistics -> timescale nodes
    folded = evaluate(SpikingNet(graph), split.x_test, split.y_test)
    native.save(graph, args.out, meta={"dataset": "digits", "test_accuracy": folded, "epochs": args.epochs,
                                       "family": "bntt", "trained_with": "examples/bntt_digits.py"})
    print(f"test accuracy: BNTT modules {trained:.4f}, folded timescale graph {folded:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
