"""Train a one-timestep (T=1) spiking CNN on digits with Hoyer-extremum thresholds.

    python examples/one_step_digits.py          # -> examples/models/digits_one_step_snn.pt

Recipe of Datta et al. 2022 (Hoyer regularized training for one-time-step SNNs): each
spiking layer has a trainable scale ``v_th``; the membrane ``u`` is normalized and clipped,
``z = clip(u / v_th, 0, 1)``, and a neuron fires when ``z`` reaches the Hoyer extremum
``E(z) = ||z||_2^2 / ||z||_1`` of its layer. A Hoyer regularizer ``||z||_1^2 / ||z||_2^2``
(per element) pushes activations towards sparse, binary values. Gradients pass through
the clip (straight-through). For deployment the extremum is a running average taken
during training (as BatchNorm keeps its statistics), so each layer becomes a plain IF
neuron with the fixed threshold ``v_th * E``: with one timestep, ``v = u`` and the spike
is ``u > v_th * E`` exactly.
"""

from __future__ import annotations

import argparse

import torch

from deploy.core import data
from deploy.core.net import SpikingNet, build
from deploy.io import native
from deploy.training.recipes.hoyer import attach_hoyer, hoyer_loss
from deploy.training.snn import evaluate, fit


def spec() -> dict:
    return {"input_shape": [1, 8, 8], "timesteps": 1, "encoding": "direct", "name": "digits_one_step_snn",
            "layers": [
                {"type": "conv2d", "name": "conv1", "out_channels": 16, "kernel_size": 3, "padding": 1},
                {"type": "if", "name": "if1"},
                {"type": "conv2d", "name": "conv2", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
                {"type": "if", "name": "if2"},
                {"type": "conv2d", "name": "conv3", "out_channels": 32, "kernel_size": 3, "stride": 2, "padding": 1},
                {"type": "if", "name": "if3"},
                {"type": "flatten", "name": "flatten"},
                {"type": "linear", "name": "fc", "out_features": 10},
                {"type": "li", "name": "readout", "beta": 1.0}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hoyer", type=float, default=0.1, help="weight of the Hoyer regularizer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default="examples/models/digits_one_step_snn.pt")
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = data.load("digits")
    net = attach_hoyer(build(spec(), seed=args.seed))
    fit(net, split, epochs=args.epochs, seed=args.seed, loss_fn=hoyer_loss(args.hoyer))
    trained = evaluate(net, split.x_test, split.y_test)
    graph = net.to_graph()                        # HoyerSpike -> IF with threshold v_th * E
    deployed = evaluate(SpikingNet(graph), split.x_test, split.y_test)
    native.save(graph, args.out, meta={"dataset": "digits", "test_accuracy": deployed, "epochs": args.epochs,
                                       "family": "one-timestep (Hoyer thresholds)",
                                       "trained_with": "examples/one_step_digits.py"})
    print(f"test accuracy: training modules {trained:.4f}, deployed IF graph (T=1) {deployed:.4f} -> {args.out}")


if __name__ == "__main__":
    main()
