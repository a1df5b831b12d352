"""Teacher-assistant ensemble: differential-evolution weights against uniform ones on a
constructed case, the weighted logits against a hand sum, and a tiny end-to-end run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from deploy.training.distill.ta_ensemble import (
    de_weights,
    distill_ensemble,
    ensemble_logits,
    hold_out,
)

STUDENT = {"input_shape": [1, 8, 8], "timesteps": 4, "encoding": "direct", "name": "tiny",
           "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 16}, {"type": "lif", "beta": 0.9},
                      {"type": "linear", "out_features": 10}, {"type": "lif", "beta": 0.9}]}


def test_ensemble_logits_is_normalised_weighted_sum():
    logits = torch.randn(3, 5, 4)
    w = np.array([2.0, 1.0, 1.0])
    ref = 0.5 * logits[0] + 0.25 * logits[1] + 0.25 * logits[2]
    assert torch.allclose(ensemble_logits(logits, w), ref, atol=1e-6)


def test_de_weights_beat_uniform_on_constructed_case():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (400,), generator=g)
    good = 4.0 * F.one_hot(y, 5).float() + 0.5 * torch.randn(400, 5, generator=g)
    noise = 4.0 * torch.randn(400, 5, generator=g)
    wrong = 4.0 * F.one_hot((y + 1) % 5, 5).float()        # confidently wrong
    logits = torch.stack([noise, good, wrong])
    w = de_weights(logits, y, seed=0)
    ce = lambda weights: float(F.cross_entropy(ensemble_logits(logits.double(), weights), y))  # noqa: E731
    assert ce(w) < ce(np.ones(3) / 3) - 0.5
    assert int(np.argmax(w)) == 1 and w[2] < 0.05
    assert np.isclose(w.sum(), 1.0)


def test_hold_out_keeps_validation_out_of_training(digits_split):
    train, (xv, yv) = hold_out(digits_split, 0.25)
    assert len(train.x_train) + len(xv) == len(digits_split.x_train)
    assert torch.equal(xv, digits_split.x_train[len(train.x_train):])


def test_tiny_ensemble_distillation(digits_split):
    from deploy.training import ann as annlib

    split = replace(digits_split, x_train=digits_split.x_train[:300], y_train=digits_split.y_train[:300],
                    x_test=digits_split.x_test[:100], y_test=digits_split.y_test[:100])
    ann = annlib.from_spec({"input_shape": [1, 8, 8], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
                                                          {"type": "relu"}, {"type": "linear", "out_features": 10}]})
    annlib.fit(ann, split, epochs=2, progress=False)
    res = distill_ensemble(ann, STUDENT, split, factors=(2.0, 1.5), epochs=1)
    assert len(res.assistants) == 2 and np.isclose(res.weights.sum(), 1.0)
    assert res.student.graph.name == "tiny"
