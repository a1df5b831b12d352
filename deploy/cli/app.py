"""The ``deploy`` Typer application: global options, shared console helpers and the command
registry. Command modules add themselves with ``register(app)``; this module imports only Typer
and Rich, so ``deploy --help``, ``deploy targets`` and usage errors start without torch."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperOption

from deploy import __version__

#: shown under every command's help: the options ``deploy.cli.main`` accepts anywhere on the line
EPILOG = "Global options, accepted before or after the command: --debug (tracebacks), --version."

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, epilog=EPILOG,
                  help="Deploy spiking networks on simulated neuromorphic hardware and report their costs.")
# help lists an argument as its metavar and help text, and an option's value as a plain word:
# Typer would show Python types ("MODEL <str>", "--address <str>")
_typer_option_type = TyperOption.display_type_rich


def _option_type(self: TyperOption, ctx: typer.Context) -> str | None:
    label = _typer_option_type(self, ctx)
    if not label or not label.startswith("<"):
        return label
    word = label.strip("<>").removesuffix("...")
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "", "path": "PATH"}.get(word, word.upper())


TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
console = Console()
err_console = Console(stderr=True)
state = {"debug": False}

#: command modules, in the order ``deploy --help`` lists them; a missing optional one is skipped
COMMANDS = ("deploy.cli.compile", "deploy.cli.check", "deploy.cli.inspect", "deploy.cli.targets",
            "deploy.cli.report", "deploy.cli.quantize", "deploy.cli.convert", "deploy.cli.distill",
            "deploy.cli.finetune", "deploy.cli.netx", "deploy.cli.export", "deploy.explore.command",
            "deploy.cli.train")


def _version(value: bool) -> None:
    if value:
        console.print(f"neurodeploy {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit", callback=_version,
                                         is_eager=True)] = False,
) -> None:
    state["debug"] = debug


def register_commands() -> None:
    """Add every command module present in this installation to :data:`app`."""
    for name in COMMANDS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name).register(app)


def markup(value: object) -> str:
    """``value`` for a Rich markup string: control characters escaped, brackets not read as markup."""
    from rich.markup import escape

    return escape(one_line(str(value)))


def one_line(text: str) -> str:
    """``text`` with every control character escaped the way ``repr`` does (a newline becomes
    ``\\n``, ESC ``\\x1b``): one line, and no escape sequence reaches the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def say(line: str) -> None:
    """One line on stderr (control characters escaped), after anything pending on stdout."""
    sys.stdout.flush()
    sys.stderr.write(one_line(line) + "\n")
    sys.stderr.flush()


def written(what: str, path: object) -> None:
    """The closing line of a command that wrote ``path``."""
    console.print(f"{what} written to [bold]{markup(path)}[/bold]")
