"""Options the commands share, defined once: typed option helpers that check a value while the
command line is parsed (before any work), the model options every command that loads a model
takes (``--dt``, ``--encoding``, ``--timesteps``), and :func:`load`, the one way those commands
turn a model argument into a Graph.

A bad value is a usage error: the CLI prints one line naming the option, e.g.
``error: --samples: 'abc' is not an integer (see deploy compile --help)`` and exits with 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from deploy.core import ir

#: seeds reach scikit-learn's splits and NumPy, which take 0 .. 2**32 - 1
SEED_MAX = 2 ** 32 - 1


def _bound_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, integer: bool) -> str:
    if lo is not None and hi is not None:
        if integer:
            return f"lie in {lo}..{hi}"
        return f"lie in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"be {'>' if lo_open else '>='} {lo:g}" if not integer else f"be >= {lo}"
    return f"be {'<' if hi_open else '<='} {hi:g}" if not integer else f"be <= {hi}"


def integer(lo: int | None = None, hi: int | None = None, rule: str | None = None) -> Callable[[Any], int | None]:
    """A parser for an integer option within ``lo..hi`` (either bound may be None); ``rule``
    words the bound in the message (default: "must be >= lo" and the like)."""

    def parse(value: Any) -> int | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            v = value
        else:
            text = str(value).strip()
            try:
                v = int(text, 10)
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not an integer") from None
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise typer.BadParameter(f"{rule or 'must ' + _bound_text(lo, hi, False, False, True)}, got {v}")
        return v

    return parse


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[Any], float | None]:
    """A parser for a finite number within ``lo..hi`` (bounds open or closed; None = unbounded)."""

    def parse(value: Any) -> float | None:
        if value is None:
            return None
        try:
            v = float(value if isinstance(value, (int, float)) else str(value).strip())
        except (ValueError, OverflowError):
            raise typer.BadParameter(f"{value!r} is not a number") from None
        if not math.isfinite(v):
            raise typer.BadParameter(f"must be a finite number, got {value}")
        low = lo is not None and (v <= lo if lo_open else v < lo)
        high = hi is not None and (v >= hi if hi_open else v > hi)
        if low or high:
            raise typer.BadParameter(f"must {_bound_text(lo, hi, lo_open, hi_open, False)}, got {v:g}")
        return v

    return parse


def output(kind: str) -> Callable[[Any], Path | None]:
    """A parser for an output location (``kind`` "folder" or "file") that must be writable:
    checked on the spot, so a command fails before loading or training anything."""

    def parse(value: Any) -> Path | None:
        from deploy.core.errors import DeployError
        from deploy.io.atomic import check_output

        if value is None:
            return None
        try:
            return check_output(value, kind)
        except DeployError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse


def int_option(*names: str, help: str, min: int | None = None, max: int | None = None, rule: str | None = None,
               **kw: Any) -> Any:
    """``typer.Option`` for an integer checked against ``min..max`` at parse time (``rule``: the
    bound in words for the message)."""
    return typer.Option(*names, help=help, parser=integer(min, max, rule), metavar="INTEGER", **kw)


def float_option(*names: str, help: str, min: float | None = None, max: float | None = None,
                 min_open: bool = False, max_open: bool = False, **kw: Any) -> Any:
    """``typer.Option`` for a finite number checked against ``min..max`` at parse time (NaN and
    infinities are refused)."""
    return typer.Option(*names, help=help, parser=number(min, max, lo_open=min_open, hi_open=max_open),
                        metavar="FLOAT", **kw)


def seed_option(*names: str, help: str = "random seed") -> Any:
    """``typer.Option`` for a seed in 0..2**32-1."""
    return int_option(*names, help=f"{help} (0..{SEED_MAX})", min=0, max=SEED_MAX)


def out_option(kind: str = "folder", help: str | None = None) -> Any:
    """``-o/--out``: an output ``kind`` ("folder" or "file") whose location is checked at parse time."""
    return typer.Option("-o", "--out", help=help or f"output {kind}", parser=output(kind), metavar="PATH",
                        show_default=True)


def count_option(*names: str, help: str) -> Any:
    """``typer.Option`` for a count >= 1 (samples, batch size, epochs, ...)."""
    return int_option(*names, help=help, min=1)


DtOpt = Annotated[float | None, float_option(
    "--dt", help="time step in seconds that discretizes a NIR model's time constants "
                 "(NIR stores none; snnTorch writes with 1e-4)", min=0, min_open=True)]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", metavar="ENCODING", help="input encoding: direct | rate | latency | events (default: the model's; "
                       "event frames on a direct model run as events)")]
TimestepsOpt = Annotated[int | None, int_option("--timesteps", help="override the model's timesteps", min=1)]
DataOpt = Annotated[str, typer.Option(
    "--data", metavar="DATA", help="digits | mnist | events | a data file (.npz/.pt/.h5 with x, y; see README)")]
SamplesOpt = Annotated[int | None, count_option("--samples", help="test samples to simulate (default: all)")]
SplitSeedOpt = Annotated[int, seed_option(
    "--split-seed", help="seed of the digits/MNIST train/test split and of the synthetic event streams "
                         "(--data events); README figures use 0")]


def load(model: str, trust_pickle: bool = False, weights: str | None = None, *, dt: float | None = None,
         encoding: str | None = None, timesteps: int | None = None) -> ir.Graph:
    """The Graph of ``model`` with the shared options applied (each checked first, one-line errors)."""
    from deploy.pipeline import resolve_model

    return resolve_model(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)


def check(dt: float | None = None, encoding: str | None = None, timesteps: int | None = None) -> None:
    """Validate the shared options before any work (see :func:`deploy.pipeline.check_model_options`)."""
    from deploy.pipeline import check_model_options

    check_model_options(dt, encoding, timesteps)


def existing_model(value: str) -> str:
    """A model argument whose file exists (``file.py`` of a ``file.py:factory`` spec), checked while
    parsing so a typo fails at once, before torch loads; the message is the loader's."""
    from deploy.core.errors import ModelError

    head, sep, tail = value.rpartition(":")
    path = Path(head if sep and head.endswith(".py") and tail.isidentifier() else value)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    return value


ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="model: native .pt, NIR .nir/.h5, or file.py:factory",
                                         show_default=False, callback=existing_model)]
TrustOpt = Annotated[bool, typer.Option("--trust-pickle", help="allow loading pickled modules (runs code)")]
WeightsOpt = Annotated[str | None, typer.Option(
    "--weights", metavar="PATH", help="state_dict (.pt) for a file.py:factory model")]
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", metavar="PATH", help="YAML with spec constants / target options (sections constants:, options:)")]
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--quiet", show_default=False,
    help="progress bars with ETA on stderr (default: when stderr is a terminal); --quiet: none")]
ThreadsOpt = Annotated[int | None, int_option(
    "--threads", min=1, help="torch CPU threads (default: torch's own; small SNNs run fastest on 1)")]


def target_option(help: str = "hardware target (see `deploy targets`)") -> Any:
    """``-t/--target``: the one spelling of a target option on every command."""
    return typer.Option("--target", "-t", help=help, metavar="TARGET")


def runtime(progress: bool | None = None, threads: int | None = None) -> None:
    """Apply the run options every heavy command takes: progress bars and torch CPU threads."""
    from deploy.core import progress as bars

    bars.configure(progress)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
