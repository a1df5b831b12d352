"""Schema of a native checkpoint's ``arch`` and ``state_dict``, checked before a Graph is built.

pydantic models of every layer type say which fields exist and of what type
(integers stay integers: ``64.5`` or ``"eight"`` is refused, not truncated or
parsed). :func:`validate_document` raises one :class:`~deploy.core.errors.ModelError`
line naming the field, e.g. ``arch.layers[2] (conv2d2).stride: must be >= 1``.
Value ranges that depend on shapes (beta in [0, 1], matching tensor shapes) stay
with :meth:`deploy.core.ir.Graph.validate`, which runs next.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploy.core.errors import ModelError
from deploy.core.ir import ENCODINGS, RESETS

#: widest precision a stored quantity may declare (absent = float32)
MAX_BITS = 32
#: largest number of input dimensions (C, H, W)
MAX_INPUT_DIMS = 3

Pos = Annotated[int, Field(strict=True, ge=1)]
NonNeg = Annotated[int, Field(strict=True, ge=0)]
Bits = Annotated[int, Field(strict=True, ge=1, le=MAX_BITS)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PosPair = Pos | Annotated[list[Pos], Field(min_length=2, max_length=2)]
NonNegPair = NonNeg | Annotated[list[NonNeg], Field(min_length=2, max_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TensorRef(_Strict):
    """``{"tensor": "<state_dict key>"}``."""

    tensor: str


Param = Number | TensorRef


class Layer(_Strict):
    """Fields every layer has."""

    type: str
    name: str | None = None
    inputs: list[str] | None = None
    precision: dict[str, Bits] = {}
    recurrent: list[str] = []


class Linear(Layer):
    weight: TensorRef
    bias: TensorRef | None = None
    weight_scale: TensorRef | None = None


class Conv2d(Linear):
    stride: PosPair = 1
    padding: NonNegPair = 0
    dilation: PosPair = 1
    groups: Pos = 1


class Pool2d(Layer):
    mode: Literal["avg", "sum", "max"] = "avg"
    kernel_size: PosPair = 2
    stride: PosPair = 2
    padding: NonNegPair = 0


class Plain(Layer):
    """flatten, add."""


class LIF(Layer):
    beta: Param = 1.0
    threshold: Param = 1.0
    reset: Literal[RESETS] = "subtract"  # type: ignore[valid-type]
    alpha: Param = 0.0
    reset_delay: bool = False


class LI(Layer):
    beta: Param = 1.0


class TimeScale(Layer):
    scale: TensorRef
    shift: TensorRef | None = None


LAYERS: dict[str, type[Layer]] = {"linear": Linear, "conv2d": Conv2d, "pool2d": Pool2d, "flatten": Plain,
                                  "add": Plain, "lif": LIF, "li": LI, "timescale": TimeScale}


class Arch(_Strict):
    """The ``arch`` mapping (layers are checked one by one, by type)."""

    input_shape: Annotated[list[Pos], Field(min_length=1, max_length=MAX_INPUT_DIMS)]
    timesteps: Pos = 8
    encoding: Literal[ENCODINGS] = "direct"  # type: ignore[valid-type]
    name: str = "model"
    meta: dict[str, Any] = {}
    layers: Annotated[list[Any], Field(min_length=1)]


class Document(BaseModel):
    """The checkpoint's top level (format and version are checked before)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    format: str
    version: int
    arch: dict[str, Any]
    state_dict: dict[str, Any]
    meta: dict[str, Any] = {}


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "finite_number": "must be a finite number",
}


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"must be {'>=' if kind == 'greater_than_equal' else '<='} {ctx.get('ge', ctx.get('le'))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("too_short", "too_long"):
        return (f"must have {'at least' if kind == 'too_short' else 'at most'} "
                f"{ctx.get('min_length', ctx.get('max_length'))} entries")
    return _MESSAGES.get(kind, err["msg"].lower())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _raise(exc: ValidationError, prefix: str, origin: str) -> None:
    """One line for the first error, at the most specific location pydantic found."""
    errors = exc.errors(include_url=False)
    # a union reports one error per alternative; the deepest location is the most telling
    err = max(errors, key=lambda e: len([p for p in e["loc"] if not _is_union_tag(p)]))
    path = prefix
    for part in err["loc"]:
        if _is_union_tag(part):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    got = "" if err["type"] in ("missing", "extra_forbidden") else f", got {_show(err['input'])}"
    raise ModelError(f"{origin}: {path}: {_message(err)}{got}") from None


def _is_union_tag(part: Any) -> bool:
    """pydantic names union members in locations (``'list[...]'``, ``'TensorRef'``, ``'int'``)."""
    return isinstance(part, str) and (part in ("int", "float", "TensorRef", "constrained-int",
                                               "constrained-float") or "[" in part)


def validate_arch(arch: Any, origin: str = "model") -> None:
    """Check the types of ``arch`` and of each layer entry; raise one ModelError line."""
    if not isinstance(arch, dict):
        raise ModelError(f"{origin}: arch: must be a mapping, got {type(arch).__name__}")
    try:
        Arch.model_validate(arch)
    except ValidationError as exc:
        _raise(exc, "arch", origin)
    for i, entry in enumerate(arch["layers"]):
        where = f"arch.layers[{i}]"
        if not isinstance(entry, dict):
            raise ModelError(f"{origin}: {where}: must be a mapping, got {_show(entry)}")
        if not isinstance(entry.get("type"), str):
            raise ModelError(f"{origin}: {where}.type: must be a layer type name, got {_show(entry.get('type'))}")
        model = LAYERS.get(entry["type"])
        if model is None:
            continue              # unknown types: Graph.from_dict names the known ones
        if isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        try:
            model.model_validate(entry)
        except ValidationError as exc:
            _raise(exc, where, origin)


def validate_state_dict(state: Any, arch: dict[str, Any], origin: str = "model") -> None:
    """Every entry a real-valued tensor that some layer refers to."""
    if not isinstance(state, dict):
        raise ModelError(f"{origin}: state_dict: must be a mapping of names to tensors")
    for key, val in state.items():
        if not isinstance(key, str) or not isinstance(val, torch.Tensor):
            raise ModelError(f"{origin}: state_dict[{_show(key)}]: must be a tensor, got {type(val).__name__}")
        if val.is_complex() or not (val.is_floating_point() or val.dtype in _INT_TYPES):
            raise ModelError(f"{origin}: state_dict[{key!r}]: {str(val.dtype).removeprefix('torch.')} "
                             "values are not supported (real floating-point or integer tensors only)")
        if val.layout != torch.strided:
            raise ModelError(f"{origin}: state_dict[{key!r}]: sparse tensors are not supported")
    used = {v["tensor"] for entry in arch["layers"] for v in entry.values()
            if isinstance(v, dict) and isinstance(v.get("tensor"), str)}
    unused = sorted(set(state) - used)
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise ModelError(f"{origin}: state_dict[{unused[0]!r}]{more}: no layer uses this tensor")


_INT_TYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def validate_document(doc: dict[str, Any], origin: str = "model") -> None:
    """Types of a loaded checkpoint dict (after its format and version matched)."""
    try:
        Document.model_validate(doc)
    except ValidationError as exc:
        _raise(exc, "checkpoint", origin)
    validate_arch(doc["arch"], origin)
    validate_state_dict(doc["state_dict"], doc["arch"], origin)
