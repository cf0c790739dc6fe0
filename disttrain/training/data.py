"""The [data] section made concrete: (train, validation) arrays, one sample's shape, classes.

Sources a config can name are registered here (``[data] source = "digits"``); a new one is one
`register_data_source` in a module listed in ``[job] imports``. A loader gets the validated
[data] section, the seed and the dtype and returns a `JobData` (`from_arrays` does the common
part for (X, y) sources: integer labels, split, truncation, normalisation).
"""
import os
from dataclasses import dataclass, field

import numpy as np

from .config import MAX_INFERRED_CLASSES, Key
from .limits import check_fits, elements
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


def from_arrays(d, X, y, val, what, seed, dtype, integer_labels=True, keyed=False):
    """JobData from (X, y) and an optional (x_val, y_val): check inputs and labels (as stored, before
    any split, so sample numbers match the file), split, truncate, normalise. ``keyed``: name the npz
    arrays in messages."""
    from .. import data as dd
    X = np.asarray(X)
    y = np.asarray(y)
    _check_inputs(X, f"{what} [x_key {d.x_key!r}]" if keyed else what, "training" if val is not None else "")
    labels = f"{what} [y_key {d.y_key!r}]" if keyed else what
    if integer_labels:
        y = _check_labels(y, labels, len(X))
    else:
        _check_targets(y, labels, len(X))
    if val is not None:
        xv, yv = np.asarray(val[0]), np.asarray(val[1])
        _check_inputs(xv, f"{what} (test split)", "test", allow_empty=True)
        if xv.shape[1:] != X.shape[1:]:
            raise DataError(f"{what}: test samples have shape {xv.shape[1:]}, training samples {X.shape[1:]}")
        val = xv, (_check_labels(yv, f"{what} (test split)", len(xv)) if integer_labels
                   else _check_targets(yv, f"{what} (test split)", len(xv)))
    if integer_labels:
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
    if integer_labels:
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
    _check_npz_size(d.path, d.x_key)
    X, y = dd.load_npz(d.path, d.x_key, d.y_key)
    return from_arrays(d, X, y, None, d.path, seed, dtype, integer_labels, keyed=True)


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
    Key("image_shape", "list[int]", [], "synthetic: [channels, height, width] to generate images "
        "instead of feature vectors (empty: vectors)."), NORMALIZE], check=_synthetic_check)
def _synthetic(d, seed, dtype, integer_labels=True):
    from .. import data as dd
    shape = tuple(d.image_shape) if d.image_shape else (d.num_features,)
    check_fits(8 * 3 * d.num_samples * elements(shape), f"synthetic data of {d.num_samples:,} samples of "
               f"shape {shape}", DataError, "lower [data] num_samples, num_features or image_shape.")
    if d.image_shape:
        X, y = dd.make_images(d.num_samples, d.num_classes or 10, tuple(d.image_shape), seed=seed)
    else:
        X, y = dd.make_classification(d.num_samples, d.num_features, d.num_classes or 10, seed=seed)
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


def _check_targets(y, what, n):
    """Regression targets: numbers, one (or a fixed shape of) finite value(s) per input sample."""
    if y.dtype.kind not in "biuf":
        raise DataError(f"{what}: the targets have dtype {y.dtype}; they must be numbers")
    if len(y) != n:
        raise DataError(f"{what}: {n} input samples but {len(y)} targets")
    if 0 in y.shape[1:]:
        raise DataError(f"{what}: the targets have shape {y.shape}, which holds no value per sample")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).all(axis=1))
        raise DataError(f"{what}: the targets hold non-finite value(s) (NaN/inf) in {len(bad)} sample(s), the "
                        f"first at sample {int(bad[0])}; clean or drop them")
    return y


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
