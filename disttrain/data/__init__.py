"""Data: datasets over numpy arrays, a seeded DataLoader, offline real data, synthetic data."""
from .dataset import ArrayDataset, TensorDataset, train_val_split
from .loader import DataLoader
from .datasets import (DataFileError, load_digits, load_npz, read_idx, load_idx, load_fashion_mnist,
                       FASHION_MNIST_ROOT)
from .synthetic import make_classification, make_images
from .text import CharTokenizer, TokenBlocks, load_text

__all__ = [
    "ArrayDataset", "TensorDataset", "train_val_split", "DataLoader", "DataFileError", "load_digits",
    "load_npz", "read_idx", "load_idx", "load_fashion_mnist", "FASHION_MNIST_ROOT", "make_classification",
    "make_images", "CharTokenizer", "TokenBlocks", "load_text",
]


def __getattr__(name):
    # DistributedSampler lives in .sampler (the distributed layer's); loaded on first use.
    if name == "DistributedSampler":
        from .sampler import DistributedSampler
        return DistributedSampler
    raise AttributeError(f"module 'disttrain.data' has no attribute {name!r}")
