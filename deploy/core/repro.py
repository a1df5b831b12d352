"""Reproducible training on CPU: one seed, a fixed thread count, deterministic kernels.

Float reductions depend on how they are split across threads, so the same seed
gives the same weights only with the same thread count. Every training loop of
the toolchain runs inside :func:`deterministic`, which fixes the seeds, the
kernels and (when given) the thread count, and restores the caller's settings
afterwards; :func:`reproducible` does the same for a training function from its
own ``seed`` argument::

    with deterministic(seed=0, threads=1):
        ...  # shuffling, initialisation, noise and gradients are repeatable
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch, numpy and ``random``; fix the thread count (``None`` keeps it) and switch
    torch to deterministic algorithms for the duration of the block."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def reproducible(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a training function inside :func:`deterministic`, seeded by its own ``seed``
    argument, with its ``threads`` argument when it has one and otherwise the caller's
    thread count (the commands fix it: ``deploy finetune`` one thread, ``deploy distill --threads``)."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        seed = int(bound.arguments.get("seed", 0))
        threads = bound.arguments.get("threads")
        with deterministic(seed, threads):
            return fn(*args, **kwargs)

    return wrapper
