"""Data-free calibration: class-conditional images synthesized from a pre-trained ANN alone
(the *class impressions* of PrivateSNN, Kim, Venkatesha & Panda 2022).

Starting from uniform noise, a batch of images per class is optimised so that the ANN assigns
it that class (cross-entropy on the ANN's outputs), with the ANN's batch-norm statistics as a
prior where it has BatchNorm layers (the batch's per-channel mean and variance at each BN input
pulled towards the running ones) and a small total-variation prior; pixels stay in [0, 1].
:func:`synthetic_calibration_set` is what ``deploy convert --data-free`` and the
``private-snn`` recipe calibrate threshold balancing with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.errors import DeployError, ModelError
from deploy.core.progress import bar as progress_bar
from deploy.core.repro import deterministic

#: default images per class and optimisation steps
PER_CLASS = 32
STEPS = 300


def _bn_prior(model: nn.Module) -> tuple[list[torch.utils.hooks.RemovableHandle], list[torch.Tensor]]:
    """Hooks adding, per BatchNorm layer, the distance of the batch statistics of its input to
    its running statistics (DeepInversion-style prior)."""
    terms: list[torch.Tensor] = []

    def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        terms.append(torch.norm(x.mean(dims) - mod.running_mean, 2)
                     + torch.norm(x.var(dims, unbiased=False) - mod.running_var, 2))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_mean is not None]
    return handles, terms


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (images (B, C, H, W))."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def class_impressions(model: Callable[[torch.Tensor], torch.Tensor], input_shape: tuple[int, ...], classes: int,
                      per_class: int = PER_CLASS, steps: int = STEPS, lr: float = 0.05, bn_weight: float = 0.05,
                      tv_weight: float = 0.05, seed: int = 0,
                      progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (classes * per_class, *input_shape) in [0, 1] and their labels, synthesized from
    ``model`` alone (an ``nn.Module`` in eval mode; its BatchNorm statistics, if any, are the prior)."""
    if isinstance(model, nn.Module):
        model.eval()
    for p in getattr(model, "parameters", lambda: [])():
        p.requires_grad_(False)
    with deterministic(seed):
        y = torch.arange(classes).repeat_interleave(per_class)
        x = torch.rand(len(y), *input_shape).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        handles, terms = _bn_prior(model) if isinstance(model, nn.Module) else ([], [])
        try:
            for _ in progress_bar(range(steps), desc="class impressions", disable=not progress):
                terms.clear()
                loss = F.cross_entropy(model(x), y) + tv_weight * total_variation(x)
                if terms:
                    loss = loss + bn_weight * torch.stack(terms).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
        finally:
            for h in handles:
                h.remove()
            for p in getattr(model, "parameters", lambda: [])():
                p.requires_grad_(True)
    return x.detach(), y


def output_classes(ann: nn.Module, input_shape: tuple[int, ...]) -> int:
    """How many classes ``ann`` scores: the width of its output for one input of ``input_shape``."""
    ann.eval()
    try:
        with torch.no_grad():
            out = ann(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - any failure means the shape does not fit the ANN
        raise ModelError(f"the ANN fails on an input of shape {tuple(input_shape)}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from None
    if out.dim() != 2 or out.shape[1] < 2:
        raise ModelError(f"the ANN's output has shape {tuple(out.shape[1:])}; class impressions need "
                         "one score per class (2 or more)")
    return int(out.shape[1])


def synthetic_calibration_set(ann: nn.Module, input_shape: tuple[int, ...] | None = None,
                              classes: int | None = None, per_class: int = PER_CLASS, steps: int = STEPS,
                              seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Class impressions of ``ann`` to calibrate a conversion with, instead of training data:
    ``per_class`` images per class, each optimised for ``steps`` steps. ``input_shape`` defaults
    to ``ann.input_shape``; ``classes`` to the width of the ANN's output."""
    if per_class < 1:
        raise DeployError(f"per_class must be >= 1, got {per_class}")
    if steps < 1:
        raise DeployError(f"steps must be >= 1, got {steps}")
    shape = input_shape or getattr(ann, "input_shape", None)
    if not shape:
        raise ModelError("the ANN's input shape is unknown, so no images can be synthesized for it "
                         "(a neurodeploy-ann checkpoint records it)")
    shape = tuple(int(s) for s in shape)
    n_classes = classes if classes is not None else output_classes(ann, shape)
    return class_impressions(ann, shape, n_classes, per_class=per_class, steps=steps, seed=seed, progress=progress)
