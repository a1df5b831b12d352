"""Training is deterministic for a given seed on CPU: two runs give bit-identical weights,
another seed does not, and the caller's torch settings come back afterwards."""

from __future__ import annotations

import torch

from deploy.core import data
from deploy.core.net import build
from deploy.core.repro import deterministic
from deploy.training.ann import ANN
from deploy.training.ann import fit as fit_ann
from deploy.training.finetune import finetune
from deploy.training.snn import fit
from hwmodels.imc import ImcTarget

MLP = {"input_shape": [64], "timesteps": 4, "encoding": "direct", "name": "mlp",
       "layers": [{"type": "linear", "out_features": 24}, {"type": "lif", "beta": 0.9},
                  {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}


def _small_split():
    split = data.load("digits")
    split.x_train, split.y_train = split.x_train[:256], split.y_train[:256]
    split.x_test, split.y_test = split.x_test[:64], split.y_test[:64]
    return split


def _snn_weights(seed: int) -> dict[str, torch.Tensor]:
    net = build(MLP, seed=0)
    fit(net, _small_split(), epochs=2, lr=5e-3, seed=seed, progress=False)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_snn_training_repeats_bit_for_bit():
    torch.manual_seed(123)  # the caller's global state must not matter
    first = _snn_weights(seed=3)
    torch.rand(10)
    assert _same(first, _snn_weights(seed=3))
    assert not _same(first, _snn_weights(seed=4))


def _ann() -> ANN:
    return ANN([torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)], (64,))


def test_ann_training_repeats_bit_for_bit():
    def run(seed: int):
        model = _ann()
        model.load_state_dict(init)
        fit_ann(model, _small_split(), epochs=2, seed=seed)
        return {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(0)
    init = _ann().state_dict()
    assert _same(run(1), run(1))
    assert not _same(run(1), run(2))


def test_imc_finetune_repeats_bit_for_bit():
    net = build(MLP, seed=0)
    split = _small_split()
    fit(net, split, epochs=2, lr=5e-3, progress=False)
    graph = net.to_graph()

    def tuned(seed: int):
        g, _ = finetune(graph, ImcTarget(), split, epochs=1, seed=seed, batch_size=64)
        return {n.name: torch.from_numpy(n.weight.copy()) for n in g.synapses()}

    assert _same(tuned(0), tuned(0))


def test_deterministic_restores_settings():
    threads = torch.get_num_threads()
    with deterministic(5, threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.rand(3)
    with deterministic(5):
        assert torch.equal(a, torch.rand(3))
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
