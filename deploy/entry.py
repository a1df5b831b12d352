"""The ``deploy`` console script: SIGINT and SIGTERM handlers first, then the CLI.

This module imports nothing heavy, so the handlers are in place before torch and
Typer load: a signal at any moment raises :class:`Interrupted`, ``finally`` blocks
and context managers (staged output folders, temporary files) clean up, and the
process prints one line and exits with 128 + the signal number (130, 143).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

#: the signals turned into :class:`Interrupted`
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: signals received so far (also those whose exception some library swallowed with a bare except)
_received: list[int] = []


class Interrupted(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives (not an ``Exception``, so
    ``except Exception`` does not swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def _unraisable(info: object) -> None:
    """``sys.unraisablehook``: an :class:`Interrupted` raised where Python ignores exceptions (a
    weakref callback such as the import system's module-lock cleanup, a ``__del__``) is not
    printed; the signal is sent again a moment later (from a timer thread: sent from here, it
    would land in this hook, which ignores exceptions too), so that it arrives in code that lets
    it propagate."""
    exc = getattr(info, "exc_value", None)
    if isinstance(exc, Interrupted):
        import threading

        threading.Timer(0.01, os.kill, (os.getpid(), exc.signum)).start()
        return
    sys.__unraisablehook__(info)


def _check_swallowed() -> None:
    """Raise :class:`Interrupted` for a signal whose exception did not propagate."""
    if _received:
        raise Interrupted(_received[-1])


def _quiet() -> None:
    """Once the run is over: ignore another Ctrl-C; another SIGTERM exits with 143 at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(128 + signum))


def install() -> None:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (main thread only)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    sys.unraisablehook = _unraisable


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Console-script target (``deploy = "deploy.entry:main"``): install the signal handlers, run
    the CLI and return its exit code; a signal ends the process with one line and 130 / 143.
    Meant for the process's own entry point: afterwards a further Ctrl-C is ignored and a
    further SIGTERM exits with 143 at once."""
    install()
    try:
        from deploy.cli import main as cli_main

        _check_swallowed()  # a library's bare ``except:`` may have eaten it while importing
        return cli_main(argv)
    except Interrupted as exc:
        # cleanup ran while the exception unwound; skip the interpreter's shutdown, which may run
        # exit hooks of a library the signal interrupted half-way through its import
        _quiet()
        _say("aborted" if exc.signum == signal.SIGINT else f"aborted ({signal.Signals(exc.signum).name})")
        os._exit(exc.exit_code)
    finally:
        _quiet()


if __name__ == "__main__":
    # run the importable module, so that its Interrupted class is the one raised and caught
    from deploy.entry import main as _main

    sys.exit(_main())
