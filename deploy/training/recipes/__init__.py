"""Training recipes from the literature: ``deploy train --recipe NAME`` and :func:`train`.

Each recipe trains a spiking network the way one paper does and returns a graph that
compiles on every target (spike-count readout, IF/LIF layers). The registry maps a name to
a :class:`Recipe`; its ``train`` is a function or a ``"module:function"`` path imported on
first use, so listing the recipes imports no training code. Adding a recipe is one line::

    register(Recipe("pl-sdqn", "Author et al. YEAR, 'Title'", needs_ann=False,
                    train="deploy.training.recipes.pl_sdqn:train"))

The train function has the signature of :data:`TrainFn`: it takes the data split and the
keyword options ``seed``, ``epochs``, ``timesteps`` (``None``: the recipe's default),
``ann`` (an ``nn.Module`` for recipes that need one, else ``None``) and ``progress``, and
returns a :class:`deploy.training.recipes.common.RecipeResult` (graph + meta).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.core.errors import DeployError

if TYPE_CHECKING:
    from torch import nn

    from deploy.training.recipes.common import RecipeResult

#: train(split, *, seed, epochs, timesteps, ann, progress) -> RecipeResult
TrainFn = Callable[..., "RecipeResult"]


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: the paper it follows, whether it starts from a trained ANN,
    its train function (or the ``"module:function"`` path to it) and, for recipes defined at
    one number of timesteps, that number."""

    name: str
    paper: str
    needs_ann: bool
    train: TrainFn | str
    timesteps: int | None = None

    def train_fn(self) -> TrainFn:
        """The train function, imported on first use when given as a path."""
        if callable(self.train):
            return self.train
        module, attr = self.train.split(":")
        return getattr(importlib.import_module(module), attr)


RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to :data:`RECIPES` (a name may be registered once)."""
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe


register(Recipe("proxy", "Kheradpisheh, Mirsadeghi & Masquelier 2022, 'Spiking neural networks trained via proxy'",
                needs_ann=False, train="deploy.training.recipes.proxy:train"))
register(Recipe("desire", "Gerlinghoff, Luo, Goh & Wong 2023, 'Desire backpropagation: a lightweight training "
                "algorithm for multi-layer spiking neural networks based on spike-timing-dependent plasticity'",
                needs_ann=False, train="deploy.training.recipes.desire:train"))
register(Recipe("hoyer", "Datta, Liu & Beerel 2022, 'Hoyer regularizer is all you need for ultra low-latency "
                "spiking neural networks' (one time step)", needs_ann=False, train="deploy.training.recipes.hoyer:train",
                timesteps=1))
register(Recipe("noisy-single-step", "noise-augmented membrane-potential training: a single-step SNN with "
                "Gaussian membrane noise, converted to T steps", needs_ann=False,
                train="deploy.training.recipes.noisy_single_step:train"))
register(Recipe("private-snn", "Kim, Venkatesha & Panda 2022, 'PrivateSNN: privacy-preserving spiking neural "
                "networks' (data-free conversion, spike-based retraining)", needs_ann=True,
                train="deploy.training.recipes.private_snn:train"))
register(Recipe("pl-sdqn", "Sun, Zeng & Li 2022, 'Solving the spiking feature information vanishing problem in "
                "spiking deep Q network with potential based normalization' (CartPole-v1)", needs_ann=False,
                train="deploy.training.rl.recipe:train"))


def get(name: str) -> Recipe:
    """The recipe called ``name``; one-line DeployError naming the known ones otherwise."""
    if name not in RECIPES:
        raise DeployError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)}; see deploy train --list)")
    return RECIPES[name]


def train(recipe: str, data: str = "digits", out: str | Path | None = None, *, seed: int = 0,
          epochs: int | None = None, timesteps: int | None = None, ann: str | Path | nn.Module | None = None,
          split_seed: int = 0, progress: bool = False) -> RecipeResult:
    """Train a spiking network with ``recipe`` on ``data`` (digits | mnist) and, with ``out``,
    write it as a native checkpoint. ``ann``: a trained ReLU ANN (path to a neurodeploy-ann
    checkpoint or a module) for recipes that start from one. Options are checked before any work.
    """
    from deploy.core import data as datasets

    rec = get(recipe)
    if timesteps is not None and int(timesteps) < 1:
        raise DeployError(f"--timesteps must be >= 1, got {timesteps}")
    if rec.timesteps is not None and timesteps not in (None, rec.timesteps):
        raise DeployError(f"recipe {rec.name!r} trains {rec.timesteps}-timestep networks: --timesteps must be "
                          f"{rec.timesteps}, got {timesteps}")
    if epochs is not None and int(epochs) < 1:
        raise DeployError(f"--epochs must be >= 1, got {epochs}")
    if rec.needs_ann and ann is None:
        raise DeployError(f"recipe {rec.name!r} starts from a trained ANN: pass --ann model.pt "
                          "(a neurodeploy-ann checkpoint, e.g. from examples/convert_digits.py)")
    if not rec.needs_ann and ann is not None:
        raise DeployError(f"recipe {rec.name!r} trains from scratch and takes no --ann")
    if data not in ("digits", "mnist"):
        raise DeployError(f"--data must be digits or mnist, got {data!r}")
    net = _load_ann(ann) if ann is not None else None
    split = datasets.load(data, seed=split_seed)
    result = rec.train_fn()(split, seed=seed, epochs=epochs, timesteps=timesteps, ann=net, progress=progress)
    result.meta.update(recipe=rec.name, paper=rec.paper, dataset=data, seed=seed, split_seed=split_seed)
    if out is not None:
        from deploy.io import native

        native.save(result.graph, out, meta=result.meta)
    return result


def _load_ann(ann: Any) -> nn.Module:
    from torch import nn

    from deploy.training import ann as annlib

    if isinstance(ann, nn.Module):
        return ann.eval()
    return annlib.load(ann)


__all__ = ["RECIPES", "Recipe", "TrainFn", "get", "register", "train"]
