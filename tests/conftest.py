"""Shared fixtures: the shipped model and small graphs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "models" / "digits_snn.pt"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shipped_path() -> Path:
    return SHIPPED


@pytest.fixture(scope="session")
def shipped_graph():
    from deploy.io import native

    return native.load(SHIPPED)


@pytest.fixture(scope="session")
def digits_split():
    from deploy.core import data

    return data.load("digits")
