"""``load_model``: the one entry every command uses to turn a model source into a Graph.

Sources, by what ``spec`` looks like:

- ``model.pt`` / ``model.pth``: a native checkpoint (:mod:`deploy.io.native`),
  read with ``torch.load(weights_only=True)``, so no code runs. A file holding
  a pickled ``nn.Module`` (or other Python objects) loads only with
  ``trust_pickle=True`` (``--trust-pickle``): unpickling runs code from the file.
- ``model.nir`` / ``.h5`` / ``.hdf5``: a NIR graph (:mod:`deploy.io.nir_io`).
- ``path/to/net.py:factory``: imports the user's Python file and calls
  ``factory()`` to get an ``nn.Module``. **This runs the user's code on purpose**
  (the way ``uvicorn module:app`` does); only pass files you trust. With
  ``weights``, a state_dict file is loaded into the module (``weights_only=True``).
  The file may define ``INPUT_SHAPE`` (without batch; needed when the first layer
  is a convolution), ``TIMESTEPS`` and ``ENCODING``. The factory may return an
  ``nn.Sequential`` or any module whose ``forward`` runs a chain of layers (an
  snnTorch-style loop over time included; see :mod:`deploy.io.torch_import`).
- a ``Graph`` or a live ``nn.Module`` (Python API).

Every failure is a :class:`~deploy.core.errors.ModelError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy.core import ir
from deploy.core.errors import ModelError
from deploy.io import native, nir_io, torch_import

NATIVE_SUFFIXES = (".pt", ".pth")
NIR_SUFFIXES = (".nir", ".h5", ".hdf5")
_FACTORY = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_HDF5_MAGIC, _ZIP_MAGIC = b"\x89HDF\r\n\x1a\n", b"PK\x03\x04"


def from_torch(module: nn.Module, sample_input: torch.Tensor | tuple[int, ...] | None = None,
               timesteps: int | None = None, encoding: str = "direct") -> ir.Graph:
    """Convert a live torch/snnTorch module to a Graph (see :mod:`deploy.io.torch_import`).

    ``sample_input``: a batch as the module's forward (for a Sequential: one
    timestep) sees it, or the input shape without batch; optional when the first
    layer is ``nn.Linear``. ``timesteps``: default the repetitions of a loop over
    time in ``forward``, else 8.
    """
    return torch_import.convert(module, sample_input, timesteps, encoding)


def load_model(spec: str | Path | ir.Graph | nn.Module, trust_pickle: bool = False,
               weights: str | Path | None = None, *, input_shape: tuple[int, ...] | None = None,
               timesteps: int | None = None, encoding: str | None = None,
               dt: float | None = None) -> ir.Graph:
    """Load any supported model source as a validated Graph (see the module docstring).

    ``input_shape``, ``timesteps`` and ``encoding`` complete torch modules (which do
    not store them) and, when given, override what a file stores. ``dt`` (seconds) is
    the step that discretizes a NIR file's time constants (see :mod:`deploy.io.nir_io`).
    """
    if isinstance(spec, ir.Graph):
        graph = spec.copy()
    elif isinstance(spec, nn.Module):
        graph = from_torch(spec, input_shape, timesteps, encoding or "direct")
    elif (m := _FACTORY.match(str(spec))) is not None:
        graph = _from_factory(Path(m["file"]), m["name"], weights, input_shape, timesteps, encoding)
    else:
        if weights is not None:
            raise ModelError(f"{spec}: --weights applies only to a file.py:factory model")
        graph = _from_file(Path(spec), trust_pickle, input_shape, timesteps, encoding, dt)
    if timesteps is not None:
        graph.timesteps = int(timesteps)
    if encoding is not None:
        graph.encoding = encoding
    return graph.validate()


def _from_file(path: Path, trust_pickle: bool, input_shape, timesteps, encoding,
               dt: float | None = None) -> ir.Graph:
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in NATIVE_SUFFIXES + NIR_SUFFIXES:
        with open(path, "rb") as f:
            head = f.read(8)
        suffix = ".nir" if head == _HDF5_MAGIC else ".pt" if head.startswith(_ZIP_MAGIC) else suffix
    if suffix in NIR_SUFFIXES:
        return nir_io.from_nir(path, dt=dt)
    if suffix in NATIVE_SUFFIXES:
        return _from_checkpoint(path, trust_pickle, input_shape, timesteps, encoding)
    raise ModelError(f"{path}: unknown model format (expected .pt/.pth, .nir/.h5, or file.py:factory)")


def _from_checkpoint(path: Path, trust_pickle: bool, input_shape, timesteps, encoding) -> ir.Graph:
    try:
        doc = native.read_checkpoint(path)
    except ModelError as exc:
        if not trust_pickle or "--trust-pickle" not in str(exc):
            raise
        doc = _trusted_load(path)
        if isinstance(doc, nn.Module):
            graph = from_torch(doc, input_shape, timesteps, encoding or "direct")
            graph.meta["source"] = str(path)
            return graph
    if isinstance(doc, dict) and doc and "format" not in doc and _all_tensors(doc):
        raise ModelError(f"{path}: a bare state_dict has no architecture; load it as "
                         f"net.py:factory --weights {path}")
    return native.from_document(doc, str(path))


def _trusted_load(path: Path) -> Any:
    """Unpickle with code execution allowed (only behind ``trust_pickle``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise ModelError(f"{path}: unpickling failed ({type(exc).__name__}: {_first_line(exc)})") from exc


def _all_tensors(d: dict) -> bool:
    return all(isinstance(v, torch.Tensor) for v in d.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


@contextlib.contextmanager
def _on_path(folder: Path):
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _from_factory(path: Path, fname: str, weights, input_shape, timesteps, encoding) -> ir.Graph:
    """Import the user's file and call its factory: runs user code on purpose."""
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"_deploy_user_{path.stem}_{key}", path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    with _on_path(path.resolve().parent):
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            raise ModelError(f"{path}: running the file failed ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from exc
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise ModelError(f"{path}: has no function '{fname}'")
        try:
            net = factory()
        except (Exception, SystemExit) as exc:
            raise ModelError(f"{path}:{fname}() failed ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not isinstance(net, nn.Module):
        raise ModelError(f"{path}:{fname}() returned {type(net).__name__}, not a torch nn.Module")
    if weights is not None:
        load_weights(net, weights)
    net.eval()
    graph = from_torch(net, input_shape or getattr(module, "INPUT_SHAPE", None),
                       timesteps or getattr(module, "TIMESTEPS", None),
                       encoding or getattr(module, "ENCODING", "direct"))
    graph.name, graph.meta["source"] = fname, f"{path}:{fname}"
    return graph


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Load a state_dict file (``weights_only=True``) into ``net``, strictly, with a one-line error."""
    doc = native.read_checkpoint(path)
    if isinstance(doc, dict) and isinstance(doc.get("state_dict"), dict) and not _all_tensors(doc):
        doc = doc["state_dict"]
    if not isinstance(doc, dict) or not _all_tensors(doc):
        raise ModelError(f"{path}: not a state_dict (a mapping of names to tensors)")
    own = net.state_dict()
    missing = [k for k in own if k not in doc]
    extra = [k for k in doc if k not in own]
    wrong = [k for k in own if k in doc and tuple(own[k].shape) != tuple(doc[k].shape)]
    if missing or extra or wrong:
        parts = [f"missing {', '.join(missing[:3])}" if missing else "",
                 f"unexpected {', '.join(extra[:3])}" if extra else "",
                 f"'{wrong[0]}' has shape {tuple(doc[wrong[0]].shape)} in the file but "
                 f"{tuple(own[wrong[0]].shape)} in the model" if wrong else ""]
        raise ModelError(f"{path}: weights do not fit the model: {'; '.join(p for p in parts if p)}")
    net.load_state_dict(doc, strict=True)
