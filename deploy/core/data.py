"""Datasets: scikit-learn digits (default), the MNIST test set, synthetic event streams.

Pixels reach models in [0, 1], shaped (N, 1, H, W); :func:`fit_to_model`
flattens them for MLPs. Splits are seeded and reproducible.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deploy.core.errors import DataError

DATASETS = ("digits", "mnist", "events")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Split:
    """Train and test tensors of one dataset."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _split(x: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, random_state=seed)


def digits(seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits, /16, 20% test split with ``random_state=seed``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = _split(x, d.target.astype(np.int64), 0.2, seed)
    return Split("digits", *map(torch.from_numpy, (xtr, ytr, xte, yte)))


def mnist_dir() -> Path:
    """Where the official MNIST t10k files live (``$DEPLOY_MNIST_DIR`` overrides)."""
    env = os.environ.get("DEPLOY_MNIST_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "mnist"


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read MNIST file {path}: {exc}") from None
    if len(raw) < 8 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: {data.size} of {int(np.prod(dims))} values")
    return data.reshape(dims)


def mnist(seed: int = 0, test_size: float = 0.2) -> Split:
    """The official MNIST test set (10,000 images), /255, split 80/20 with ``seed``."""
    root = mnist_dir()
    img, lab = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise DataError(f"MNIST files not found in {root} (set DEPLOY_MNIST_DIR)")
    x = (_read_idx(img).astype(np.float32) / 255.0)[:, None]
    y = _read_idx(lab).astype(np.int64)
    xtr, xte, ytr, yte = _split(x, y, test_size, seed)
    return Split("mnist", *map(torch.from_numpy, (xtr, ytr, xte, yte)))


def synthetic_events(n: int, timesteps: int = 8, size: int = 64, classes: int = 11,
                     activity: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """DVS-like 2-channel event frames (N, T, 2, size, size) with labels.

    Each class is a bar drifting in one of ``classes`` directions; ON events
    (channel 0) lead the bar's edge and OFF events (channel 1) trail it. Background
    events are added so that about ``activity`` of each sample's (pixel, channel, step)
    sites carry an event, the input activity the ADC-less IMC studies assume.
    Labels and background come from two seeded streams, so the first ``k`` samples
    of ``n`` are the ``k`` samples asked for alone (any ``n`` gives the same prefix).
    """
    g = torch.Generator().manual_seed(seed)
    g_noise = torch.Generator().manual_seed(seed + 2 ** 32)
    y = torch.randint(0, classes, (n,), generator=g)
    angle = 2 * np.pi * y.float() / classes
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    t = torch.arange(timesteps).float() / max(timesteps - 1, 1)
    proj = (xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None])
    phase = proj[:, None] - (t[None, :, None, None] * 1.2 - 0.6)  # (N, T, H, W)
    on = (phase > 0) & (phase < 0.25)
    off = (phase < 0) & (phase > -0.25)
    frames = torch.stack([on, off], 2).float()
    signal = frames.mean(dim=(1, 2, 3, 4), keepdim=True)          # per sample
    p_bg = ((activity - signal) / (1 - signal).clamp(min=1e-6)).clamp(min=0.0)
    noise = torch.rand(frames.shape, generator=g_noise) < p_bg
    return (frames.bool() | noise).float(), y


def events(timesteps: int = 8, size: int = 64, classes: int = 11, n_train: int = 512,
           n_test: int = 128, activity: float = 0.5, seed: int = 0) -> Split:
    xtr, ytr = synthetic_events(n_train, timesteps, size, classes, activity, seed)
    xte, yte = synthetic_events(n_test, timesteps, size, classes, activity, seed + 1)
    return Split("events", xtr, ytr, xte, yte)


SHIFTS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (N, C, H, W) moved by (dy, dx) pixels, the uncovered border filled with zeros."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def augment_shifts(split: Split, copies: int) -> Split:
    """``split`` whose training set also holds ``copies`` (0-8) one-pixel shifted copies of
    every image (right, down, left, up, then the diagonals); the test set is unchanged."""
    if not 0 <= copies <= len(SHIFTS):
        raise DataError(f"shift augmentation takes 0..{len(SHIFTS)} copies, got {copies}")
    if copies and split.x_train.dim() != 4:
        raise DataError(f"shift augmentation needs images (N, C, H, W), got shape {tuple(split.x_train.shape)}")
    xs = [split.x_train] + [shift(split.x_train, dy, dx) for dy, dx in SHIFTS[:copies]]
    return Split(split.name, torch.cat(xs), split.y_train.repeat(copies + 1), split.x_test, split.y_test)


def load(name: str, seed: int = 0, **kwargs) -> Split:
    """Load a dataset by name: digits, mnist or events."""
    if name == "digits":
        return digits(seed)
    if name == "mnist":
        return mnist(seed)
    if name == "events":
        return events(seed=seed, **kwargs)
    raise DataError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")


def fit_to_model(x: torch.Tensor, input_shape: tuple[int, ...], encoding: str = "direct") -> torch.Tensor:
    """Reshape images (N, 1, H, W) to the model's input shape (flatten for MLPs).

    Raises :class:`DataError` if the sizes cannot match.
    """
    per_sample = tuple(x.shape[2:]) if encoding == "events" else tuple(x.shape[1:])
    if per_sample == tuple(input_shape):
        return x
    if int(np.prod(per_sample)) != int(np.prod(input_shape)):
        raise DataError(f"data samples of shape {per_sample} do not fit model input {tuple(input_shape)}")
    lead = x.shape[:2] if encoding == "events" else x.shape[:1]
    return x.reshape(*lead, *input_shape)
