"""The [data] section made concrete: (train, validation) arrays, one sample's shape, classes.

Sources a config can name are registered here (``[data] source = "digits"``); a new one is one
`register_data_source` in a module listed in ``[job] imports``. A loader gets the validated
[data] section, the seed and the dtype and returns a `JobData` (`from_arrays` does the common
part for (X, y) sources: integer labels, split, truncation, normalisation).
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .config import Key
from .registry import Registry


@dataclass
class JobData:
    x_train: object          # numpy array, or any object with len(), shape and fancy-index gathering
    y_train: object
    x_val: np.ndarray
    y_val: np.ndarray
    input_shape: tuple
    num_classes: int
    description: str
    train_set: object = None     # a dataset for the loader (default: ArrayDataset(x_train, y_train))
    files: dict = field(default_factory=dict)    # name -> text rank 0 writes into the run directory

    def train_dataset(self):
        from ..data import ArrayDataset
        return self.train_set if self.train_set is not None else ArrayDataset(self.x_train, self.y_train)


class DataError(ValueError):
    """The data named by [data] cannot be used (the message names the file and the problem)."""


SOURCES = Registry("data source")     # the [data] keys every source takes are in config.SCHEMA["data"]


def register_data_source(name, params=(), task="classification", check=None):
    """Decorator registering ``loader(section, seed, dtype, integer_labels) -> JobData`` as [data] source
    ``name``; ``params``: the `Key`s it takes, ``task``: what [task] name = "auto" means for it,
    ``check(values, check_files)`` -> (key, problem) or None."""
    return SOURCES.decorator(name, params, check, task=task)


def load_job_data(d, seed, dtype="float32", integer_labels=True):
    """Arrays for the validated [data] section `d`; X keeps a per-sample shape ((C, H, W) for images).
    ``integer_labels=False`` (a regression task) keeps float targets instead of class indices."""
    from .. import data as dd
    try:
        return SOURCES[d.source].target(d, seed, np.dtype(dtype), integer_labels)
    except dd.DataFileError as exc:
        raise DataError(str(exc)) from None


def from_arrays(d, X, y, val, what, seed, dtype, integer_labels=True):
    """JobData from (X, y) and an optional (x_val, y_val): check labels, split, truncate, normalise."""
    from .. import data as dd
    X = np.asarray(X)
    y = np.asarray(y)
    if integer_labels:
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
    X = X.astype(np.float64)
    xv = xv.astype(np.float64)
    if d.normalize == "standardize":
        mean, std = X.mean(), X.std()
        std = std if std > 0 else 1.0
        X, xv = (X - mean) / std, (xv - mean) / std
    X, xv = np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(xv, dtype=dtype)
    if integer_labels:
        num_classes = int(max(y.max(), yv.max() if len(yv) else 0)) + 1
        y, yv, kind = y.astype(np.int64), np.asarray(yv).astype(np.int64), f"{num_classes} classes"
    else:      # regression: the model's output width is the target's width
        num_classes = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
        y, yv = np.ascontiguousarray(y, dtype=dtype), np.ascontiguousarray(yv, dtype=dtype)
        kind = f"targets of shape {y.shape[1:]}"
    return JobData(X, y, xv, yv, X.shape[1:], num_classes,
                   f"{what}: {len(X)} train / {len(xv)} validation samples of shape {X.shape[1:]}, {kind}")


def _idx_files(root, prefix):
    def find(kind):
        base = os.path.join(root, f"{prefix}-{kind}")
        for cand in (base, base + ".gz"):
            if os.path.exists(cand):
                return cand
        raise DataError(f"{root}: no {prefix}-{kind} (or .gz)")
    return find("images-idx3-ubyte"), find("labels-idx1-ubyte")


# -- the built-in sources ----------------------------------------------------------------------
NORMALIZE = Key("normalize", "str", "standardize", "standardize (subtract the training mean, divide by its std), "
                "or none (loader's [0, 1] scaling).", choices=("standardize", "none"))
PATH = Key("path", "str", "", "npz: the .npz file; idx: directory with the four MNIST-format files "
           "(train-images-idx3-ubyte[.gz], ...); fashion_mnist: its directory "
           "(default /usr/share/datasets/fashion-mnist); text: a UTF-8 text file (default: the shipped Tiny "
           "Shakespeare). Relative paths start at the current directory.")
USE_TEST_SPLIT = Key("use_test_split", "bool", True, "fashion_mnist/idx: validate on the t10k test files instead "
                     "of a held-out part of the training files.")


@register_data_source("digits", params=[NORMALIZE])
def _digits(d, seed, dtype, integer_labels=True):
    from .. import data as dd
    X, y = dd.load_digits()
    return from_arrays(d, X.reshape(-1, 1, 8, 8), y, None, "8x8 digits", seed, dtype, integer_labels)


def _idx_check(values, check_files):
    if not check_files:
        return None
    from ..data import FASHION_MNIST_ROOT
    root = values["path"] or FASHION_MNIST_ROOT
    if not os.path.isdir(root):
        hint = (" Fashion-MNIST comes from the Debian package dataset-fashion-mnist "
                "(`sudo apt-get install dataset-fashion-mnist`), which installs it there."
                if values["source"] == "fashion_mnist" else "")
        return "path", f"no such directory: {root}.{hint}"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    if values["use_test_split"]:
        names += ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for n in names:
        if not any(os.path.isfile(os.path.join(root, n + ext)) for ext in ("", ".gz")):
            return "path", f"{root} has no {n} (or {n}.gz)."
    return None


def _idx_loader(d, seed, dtype, integer_labels=True):
    from .. import data as dd
    root = d.path or dd.FASHION_MNIST_ROOT
    X, y = dd.load_idx(*_idx_files(root, "train"))
    val = dd.load_idx(*_idx_files(root, "t10k")) if d.use_test_split else None
    what = "Fashion-MNIST" if d.source == "fashion_mnist" else f"IDX files in {root}"
    return from_arrays(d, X, y, val, what, seed, dtype, integer_labels)


def _required_path(values, check_files):
    if not values["path"]:
        return "path", f"is required for source \"{values['source']}\"."
    return _idx_check(values, check_files)


register_data_source("fashion_mnist", params=[PATH, USE_TEST_SPLIT, NORMALIZE], check=_idx_check)(_idx_loader)
register_data_source("idx", params=[PATH, USE_TEST_SPLIT, NORMALIZE], check=_required_path)(_idx_loader)


def _npz_check(values, check_files):
    if not values["path"]:
        return "path", "is required for source \"npz\"."
    if check_files and not os.path.isfile(values["path"]):
        return "path", f"no such file: {values['path']}."
    return None


@register_data_source("npz", params=[PATH, Key("x_key", "str", "x", "npz: name of the input array."),
                                     Key("y_key", "str", "y", "npz: name of the label array (integers "
                                         "0..classes-1, or float targets for a regression task)."), NORMALIZE],
                      check=_npz_check)
def _npz(d, seed, dtype, integer_labels=True):
    from .. import data as dd
    X, y = dd.load_npz(d.path, d.x_key, d.y_key)
    return from_arrays(d, X, y, None, d.path, seed, dtype, integer_labels)


def _synthetic_check(values, check_files):
    shape = values["image_shape"]
    if shape and len(shape) != 3:
        return "image_shape", f"must be [channels, height, width], got {shape}."
    if any(s <= 0 for s in shape):
        return "image_shape", "sizes must be > 0."
    return None


@register_data_source("synthetic", params=[
    Key("num_samples", "int", 8192, "synthetic: number of samples.", low=2),
    Key("num_features", "int", 784, "synthetic: features per sample.", low=1),
    Key("num_classes", "int", 10, "synthetic: number of classes.", low=2),
    Key("image_shape", "list[int]", [], "synthetic: [channels, height, width] to generate images "
        "instead of feature vectors (empty: vectors)."), NORMALIZE], check=_synthetic_check)
def _synthetic(d, seed, dtype, integer_labels=True):
    from .. import data as dd
    if d.image_shape:
        X, y = dd.make_images(d.num_samples, d.num_classes, tuple(d.image_shape), seed=seed)
    else:
        X, y = dd.make_classification(d.num_samples, d.num_features, d.num_classes, seed=seed)
    return from_arrays(d, X, y, None, "synthetic", seed, dtype, integer_labels)


def _text_check(values, check_files):
    if check_files and values["path"] and not os.path.isfile(values["path"]):
        return "path", f"no such file: {values['path']}."
    return None


@register_data_source("text", params=[PATH, Key("block_size", "int", 64, "text: tokens per sample (the model's "
                                                 "context length).", low=1)],
                      task="language_model", check=_text_check)
def _text(d, seed, dtype, integer_labels=True):
    """Characters of a text file: the first (1 - val_fraction) for training, as every contiguous
    block of block_size tokens (the shuffled sampler draws random ones), the rest for validation
    as non-overlapping blocks (each token predicted once). The vocabulary goes to vocab.json."""
    from .. import data as dd
    text = dd.load_text(d.path or None)
    what = f"text {d.path}" if d.path else "Tiny Shakespeare (shipped)"
    tok = dd.CharTokenizer.from_text(text)
    ids = tok.encode(text)
    t = d.block_size
    n_train = int(len(ids) * (1 - d.val_fraction))
    train_ids, val_ids = ids[:n_train], ids[n_train:]
    if d.max_train_samples:
        train_ids = train_ids[:d.max_train_samples + t]
    if len(train_ids) <= t:
        raise DataError(f"{what}: {len(train_ids)} training characters leave no block of block_size {t} "
                        f"(with its next-character target)")
    train = dd.TokenBlocks(train_ids, t)
    starts = np.arange(max(len(val_ids) - 1, 0) // t) * t
    if d.max_val_samples:
        starts = starts[:d.max_val_samples]
    window = starts[:, None] + np.arange(t)
    xv, yv = val_ids[window], val_ids[window + 1]
    return JobData(train.arrays[0], train.arrays[1], xv, yv, (t,), tok.vocab_size,
                   f"{what}: {len(ids):,} characters, vocabulary of {tok.vocab_size}; {len(train):,} training "
                   f"blocks / {len(xv):,} validation blocks of {t}", train_set=train,
                   files={"vocab.json": tok.to_json() + "\n"})
