"""The native checkpoint: ``{"format", "version", "arch", "state_dict", "meta"}``.

``arch`` is the JSON structure of :meth:`deploy.core.ir.Graph.to_dict`, ``state_dict``
its tensors. Loaded with ``torch.load(weights_only=True)``: no code runs.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.core.errors import ModelError
from deploy.core.ir import Graph
from deploy.io.atomic import atomic_write
from deploy.io.schema import validate_document

FORMAT = "neurodeploy-snn"
#: the frame-based ANN checkpoint (read and written by :mod:`deploy.training.ann`)
ANN_FORMAT = "neurodeploy-ann"
#: torch's weights-only unpickler names a global from a module on its block list (os, posix, ...)
_BLOCKED = re.compile(r"unsupported GLOBAL (?P<name>[\w.]+) whose module (?P<module>[\w.]+) is blocked")
VERSION = 1


def save(graph: Graph, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``graph`` as a native checkpoint (atomically)."""
    arch, tensors = graph.validate().to_dict()
    doc = {"format": FORMAT, "version": VERSION, "arch": arch,
           "state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()},
           "meta": dict(meta or {})}
    return atomic_write(path, lambda p: torch.save(doc, p))


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``, turning every failure into one ModelError line."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = _BLOCKED.search(str(exc))
        if blocked:
            raise ModelError(f"{path}: refused: it pickles a reference to {blocked['name']} from module "
                             f"{blocked['module']!r}, which torch never unpickles from a weights file "
                             "(refused even when pickles are trusted)") from None
        if "Unsupported global" in str(exc):
            raise ModelError(f"{path}: contains pickled Python objects (code); "
                             "pass --trust-pickle to load it if you trust its source") from None
        raise ModelError(f"{path}: not a readable checkpoint, truncated or corrupt "
                         f"(unpickling failed: {_weights_only_reason(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, io.UnsupportedOperation) as exc:
        raise ModelError(f"{path}: not a readable checkpoint, truncated or corrupt "
                         f"({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler runs no code; any failure is bad bytes
        raise ModelError(f"{path}: not a readable checkpoint, truncated or corrupt "
                         f"(unpickling failed: {type(exc).__name__}: {_first_line(exc)})") from None


def _weights_only_reason(exc: BaseException) -> str:
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0][:160]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def from_document(doc: Any, origin: str = "model") -> Graph:
    """Validate a loaded checkpoint document and build its Graph."""
    if not isinstance(doc, dict):
        raise ModelError(f"{origin}: not a {FORMAT} checkpoint (found {type(doc).__name__}; "
                         "a bare state_dict needs its architecture)")
    if doc.get("format") == ANN_FORMAT:
        raise ModelError(_not_spiking(doc, origin))
    if doc.get("format") != FORMAT:
        raise ModelError(f"{origin}: format key is {doc.get('format')!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise ModelError(f"{origin}: format version {doc.get('version')!r} is not supported "
                         f"(this build reads version {VERSION})")
    for key in ("arch", "state_dict"):
        if key not in doc:
            raise ModelError(f"{origin}: checkpoint is missing '{key}'")
    validate_document(doc, origin)
    tensors = {k: v.detach().float().numpy() for k, v in doc["state_dict"].items()}
    graph = Graph.from_dict(doc["arch"], tensors)
    graph.meta.setdefault("source", origin)
    graph.meta.update(doc.get("meta", {}))           # what save() was told is newer than the arch's
    return graph


def _not_spiking(doc: dict[str, Any], origin: str) -> str:
    """What to do with an ANN checkpoint given where a spiking network is expected (one line)."""
    head = f"{origin} is a frame-based ANN ({ANN_FORMAT}), not a spiking network: "
    if _has_adder(doc.get("arch")):
        return (head + "its adder layers cannot be converted; adder networks are priced on digital by "
                "`deploy distill --method pkkd` (report in its meta) and do not run on spiking targets")
    return head + "convert it with `deploy convert` first"


def _has_adder(arch: Any) -> bool:
    """Whether an ANN arch list (residual bodies and shortcuts included) holds an ``adder_*`` layer."""
    return isinstance(arch, list) and any(
        isinstance(d, dict) and (str(d.get("type", "")).startswith("adder_")
                                 or _has_adder(d.get("body")) or _has_adder(d.get("shortcut")))
        for d in arch)


def load(path: str | Path) -> Graph:
    """Load a native checkpoint safely."""
    return from_document(read_checkpoint(path), str(path))
