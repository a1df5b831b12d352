"""Progress bars for long work: simulation batches, search candidates, training epochs.

:func:`bar` takes tqdm's keywords (``desc``, ``total``, ``disable``, ``leave``, ``unit``) and
returns an iterable with ``update``, ``set_postfix``, ``set_postfix_str`` and ``close``, drawn
with Rich (description, bar, done/total, elapsed, ETA, the postfix). Bars opened while another
is running (a simulation inside a search) share one live display on stderr, so they nest.

Whether bars show: the caller's ``disable`` flag, then the process-wide mode set by the CLI's
``--progress/--quiet`` (:func:`configure`); by default only when stderr is a terminal, so logs,
pipes and CI output never hold bar redraws.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

#: ``None``: bars when stderr is a terminal; ``True``: always (``--progress``); ``False``: never (``--quiet``)
_mode: dict[str, bool | None] = {"enabled": None}
#: the live display shared by nested bars, and how many bars use it
_live: dict[str, Any] = {"progress": None, "users": 0}


def configure(enabled: bool | None) -> None:
    """Set the process-wide mode: ``True`` (``--progress``), ``False`` (``--quiet``), ``None`` (auto)."""
    _mode["enabled"] = enabled


def enabled() -> bool:
    """Whether bars show in this process (the mode of :func:`configure`, else: stderr is a terminal)."""
    mode = _mode["enabled"]
    return sys.stderr.isatty() if mode is None else mode


def _display():
    """The shared Rich progress display, started on first use."""
    if _live["progress"] is None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True, force_terminal=True if _mode["enabled"] else None)
        _live["progress"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[postfix]}"), console=console)
        _live["progress"].start()
    _live["users"] += 1
    return _live["progress"]


def _release() -> None:
    _live["users"] -= 1
    if _live["users"] <= 0 and _live["progress"] is not None:
        _live["progress"].stop()
        _live["progress"], _live["users"] = None, 0


class Bar:
    """One progress bar (a no-op when disabled); iterate it to advance it per item."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None,
                 disable: bool = False, leave: bool = True, unit: str = "") -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.leave = leave
        self._progress = None if disable or not enabled() else _display()
        self._task = None
        if self._progress is not None:
            label = f"{desc} ({unit})" if unit else desc
            self._task = self._progress.add_task(label, total=total, postfix="")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` items."""
        if self._task is not None:
            self._progress.advance(self._task, n)

    def set_postfix_str(self, text: str) -> None:
        """Show ``text`` after the bar (e.g. the current candidate)."""
        if self._task is not None:
            self._progress.update(self._task, postfix=text)

    def set_postfix(self, **values: Any) -> None:
        """Show ``key=value`` pairs after the bar (e.g. loss and accuracy of the last epoch)."""
        self.set_postfix_str(" ".join(f"{k}={v}" for k, v in values.items()))

    def close(self) -> None:
        """End the bar: a nested one (``leave=False``) disappears, the display stops with the last bar."""
        if self._task is None:
            return
        if not self.leave:
            self._progress.remove_task(self._task)
        self._task = None
        _release()


def bar(iterable: Iterable | None = None, desc: str = "", total: int | None = None, disable: bool = False,
        leave: bool = True, unit: str = "") -> Bar:
    """A progress bar over ``iterable`` (or advanced by ``update``) with tqdm's keywords."""
    return Bar(iterable, desc=desc, total=total, disable=disable, leave=leave, unit=unit)
