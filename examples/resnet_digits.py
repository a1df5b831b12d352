"""Train a small spiking ResNet on digits: conv -> lif -> conv -> add(shortcut) -> lif blocks.

    python examples/resnet_digits.py            # -> examples/models/digits_resnet_snn.pt

Residual connections are ``add`` nodes whose ``inputs`` name the block's last conv and the
block input (an identity shortcut carrying spikes); :func:`deploy.core.net.build` takes
``"inputs": [...]`` per layer. Trained with BPTT and surrogate gradients.
"""

from __future__ import annotations

import argparse

import torch

from deploy.core import data
from deploy.core.net import build
from deploy.io import native
from deploy.training.snn import evaluate, fit


def block(prefix: str, channels: int, src: str, beta: float) -> list[dict]:
    """conv -> lif -> conv -> add(src) -> lif, with an identity shortcut from ``src``."""
    return [{"type": "conv2d", "name": f"{prefix}_conv1", "inputs": [src], "out_channels": channels,
             "kernel_size": 3, "padding": 1},
            {"type": "lif", "name": f"{prefix}_lif1", "beta": beta},
            {"type": "conv2d", "name": f"{prefix}_conv2", "out_channels": channels, "kernel_size": 3, "padding": 1},
            {"type": "add", "name": f"{prefix}_add", "inputs": [f"{prefix}_conv2", src]},
            {"type": "lif", "name": f"{prefix}_out", "beta": beta}]


def spec(timesteps: int = 6, beta: float = 0.9) -> dict:
    return {"input_shape": [1, 8, 8], "timesteps": timesteps, "encoding": "direct", "name": "digits_resnet_snn",
            "layers": [
                {"type": "conv2d", "name": "stem", "out_channels": 16, "kernel_size": 3, "padding": 1},
                {"type": "lif", "name": "stem_lif", "beta": beta},
                *block("res1", 16, "stem_lif", beta),
                {"type": "conv2d", "name": "down", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
                {"type": "lif", "name": "down_lif", "beta": beta},
                *block("res2", 32, "down_lif", beta),
                {"type": "flatten", "name": "flatten"},
                {"type": "linear", "name": "fc", "out_features": 10},
                {"type": "lif", "name": "readout", "beta": beta}]}   # spike counts: runs on every target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--timesteps", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default="examples/models/digits_resnet_snn.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = data.load("digits")
    net = build(spec(args.timesteps), seed=args.seed)
    fit(net, split, epochs=args.epochs, seed=args.seed)
    acc = evaluate(net, split.x_test, split.y_test)
    native.save(net.to_graph(), args.out, meta={"dataset": "digits", "test_accuracy": acc, "epochs": args.epochs,
                                                "family": "residual", "trained_with": "examples/resnet_digits.py"})
    print(f"test accuracy {acc:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
