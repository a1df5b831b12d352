"""Options every command that loads a model shares (``--dt``, ``--encoding``, ``--timesteps``),
defined once, and :func:`load`, the one way those commands turn a model argument into a Graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from deploy import ir

DtOpt = Annotated[float | None, typer.Option(
    "--dt", help="time step in seconds that discretizes a NIR model's time constants "
                 "(NIR stores none; snnTorch writes with 1e-4)")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="input encoding: direct | rate | latency | events (default: the model's; "
                       "event frames on a direct model run as events)")]
TimestepsOpt = Annotated[int | None, typer.Option("--timesteps", help="override the model's timesteps")]
DataOpt = Annotated[str, typer.Option(
    "--data", help="digits | mnist | events | a data file (.npz/.pt/.h5 with x, y; see README)")]


def load(model: str, trust_pickle: bool = False, weights: str | None = None, *, dt: float | None = None,
         encoding: str | None = None, timesteps: int | None = None) -> ir.Graph:
    """The Graph of ``model`` with the shared options applied (each checked first, one-line errors)."""
    from deploy.pipeline import resolve_model

    return resolve_model(model, trust_pickle, weights, dt=dt, encoding=encoding, timesteps=timesteps)


def check(dt: float | None = None, encoding: str | None = None, timesteps: int | None = None) -> None:
    """Validate the shared options before any work (see :func:`deploy.pipeline.check_model_options`)."""
    from deploy.pipeline import check_model_options

    check_model_options(dt, encoding, timesteps)
