"""A user's own test set from a file (``--data PATH``), and fitting samples to a model.

File formats (the suffix decides):

====================  ==========================================================
``.npz``              arrays ``x`` and ``y`` (``np.savez``; no pickled objects)
``.pt`` / ``.pth``    ``{"x": tensor, "y": tensor}`` or a tuple ``(x, y)``
                      (read with ``torch.load(weights_only=True)``)
``.h5`` / ``.hdf5``   datasets ``x`` and ``y``
====================  ==========================================================

``x`` holds static samples ``(N, C, H, W)`` or ``(N, F)``, or event frames
``(N, T, C, H, W)`` (axis 1 is time); ``y`` holds N integer labels. Optional
``x_train`` / ``y_train`` give a training split (``deploy quantize`` QAT and
``deploy finetune`` need one).

Event lists (tonic's structured events with fields ``x``, ``y``, ``t``, ``p``)
are stored, in ``.npz`` or ``.h5``, as ``events`` (every sample's events
concatenated), ``offsets`` (N + 1 ints: sample i is
``events[offsets[i]:offsets[i + 1]]``), ``y`` (labels) and optionally
``sensor_size`` (W, H, P as tonic names it; default: the model's input).
:func:`save_events` writes this layout. Each sample is binned into the model's
timesteps with ``tonic.transforms.ToFrame(n_time_bins=T)`` (event counts per bin).
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.core import data as datasets
from deploy.core import ir
from deploy.core.data import Split
from deploy.core.errors import DataError

DATA_SUFFIXES = (".npz", ".pt", ".pth", ".h5", ".hdf5")
EVENT_FIELDS = ("x", "y", "t", "p")


@dataclass
class UserData:
    """Samples read from a file: ``x`` as stored (float32), ``y`` (int64) and the file's identity."""

    file: str
    sha256: str
    x: torch.Tensor
    y: torch.Tensor
    x_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    events: bool = False


