"""Typed target options: one frozen pydantic schema per target, checked once at construction.

A target declares ``options_schema`` (a subclass of :class:`Options`); ``Target.__init__``
validates the user's ``options`` against it and keeps the result as ``target.config``,
immutable (a changed option is a new target: :meth:`hwmodels.base.Target.with_options`).
Values are checked strictly: ``chips: true`` is not one chip, ``saturate: "no"`` is not
true, and every rejection names the option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from deploy.core.errors import TargetError


class Options(BaseModel):
    """Base of the target option schemas: frozen, strict, unknown keys refused."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class NoOptions(Options):
    """The schema of a target that takes no options."""


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as ``option 'name' must be ..., got value``."""
    name = err["loc"][0] if err["loc"] else "?"
    msg = err["msg"]
    for prefix in ("Input should be ", "Value error, "):
        msg = msg.removeprefix(prefix)
    return f"option '{name}' must be {msg}, got {err['input']!r}"


def validate_options(schema: type[Options], options: Mapping[str, Any], target: str) -> Options:
    """``options`` checked against ``schema``; a :class:`TargetError` naming the first bad option."""
    known = sorted(schema.model_fields)
    unknown = sorted(set(options) - set(known))
    if unknown:
        hint = f"known: {', '.join(known)}" if known else "it takes no options; its constants go under 'constants:'"
        raise TargetError(f"unknown option '{unknown[0]}' for target '{target}' ({hint})")
    try:
        return schema.model_validate(dict(options))
    except ValidationError as exc:
        raise TargetError(_describe(exc.errors()[0])) from None
