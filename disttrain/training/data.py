"""The [data] section made concrete: (train, validation) arrays, one sample's shape, classes."""
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class JobData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    input_shape: tuple
    num_classes: int
    description: str


class DataError(ValueError):
    """The data named by [data] cannot be used (the message names the file and the problem)."""


def _idx_files(root, prefix):
    def find(kind):
        base = os.path.join(root, f"{prefix}-{kind}")
        for cand in (base, base + ".gz"):
            if os.path.exists(cand):
                return cand
        raise DataError(f"{root}: no {prefix}-{kind} (or .gz)")
    return find("images-idx3-ubyte"), find("labels-idx1-ubyte")


def load_job_data(d, seed, dtype="float32"):
    """Arrays for the validated [data] section `d`; X keeps a per-sample shape ((C, H, W) for images)."""
    from .. import data as dd
    val = None
    try:
        if d.source == "digits":
            X, y = dd.load_digits()
            X = X.reshape(-1, 1, 8, 8)
            what = "8x8 digits"
        elif d.source in ("fashion_mnist", "idx"):
            root = d.path or dd.FASHION_MNIST_ROOT
            X, y = dd.load_idx(*_idx_files(root, "train"))
            if d.use_test_split:
                val = dd.load_idx(*_idx_files(root, "t10k"))
            what = "Fashion-MNIST" if d.source == "fashion_mnist" else f"IDX files in {root}"
        elif d.source == "npz":
            X, y = dd.load_npz(d.path, d.x_key, d.y_key)
            what = d.path
        elif d.source == "synthetic":
            if d.image_shape:
                X, y = dd.make_images(d.num_samples, d.num_classes, tuple(d.image_shape), seed=seed)
            else:
                X, y = dd.make_classification(d.num_samples, d.num_features, d.num_classes, seed=seed)
            what = "synthetic"
        else:   # the schema's choices make this unreachable
            raise DataError(f"unknown data source {d.source!r}")
    except dd.DataFileError as exc:
        raise DataError(str(exc)) from None
    X = np.asarray(X)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{what}: labels must be integers (class indices), found dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be a 1-d array of class indices, found shape {y.shape}")
    if y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0, found {int(y.min())}")
    if val is None:
        X, y, xv, yv = dd.train_val_split(X, y, d.val_fraction, seed=seed)
    else:
        xv, yv = val
    if d.max_train_samples:
        X, y = X[:d.max_train_samples], y[:d.max_train_samples]
    if d.max_val_samples:
        xv, yv = xv[:d.max_val_samples], yv[:d.max_val_samples]
    if len(X) == 0:
        raise DataError(f"{what}: no training samples left")
    num_classes = int(max(y.max(), yv.max() if len(yv) else 0)) + 1
    X = X.astype(np.float64)
    xv = xv.astype(np.float64)
    if d.normalize == "standardize":
        mean, std = X.mean(), X.std()
        std = std if std > 0 else 1.0
        X, xv = (X - mean) / std, (xv - mean) / std
    X, xv = np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(xv, dtype=dtype)
    return JobData(X, y.astype(np.int64), xv, yv.astype(np.int64), X.shape[1:], num_classes,
                   f"{what}: {len(X)} train / {len(xv)} validation samples of shape {X.shape[1:]}, "
                   f"{num_classes} classes")
