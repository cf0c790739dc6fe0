"""The [data] section made concrete: (train, validation) arrays, one sample's shape, classes."""
import os
from dataclasses import dataclass

import numpy as np

from .config import MAX_INFERRED_CLASSES
from .limits import check_fits, elements


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
            _check_npz_size(d.path, d.x_key)
            X, y = dd.load_npz(d.path, d.x_key, d.y_key)
            what = d.path
        elif d.source == "synthetic":
            shape = tuple(d.image_shape) if d.image_shape else (d.num_features,)
            check_fits(8 * 3 * d.num_samples * elements(shape), f"synthetic data of {d.num_samples:,} samples of "
                       f"shape {shape}", DataError, "lower [data] num_samples, num_features or image_shape.")
            if d.image_shape:
                X, y = dd.make_images(d.num_samples, d.num_classes or 10, tuple(d.image_shape), seed=seed)
            else:
                X, y = dd.make_classification(d.num_samples, d.num_features, d.num_classes or 10, seed=seed)
            what = "synthetic"
        else:   # the schema's choices make this unreachable
            raise DataError(f"unknown data source {d.source!r}")
    except dd.DataFileError as exc:
        raise DataError(str(exc)) from None
    X = np.asarray(X)
    y = np.asarray(y)
    keyed = d.source == "npz"      # name the arrays too
    _check_inputs(X, f"{what} [x_key {d.x_key!r}]" if keyed else what, "training" if val is not None else "")
    labels = f"{what} [y_key {d.y_key!r}]" if keyed else what
    y = _check_labels(y, labels, len(X))
    if val is not None:
        xv, yv = np.asarray(val[0]), np.asarray(val[1])
        _check_inputs(xv, f"{what} (test split)", "test", allow_empty=True)
        if xv.shape[1:] != X.shape[1:]:
            raise DataError(f"{what}: test samples have shape {xv.shape[1:]}, training samples {X.shape[1:]}")
        val = xv, _check_labels(yv, f"{what} (test split)", len(xv))
    # labels are checked as stored (sample numbers as in the file), before any split
    num_classes = _num_classes(d, y, val[1] if val is not None else y[:0], labels)
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


def _check_inputs(X, what, split="", allow_empty=False):
    """Inputs: numeric, (samples, features...) with at least one sample and feature, all finite."""
    name = f"{what}: the {split + ' ' if split else ''}inputs"
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} have dtype {X.dtype}; they must be numbers")
    if X.ndim < 2:
        raise DataError(f"{name} have shape {X.shape}; they must be (samples, features...) with at least 2 "
                        "dimensions (reshape a 1-d array to (n, 1))")
    if len(X) == 0 and not allow_empty:
        raise DataError(f"{name} hold 0 samples (shape {X.shape})")
    if 0 in X.shape[1:]:
        raise DataError(f"{name} have samples of shape {X.shape[1:]}, which hold no values")
    if X.dtype.kind == "f":
        finite = np.isfinite(X)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(X), -1).all(axis=1))
            raise DataError(f"{name} hold {int(finite.size - np.count_nonzero(finite))} non-finite value(s) "
                            f"(NaN/inf) in {len(bad)} sample(s), the first at sample {int(bad[0])}; "
                            "clean or drop them")


def _check_labels(y, what, n):
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and np.all(np.mod(y, 1) == 0):
            if len(y) and np.abs(y).max() >= 2 ** 62:
                raise DataError(f"{what}: labels up to {np.abs(y).max():g} are not class indices")
            y = y.astype(np.int64)
        else:
            raise DataError(f"{what}: labels must be integers (class indices), found dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be a 1-d array of class indices, found shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{what}: {n} input samples but {len(y)} labels")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0, found {int(y.min())} (sample {int(np.argmin(y))})")
    if y.dtype == np.uint64 and len(y) and y.max() >= 2 ** 63:
        raise DataError(f"{what}: label {int(y.max())} is not a class index")
    return y.astype(np.int64)


def _num_classes(d, y, yv, what):
    """[data] num_classes, or the largest label + 1 (bounded); every label must be below it."""
    top = int(max(y.max(), yv.max() if len(yv) else 0))
    if d.num_classes:
        for labels, split in ((y, "training"), (yv, "test")):
            if len(labels) and labels.max() >= d.num_classes:
                i = int(np.argmax(labels))
                raise DataError(f"{what}: {split} label {int(labels[i])} (sample {i}) is outside 0..{d.num_classes - 1}"
                                f" ([data] num_classes = {d.num_classes}); raise num_classes or fix the labels")
        return d.num_classes
    if top + 1 > MAX_INFERRED_CLASSES:
        i = int(np.argmax(y)) if y.max() == top else int(np.argmax(yv))
        raise DataError(f"{what}: the largest label is {top} (sample {i}), which would make {top + 1:,} classes; "
                        f"labels must be class indices 0..num_classes-1. Set [data] num_classes if you really mean "
                        f"more than {MAX_INFERRED_CLASSES:,} classes")
    if d.source == "synthetic":
        return 10
    return top + 1


def _check_npz_size(path, key):
    """Refuse an npz whose input array cannot fit in memory, reading only its header."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z, z.open(key + ".npy") as f:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
    except Exception:       # unreadable or unusual: load_npz gives the precise message
        return
    check_fits(3 * max(8, dtype.itemsize) * elements(shape), f"{path}: the array {key!r} of shape {shape}",
               DataError, "use a smaller data set or [data] max_train_samples.")
