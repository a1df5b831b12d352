"""``deploy.cli.main``: run the command line in this process and turn every failure into one line.

Errors on bad input are one line on stderr and exit code 2 (``--debug``, before or after the
command, shows the traceback too); Python warnings show after a successful run only, so a failed
run prints exactly its ``error:`` line. The console script is :mod:`deploy.entry`, which handles
SIGINT / SIGTERM from the first line on.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import typer

from deploy.cli.app import app, register_commands
from deploy.cli.app import say as _say
from deploy.core.errors import DeployError

register_commands()

#: flags ``main`` accepts anywhere on the line: moved in front of the command for Typer
GLOBAL_FLAGS = ("--debug", "--version")


def hoist_globals(args: list[str]) -> list[str]:
    """``args`` with the global flags given after the command moved in front of it (arguments
    after ``--`` are left alone)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return flags + rest + args[end:]


def _option_name(param: object) -> str:
    """How a message names a parameter: its long option (``--samples``), else its short one,
    else the argument's name in capitals."""
    opts = list(getattr(param, "opts", None) or [])
    if getattr(param, "param_type_name", "") == "argument" or not opts:
        return str(getattr(param, "name", "") or "argument").upper()
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts)[0]


def _given(param: object, args: list[str]) -> str | None:
    """The text the user gave for an option (``--x v`` or ``--x=v``), if it can be found."""
    for opt in getattr(param, "opts", None) or []:
        for i, a in enumerate(args):
            if a == opt and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(opt + "="):
                return a[len(opt) + 1:]
    return None


def _command_path(exc: Exception, args: list[str]) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return ctx.command_path
    names = getattr(typer.main.get_command(app), "commands", {})
    cmd = next((a for a in args if a in names), None)
    return "deploy" + (f" {cmd}" if cmd else "")


def usage_line(exc: Exception, args: list[str]) -> str:
    """One line for a usage error (unknown or ill-typed option, missing argument, ...), naming
    the option and pointing at the command's help."""
    from typer._click import exceptions as cx

    where = _command_path(exc, args)
    if isinstance(exc, cx.NoSuchOption):
        text = f"{exc.option_name}: no such option"
        if exc.possibilities:
            text += f" (did you mean {' or '.join(exc.possibilities)}?)"
    elif isinstance(exc, cx.MissingParameter):
        kind = "argument" if getattr(exc.param, "param_type_name", "") == "argument" else "option"
        text = f"missing {kind} {_option_name(exc.param)}"
    elif isinstance(exc, cx.BadParameter):
        name = _option_name(exc.param) if exc.param is not None else str(exc.param_hint or "value")
        msg = exc.message.removeprefix("Value error, ")
        given = _given(exc.param, args)
        if "valid integer" in msg and given is not None:
            msg = f"{given!r} is not an integer"
        elif "valid number" in msg and given is not None:
            msg = f"{given!r} is not a number"
        text = f"{name} {msg}" if msg.startswith("must ") else f"{name}: {msg}"
    elif isinstance(exc, cx.BadOptionUsage):
        text = f"{exc.option_name}: {exc.message.rstrip('.')}"
    else:
        text = exc.format_message().rstrip(".")
    return f"{text} (see {where} --help)"


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            _say(f"warning: {msg}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI in this process and return its exit code: 0, 2 for bad input (one ``error:``
    line on stderr), 130 when interrupted, 1 for an internal error. Python warnings raised on the
    way are printed after a successful run and dropped on failure."""
    from typer._click import exceptions as cx

    args = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = command.main(args=args, prog_name="deploy", standalone_mode=False)
        code = code if isinstance(code, int) else 0
        if code == 130:  # Typer turns a KeyboardInterrupt inside a command into exit code 130
            _say("aborted")
            return code
        _show_warnings(caught)
        return code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except cx.NoArgsIsHelpError:
        return 2  # the help is already printed
    except cx.ClickException as exc:
        if debug:
            traceback.print_exc()
        _say(f"error: {usage_line(exc, args)}")
        return exc.exit_code if isinstance(exc, cx.UsageError) else 2
    except typer.Abort:
        _say("aborted")
        return 1
    except DeployError as exc:
        if debug:
            traceback.print_exc()
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("aborted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        else:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _say(f"error: internal error {type(exc).__name__}: {msg} (rerun with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
