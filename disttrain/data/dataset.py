"""Datasets over in-memory numpy arrays, and a train/validation split."""
import numpy as np

from ..autograd.tensor import Tensor


class ArrayDataset:
    """Samples are rows of equally long arrays: ``ds[i] -> (x[i], y[i], ...)``.

    Indexing with an integer array gathers a whole batch at once (fancy
    indexing), which is how `DataLoader` builds batches.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        arrays = tuple(np.asarray(a.data if isinstance(a, Tensor) else a) for a in arrays)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"ArrayDataset: array {i} is a scalar; every array needs a leading sample axis")
        lengths = [len(a) for a in arrays]
        if len(set(lengths)) != 1:
            shapes = ", ".join(f"array {i}: {a.shape}" for i, a in enumerate(arrays))
            raise ValueError(f"ArrayDataset: arrays have different numbers of samples ({shapes})")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __repr__(self):
        shapes = ", ".join(f"{a.shape} {a.dtype}" for a in self.arrays)
        return f"{type(self).__name__}({len(self)} samples: {shapes})"


TensorDataset = ArrayDataset


def train_val_split(X, y, val_fraction=0.2, seed=0):
    """Shuffle once with ``seed`` and split: returns (X_train, y_train, X_val, y_val)."""
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"train_val_split: X has {len(X)} samples, y has {len(y)}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction!r}")
    order = np.random.default_rng(seed).permutation(len(X))
    n_val = int(round(len(X) * float(val_fraction)))
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], X[val], y[val]
