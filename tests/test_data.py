import gzip

import numpy as np
import pytest
import torch

from deploy.core import data
from deploy.core.errors import DataError


def test_digits_split_is_seeded_and_scaled():
    a, b = data.digits(), data.digits()
    assert a.x_test.shape == (360, 1, 8, 8) and a.x_train.shape == (1437, 1, 8, 8)
    assert float(a.x_train.max()) == 1.0 and float(a.x_train.min()) == 0.0
    assert (a.y_test == b.y_test).all()


def test_mnist_reads_the_official_test_files():
    if not (data.mnist_dir() / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("MNIST files are not beside this checkout")
    split = data.mnist()
    assert len(split.x_train) + len(split.x_test) == 10_000
    assert split.x_test.shape[1:] == (1, 28, 28) and float(split.x_test.max()) <= 1.0
    # the official t10k label counts
    counts = np.bincount(np.concatenate([split.y_train.numpy(), split.y_test.numpy()]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_truncated_idx_file_is_reported(tmp_path, monkeypatch):
    for name, payload in (("t10k-images-idx3-ubyte.gz", b"\x00\x00\x08\x03" + (10).to_bytes(4, "big")
                           + (28).to_bytes(4, "big") * 2 + b"\x00" * 100),
                          ("t10k-labels-idx1-ubyte.gz", b"\x00\x00\x08\x01" + (10).to_bytes(4, "big"))):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(payload)
    monkeypatch.setenv("DEPLOY_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="truncated"):
        data.mnist()


def test_synthetic_events_hit_the_requested_activity():
    x, y = data.synthetic_events(8, timesteps=5, size=32, classes=11, activity=0.5, seed=3)
    assert x.shape == (8, 5, 2, 32, 32) and set(np.unique(x.numpy())) <= {0.0, 1.0}
    assert abs(float(x.mean()) - 0.5) < 0.03
    x2, _ = data.synthetic_events(8, timesteps=5, size=32, classes=11, activity=0.5, seed=3)
    assert (x == x2).all()


def test_fit_to_model_flattens_and_rejects_mismatch():
    split = data.digits()
    assert data.fit_to_model(split.x_test, (64,)).shape == (360, 64)
    with pytest.raises(DataError, match="do not fit model input"):
        data.fit_to_model(split.x_test, (1, 28, 28))


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load("cifar")


def test_shift_moves_pixels_and_zero_fills():
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    right = data.shift(x, 0, 1)                    # hand-written: columns move right, column 0 empty
    assert right[0, 0].tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]
    up_left = data.shift(x, -1, -1)
    assert up_left[0, 0].tolist() == [[5, 6, 0], [8, 9, 0], [0, 0, 0]]


def test_augment_shifts_keeps_labels_and_test_set():
    split = data.load("digits")
    aug = data.augment_shifts(split, 4)
    n = len(split.x_train)
    assert aug.x_train.shape == (5 * n, *split.x_train.shape[1:])
    assert torch.equal(aug.y_train.view(5, n), split.y_train.repeat(5, 1))
    assert torch.equal(aug.x_train[n:2 * n], data.shift(split.x_train, 0, 1))
    assert aug.x_test is split.x_test
    with pytest.raises(DataError, match="0..8 copies"):
        data.augment_shifts(split, 9)
