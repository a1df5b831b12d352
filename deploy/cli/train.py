"""``deploy train``: train a spiking network with a recipe from the literature (see :mod:`deploy.training.recipes`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from deploy.cli_options import count_option, int_option, out_option, seed_option
from deploy.core.errors import DeployError


def train_cmd(
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", metavar="NAME",
                                               help="recipe name (see --list)")] = None,
    data: Annotated[str, typer.Option(metavar="DATA", help="training and test data: digits | mnist")] = "digits",
    out: Annotated[Path | None, out_option("file", "native SNN checkpoint to write")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the recipes and the paper each follows")] = False,
    seed: Annotated[int, seed_option("--seed", help="training seed (initialisation, shuffling, noise)")] = 0,
    split_seed: Annotated[int, seed_option("--split-seed", help="seed of the train/test split")] = 0,
    epochs: Annotated[int | None, count_option("--epochs", help="training epochs (default: the recipe's)")] = None,
    timesteps: Annotated[int | None, int_option("--timesteps", "-T", min=1,
                                                help="timesteps of the SNN (default: the recipe's)")] = None,
    ann: Annotated[str | None, typer.Option("--ann", metavar="PATH",
                                            help="trained ReLU ANN (neurodeploy-ann .pt) for recipes that "
                                                 "start from one")] = None,
) -> None:
    """Train a spiking network with a published recipe and write a native checkpoint that
    compiles on every target."""
    from rich.console import Console
    from rich.markup import escape

    from deploy.training import recipes

    console = Console()
    if list_:
        for rec in recipes.RECIPES.values():
            extra = " (needs --ann)" if rec.needs_ann else ""
            typer.echo(f"{rec.name}{extra}: {rec.paper}")
        return
    if recipe is None:
        raise DeployError("--recipe is required (see deploy train --list)")
    if out is None:
        raise DeployError("-o/--out is required: the checkpoint to write")
    recipes.get(recipe)
    result = recipes.train(recipe, data, out, seed=seed, epochs=epochs, timesteps=timesteps, ann=ann,
                           split_seed=split_seed, progress=sys.stderr.isatty())
    acc = result.meta.get("test_accuracy")
    shown = f"test accuracy {acc:.4f}, " if isinstance(acc, float) else ""
    console.print(f"{recipe} on {data}: {shown}T={result.graph.timesteps} -> [bold]{escape(str(out))}[/bold]")


def register(app: typer.Typer) -> None:
    """Add ``deploy train`` to the CLI."""
    app.command("train")(train_cmd)
