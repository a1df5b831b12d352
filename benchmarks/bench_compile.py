"""End-to-end `deploy compile` time on the shipped model, and the share spent simulating.

Prints the wall time of compile() per target and, measured in the same run,
the ratio of the target's simulation to the plain float forward on the same batch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from deploy import pipeline
from deploy.core import data
from deploy.core.net import SpikingNet
from deploy.io import native
from hwmodels import available, get_target

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "digits_snn.pt"


def main() -> None:
    torch.set_num_threads(2)
    graph = native.load(MODEL)
    x = data.fit_to_model(data.digits().x_test, graph.input_shape)
    net = SpikingNet(graph).eval()
    targets = [t for t in ("digital", "imc", "loihi") if t in available()]
    for name in targets:
        t0 = time.perf_counter()
        rep = pipeline.compile(MODEL, target=name)
        t_compile = time.perf_counter() - t0
        tgt = get_target(name)
        mapping = tgt.map(graph)
        with torch.no_grad():
            t0 = time.perf_counter()
            net(x)
            t_float = time.perf_counter() - t0
            t0 = time.perf_counter()
            tgt.simulate(mapping, x, batch_size=len(x))
            t_sim = time.perf_counter() - t0
        print(f"{name:8s} compile {t_compile:6.2f} s (360 samples, accuracy {rep.accuracy.deployed:.3f}); "
              f"simulate / float forward = {t_sim / t_float:5.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
