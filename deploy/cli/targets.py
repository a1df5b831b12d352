"""``deploy targets``: the hardware targets, their spec files and descriptions.

The listing reads each target class's ``spec_name`` and ``description`` from its module's source
(without importing it), so it answers in a fraction of a second: importing a target loads torch,
and Loihi's loads Lava."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import typer

from deploy.cli.app import console

SPECS = Path(__file__).resolve().parents[2] / "hwmodels" / "specs"


def source(module: str) -> Path:
    """The source file of ``module``, found without importing it or its parent packages."""
    top, *rest = module.split(".")
    path = Path(importlib.util.find_spec(top).origin).parent.joinpath(*rest)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def class_attributes(module: str, cls: str) -> dict[str, str]:
    """The string class attributes of ``module.cls`` and of its bases defined in the same module."""
    tree = ast.parse(source(module).read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    out: dict[str, str] = {}
    node = classes.get(cls)
    while node is not None:
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and \
                    isinstance(stmt.value.value, str):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        out.setdefault(t.id, stmt.value.value)
        bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes]
        node = classes[bases[0]] if bases else None
    return out


def _resolve(module: str, cls: str) -> tuple[str, str]:
    """(module, class) where ``module.cls`` is defined: a package may re-export it from a submodule."""
    tree = ast.parse(source(module).read_text(encoding="utf-8"))
    for n in tree.body:
        if isinstance(n, ast.ClassDef) and n.name == cls:
            return module, cls
        if isinstance(n, ast.ImportFrom) and n.module and any(a.name == cls for a in n.names):
            return n.module, cls
    return module, cls


def targets_cmd() -> None:
    """List hardware targets and their spec files."""
    from rich.table import Table

    from hwmodels import TARGETS, available

    table = Table(title="targets")
    table.add_column("target", no_wrap=True)
    table.add_column("spec file", no_wrap=True)
    table.add_column("description")
    present = set(available())
    for name, ref in TARGETS.items():
        if name not in present:
            table.add_row(name, "-", "(not installed)")
            continue
        attrs = class_attributes(*_resolve(*ref.split(":")))
        spec = SPECS / f"{attrs.get('spec_name', name)}.yaml"
        shown = spec.relative_to(Path.cwd()) if spec.is_relative_to(Path.cwd()) else spec
        table.add_row(name, str(shown), attrs.get("description", ""))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``deploy targets`` to the CLI."""
    app.command("targets")(targets_cmd)
