"""PrivateSNN (Kim, Venkatesha & Panda 2022): data-free conversion, then spike-based retraining.

1. *Class impressions*: images synthesized from the pre-trained ANN alone
   (:func:`deploy.training.data_free.synthetic_calibration_set`; the same synthesis calibrates
   ``deploy convert --data-free``).
2. *Data-free conversion*: the ANN is converted to an IF network (:func:`deploy.training.convert.convert`,
   threshold balancing) calibrated on the class impressions instead of training data.
3. *Weight encryption*: the converted SNN is retrained with temporal, spike-based learning
   (BPTT with surrogate gradients, :func:`deploy.training.snn.fit`) on the class impressions, so
   its weights no longer mirror the ANN's.

:func:`reconstruction_score` measures what an attacker recovers: class images synthesized
from a network's weights (no data, no BN statistics), scored against the real class means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.errors import ModelError
from deploy.core.net import SpikingNet
from deploy.training.convert import convert
from deploy.training.data_free import (
    PER_CLASS,
    STEPS,
    class_impressions,
    synthetic_calibration_set,
    total_variation,
)
from deploy.training.recipes.common import RecipeResult, accuracy, sample_shape, static_forward
from deploy.training.snn import evaluate, fit

TIMESTEPS = 16
EPOCHS = 5
__all__ = ["PER_CLASS", "STEPS", "class_impressions", "reconstruction_score", "snn_as_ann", "total_variation",
           "train"]


def reconstruction_score(model: Callable[[torch.Tensor], torch.Tensor], split: Split, per_class: int = 8,
                         steps: int = STEPS, seed: int = 0) -> float:
    """How much class images recovered from ``model``'s weights look like the real classes:
    mean Pearson correlation of each class's recovered mean image with the real mean image of
    the same class, minus its mean correlation with the other classes' real means (0: nothing
    class-specific recovered). Synthesis uses no data and no BatchNorm prior (an attacker's view)."""
    shape = sample_shape(split)
    classes = split.classes
    x, _ = class_impressions(_no_bn_prior(model), shape, classes, per_class=per_class, steps=steps,
                             bn_weight=0.0, seed=seed)
    rec = x.reshape(classes, per_class, -1).mean(1)
    real = torch.stack([split.x_train[split.y_train == c].reshape(-1, rec.shape[1]).mean(0) for c in range(classes)])
    corr = torch.corrcoef(torch.cat([rec, real]))[:classes, classes:]
    same = corr.diagonal().mean()
    other = (corr.sum() - corr.diagonal().sum()) / (classes * (classes - 1))
    return float(same - other)


def _no_bn_prior(model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return model if not isinstance(model, nn.Module) else (lambda x: model(x))


def snn_as_ann(net: SpikingNet) -> Callable[[torch.Tensor], torch.Tensor]:
    """The SNN's weights read as a ReLU network (what an attacker holding the SNN can invert)."""
    net.eval()
    return lambda x: static_forward(net, x)


def train(split: Split, *, seed: int = 0, epochs: int | None = None, timesteps: int | None = None,
          ann: nn.Module | None = None, progress: bool = False, per_class: int = PER_CLASS,
          lr: float = 5e-4, steps: int = STEPS) -> RecipeResult:
    """Class impressions from ``ann``, data-free conversion, spike-based retraining on the impressions."""
    if ann is None:
        raise ModelError("recipe 'private-snn' starts from a trained ANN")
    shape = sample_shape(split)
    ann_shape = tuple(getattr(ann, "input_shape", None) or shape)
    if int(torch.tensor(ann_shape).prod()) != int(torch.tensor(shape).prod()):
        raise ModelError(f"the ANN takes inputs of shape {ann_shape}, the data has {shape}")
    t_steps = timesteps or TIMESTEPS
    ann.eval()
    x_imp, y_imp = synthetic_calibration_set(ann, ann_shape, split.classes, per_class=per_class, steps=steps,
                                             seed=seed)
    with torch.no_grad():
        imp_acc = accuracy(ann(x_imp), y_imp)
    converted = convert(ann, timesteps=t_steps, data=x_imp, readout="if", input_shape=ann_shape,
                        name="private_snn", seed=seed, samples=None)
    net = SpikingNet(converted)
    x_test = fit_to_model(split.x_test, ann_shape)
    converted_acc = evaluate(net, x_test, split.y_test)
    impressions = Split("class-impressions", x_imp, y_imp, x_imp, y_imp)
    history = fit(net, impressions, epochs=epochs or EPOCHS, lr=lr, seed=seed, progress=progress)
    graph = net.to_graph()
    graph.meta = {k: v for k, v in graph.meta.items() if k != "scales"}
    with torch.no_grad():
        ann_acc = accuracy(ann(x_test), split.y_test)
    meta = {"recipe_timesteps": t_steps, "epochs": len(history), "class_impressions": len(y_imp),
            "impressions_ann_accuracy": imp_acc, "ann_test_accuracy": ann_acc,
            "converted_data_free_test_accuracy": converted_acc,
            "test_accuracy": evaluate(SpikingNet(graph), x_test, split.y_test)}
    return RecipeResult(graph, meta, extras={"impressions": (x_imp, y_imp), "converted": converted})
