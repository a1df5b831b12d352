"""Train a small spiking network on scikit-learn digits and save it as a native checkpoint.

    python examples/train_digits.py                  # spiking CNN -> examples/models/digits_snn.pt
    python examples/train_digits.py --arch mlp -o examples/models/digits_mlp.pt
    python examples/train_digits.py --reset zero -o examples/models/digits_snn_zero.pt   # for Loihi
    python examples/train_digits.py --data mnist --arch mnist-mlp --reset zero --epochs 8 \
        -o examples/models/mnist_snn.pt                                                  # MNIST, for Loihi
"""

from __future__ import annotations

import argparse
import json

import torch

from deploy.core import data
from deploy.core.net import build
from deploy.io import native
from deploy.training.snn import evaluate, fit

ARCHS = {
    "cnn": {"input_shape": [1, 8, 8], "timesteps": 8, "encoding": "direct", "name": "digits_snn",
            "layers": [
                {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
                {"type": "lif", "beta": 0.9},
                {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
                {"type": "lif", "beta": 0.9},
                {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
                {"type": "lif", "beta": 0.9},
                {"type": "flatten"},
                {"type": "linear", "out_features": 10},
                {"type": "lif", "beta": 0.9}]},
    "mlp": {"input_shape": [64], "timesteps": 8, "encoding": "direct", "name": "digits_mlp",
            "layers": [
                {"type": "linear", "out_features": 128}, {"type": "lif", "beta": 0.9},
                {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]},
    "mnist-mlp": {"input_shape": [1, 28, 28], "timesteps": 8, "encoding": "direct", "name": "mnist_snn",
                  "layers": [
                      {"type": "flatten"},
                      {"type": "linear", "out_features": 128}, {"type": "lif", "beta": 0.9},
                      {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cnn")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=("digits", "mnist"), default="digits",
                    help="training data (mnist: the official test set split 80/20 with split seed 0)")
    ap.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                    help="neuron reset; 'zero' is what Loihi's LIF does")
    ap.add_argument("-o", "--out", default="examples/models/digits_snn.pt")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    split = data.load(args.data)
    spec = json.loads(json.dumps(ARCHS[args.arch]))
    for layer in spec["layers"]:
        if layer["type"] == "lif":
            layer["reset"] = args.reset
    net = build(spec, seed=args.seed)
    history = fit(net, split, epochs=args.epochs, seed=args.seed)
    acc = evaluate(net, split.x_test, split.y_test)
    graph = net.to_graph()
    native.save(graph, args.out, meta={"dataset": args.data, "test_accuracy": acc, "epochs": args.epochs,
                                       "trained_with": "examples/train_digits.py", "seed": args.seed})
    print(f"test accuracy {acc:.4f} after {len(history)} epochs -> {args.out}")


if __name__ == "__main__":
    main()