def is_data_file(spec: str | Path) -> bool:
    """True when ``spec`` names a data file by its suffix (not a built-in dataset name)."""
    return Path(str(spec)).suffix.lower() in DATA_SUFFIXES


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read(path: str | Path, timesteps: int = 8, input_shape: tuple[int, ...] | None = None) -> UserData:
    """Read a test set (and optional training split) from ``path``; event lists are binned
    into ``timesteps`` frames of the sensor size in the file, else ``input_shape`` (C, H, W)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    arrays = _arrays(path)
    x, y, is_events = _samples(path, arrays, "", timesteps, input_shape)
    x_train = y_train = None
    if "x_train" in arrays or "events_train" in arrays:
        x_train, y_train, _ = _samples(path, arrays, "_train", timesteps, input_shape)
    return UserData(path.name, sha256(path), x, y, x_train, y_train, is_events)


def save_events(path: str | Path, samples: list[np.ndarray], labels: Any,
                sensor_size: tuple[int, int, int] | None = None) -> Path:
    """Write per-sample tonic event arrays (fields x, y, t, p) and labels in the ``.npz`` layout above."""
    path = Path(path)
    if not samples:
        raise DataError("save_events: no samples")
    offsets = np.cumsum([0] + [len(s) for s in samples]).astype(np.int64)
    doc = {"events": np.concatenate(samples), "offsets": offsets, "y": np.asarray(labels, dtype=np.int64)}
    if sensor_size is not None:
        doc["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
    np.savez(path, **doc)
    return path


# -- reading ----------------------------------------------------------------------------
def _arrays(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise DataError(f"{path}: holds pickled object arrays, which are not loaded; store event "
                                "lists as 'events' + 'offsets' (deploy.userdata.save_events)") from None
            raise DataError(f"{path}: not a readable .npz file ({exc})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None
    if suffix in (".pt", ".pth"):
        return _torch_arrays(path)
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        except OSError as exc:
            raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    raise DataError(f"{path}: unknown data format (expected {', '.join(DATA_SUFFIXES)})")


def _torch_arrays(path: Path) -> dict[str, Any]:
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused or corrupt pickle raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"{path}: cannot be read with torch.load(weights_only=True) ({first})") from None
    if isinstance(doc, (tuple, list)) and len(doc) == 2:
        doc = {"x": doc[0], "y": doc[1]}
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a dict {{'x', 'y'}} or a tuple (x, y), got {type(doc).__name__}")
    return {str(k): v.numpy() if isinstance(v, torch.Tensor) else v for k, v in doc.items()}


def _samples(path: Path, arrays: dict[str, Any], split: str, timesteps: int,
             input_shape: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    xkey, ykey, ekey = f"x{split}", f"y{split}", f"events{split}"
    if ykey not in arrays or (xkey not in arrays and ekey not in arrays):
        raise DataError(f"{path}: needs arrays '{xkey}' and '{ykey}' (or '{ekey}', 'offsets{split}' and "
                        f"'{ykey}' for event lists); found {', '.join(sorted(arrays)) or 'none'}")
    y = _labels(path, arrays[ykey], ykey)
    if ekey in arrays:
        x = _bin_events(path, arrays, split, timesteps, input_shape)
        events = True
    else:
        x, events = _values(path, arrays[xkey], xkey), False
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} samples in '{xkey}' but {len(y)} labels in '{ykey}'")
    return x, y, events


def _values(path: Path, a: Any, key: str) -> torch.Tensor:
    a = np.asarray(a)
    if a.dtype.names:
        raise DataError(f"{path}: '{key}' is a structured (event) array; store event lists as 'events' + "
                        "'offsets' (deploy.userdata.save_events)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or a.ndim < 2:
        raise DataError(f"{path}: '{key}' must be a numeric array (N, ...), got dtype {a.dtype} shape {a.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: '{key}' holds NaN or infinite values")
    return x


def _labels(path: Path, a: Any, key: str) -> torch.Tensor:
    a = np.asarray(a)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.number) or len(a) == 0:
        raise DataError(f"{path}: '{key}' must be a non-empty 1-D array of class labels, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or a.min() < 0:
        raise DataError(f"{path}: '{key}' must hold integer class labels >= 0")
    return torch.from_numpy(a.astype(np.int64))


def _bin_events(path: Path, arrays: dict[str, Any], split: str, timesteps: int,
                input_shape: tuple[int, ...] | None) -> torch.Tensor:
    """Every sample's events binned to (T, P, H, W) count frames with tonic's ToFrame."""
    events, okey = np.asarray(arrays[f"events{split}"]), f"offsets{split}"
    names = events.dtype.names or ()
    if not set(EVENT_FIELDS) <= set(names):
        raise DataError(f"{path}: 'events{split}' must be a structured array with fields x, y, t, p "
                        f"(tonic's format), got fields {names or 'none'}")
    if okey not in arrays:
        raise DataError(f"{path}: event lists need '{okey}' (N + 1 start indices into 'events{split}')")
    offsets = np.asarray(arrays[okey]).astype(np.int64).ravel()
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(events) or np.any(np.diff(offsets) < 0):
        raise DataError(f"{path}: '{okey}' must rise from 0 to {len(events)} (the number of events)")
    size = _sensor_size(path, arrays.get("sensor_size"), input_shape)
    w, h, p = size
    for f, top in (("x", w), ("y", h), ("p", p)):
        v = events[f]
        if len(v) and (v.min() < 0 or v.max() >= top):
            raise DataError(f"{path}: event field '{f}' spans {v.min()}..{v.max()}, outside the sensor size "
                            f"(W, H, P) = {size}")
    from tonic.transforms import ToFrame  # imported only when event lists are read

    to_frame = ToFrame(sensor_size=size, n_time_bins=int(timesteps))
    frames = np.zeros((len(offsets) - 1, int(timesteps), p, h, w), dtype=np.float32)
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        if b > a:
            sample = np.sort(events[a:b], order="t", kind="stable")
            frames[i] = to_frame(sample.copy())
    return torch.from_numpy(frames)


def _sensor_size(path: Path, stored: Any, input_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    if stored is not None:
        s = tuple(int(v) for v in np.asarray(stored).ravel())
        if len(s) != 3 or min(s) < 1:
            raise DataError(f"{path}: 'sensor_size' must be 3 positive ints (W, H, P), got {s}")
        return s
    if input_shape is None or len(input_shape) != 3:
        raise DataError(f"{path}: event lists need 'sensor_size' (W, H, P) in the file or a (C, H, W) model "
                        f"input, got {tuple(input_shape) if input_shape else 'none'}")
    c, h, w = (int(v) for v in input_shape)
    return w, h, c


# -- fitting to a model -----------------------------------------------------------------
def fit(x: torch.Tensor, input_shape: tuple[int, ...], timesteps: int, encoding: str,
        fixed_encoding: bool = False, name: str = "model") -> tuple[torch.Tensor, str]:
    """``x`` shaped for the model and the encoding to run it with.

    Static samples become (N, *input_shape) (flattened or unflattened when the sizes
    match); event frames (N, T, ...) become (N, T, *input_shape). A model whose
    encoding is ``direct`` and not ``fixed_encoding`` (e.g. a NIR import, which
    stores none) takes event frames as ``events``.
    """
    shape, inp = tuple(x.shape), tuple(int(s) for s in input_shape)
    n_in = math.prod(inp)
    static_fit = math.prod(shape[1:]) == n_in
    frames_fit = (len(shape) == len(inp) + 2 and shape[2:] == inp) or \
        (len(inp) == 1 and len(shape) >= 3 and math.prod(shape[2:]) == n_in)  # frames flattened for an MLP
    expect = (f"data of shape {shape} do not fit model input {inp}: expected (N, {_dims(inp)}) static "
              f"samples or (N, T, {_dims(inp)}) event frames (axis 0 = samples, axis 1 = time)")
    if encoding == "events":
        if not frames_fit:
            raise DataError(f"model '{name}' takes event frames (N, T={timesteps}, {_dims(inp)}), time on "
                            f"axis 1; data have shape {shape}")
        return _frames(x, inp, timesteps), "events"
    if static_fit:
        return x.reshape(shape[0], *inp), encoding
    if not frames_fit:
        raise DataError(expect)
    if fixed_encoding or encoding != "direct":
        raise DataError(f"data of shape {shape} are event frames (time on axis 1) but model '{name}' uses "
                        f"{encoding} encoding; pass --encoding events")
    return _frames(x, inp, timesteps), "events"


def _frames(x: torch.Tensor, inp: tuple[int, ...], timesteps: int) -> torch.Tensor:
    if x.shape[1] != timesteps:
        raise DataError(f"event frames of shape {tuple(x.shape)} have {x.shape[1]} time bins (axis 1), the "
                        f"model (input {inp}) runs {timesteps} timesteps; pass --timesteps {x.shape[1]}")
    return x.reshape(x.shape[0], x.shape[1], *inp)


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


def read_split(path: str | Path, graph: ir.Graph) -> Split:
    """A :class:`~deploy.core.data.Split` from a data file (training split empty when the file has none)."""
    ud = read(path, graph.timesteps, graph.input_shape)
    x_train = ud.x_train if ud.x_train is not None else ud.x[:0]
    y_train = ud.y_train if ud.y_train is not None else ud.y[:0]
    return Split(ud.file, x_train, y_train, ud.x, ud.y)


def fit_split(split: Split, graph: ir.Graph, fixed_encoding: bool = False) -> Split:
    """``split`` with both parts shaped for ``graph`` by :func:`fit`; sets ``graph.encoding`` to the
    encoding used (event frames on a direct model that did not fix its encoding run as events)."""
    x_test, encoding = fit(split.x_test, graph.input_shape, graph.timesteps, graph.encoding, fixed_encoding,
                           graph.name)
    x_train = split.x_train
    if len(x_train):
        x_train, _ = fit(x_train, graph.input_shape, graph.timesteps, encoding, fixed_encoding, graph.name)
    graph.encoding = encoding
    return Split(split.name, x_train, split.y_train, x_test, split.y_test)


def split_for(graph: ir.Graph, data: str, split_seed: int = 0, n_train: int = 512, n_test: int = 128,
              fixed_encoding: bool = False) -> Split:
    """:func:`dataset_split` shaped for ``graph`` by :func:`fit_split`."""
    return fit_split(dataset_split(graph, data, split_seed, n_train, n_test, fixed_encoding), graph, fixed_encoding)


def dataset_split(graph: ir.Graph, data: str, split_seed: int = 0, n_train: int = 512, n_test: int = 128,
                  fixed_encoding: bool = False) -> Split:
    """``data`` for ``graph`` as stored (images stay (N, C, H, W)): a data file, a built-in dataset
    (digits, mnist) split by ``split_seed``, or the synthetic event set sized to the model (its
    timesteps, a (2, S, S) input, its classes; ``n_train`` / ``n_test`` streams, whose first
    samples do not depend on how many are drawn)."""
    if is_data_file(data):
        return read_split(data, graph)
    if data == "events":
        shape = tuple(graph.input_shape)
        if graph.encoding != "events" and (fixed_encoding or graph.encoding != "direct"):
            raise DataError(f"--data events gives event frames but model '{graph.name}' uses {graph.encoding} "
                            "encoding; pass --encoding events")
        if len(shape) != 3 or shape[0] != 2 or shape[1] != shape[2]:
            raise DataError(f"synthetic events are 2-channel square frames (N, T, 2, S, S), time on axis 1; "
                            f"model '{graph.name}' takes input {shape}")
        classes = math.prod(graph.shapes()[graph.output.name])
        return datasets.events(timesteps=graph.timesteps, size=shape[-1], classes=classes, n_train=n_train,
                               n_test=n_test, seed=split_seed)
    if graph.encoding == "events":
        raise DataError(f"model '{graph.name}' takes event streams; use --data events or a file of event frames")
    return datasets.load(data, seed=split_seed)
