"""``FashionMNIST``/``MNIST`` datasets with torchvision's constructor, over local IDX files only.

``root``: a directory with the four IDX files (``train-images-idx3-ubyte[.gz]``, ...), default the
Debian package's ``/usr/share/datasets/fashion-mnist``. Nothing is downloaded: when the files are
missing, seeded synthetic 28x28 images stand in and a line on stderr says so. The environment
variable ``DISTTRAIN_DATA_LIMIT=N`` keeps the first N samples (quick runs, CI).
"""
import os
import sys

from ..data import ArrayDataset, load_fashion_mnist, make_images, DataFileError, FASHION_MNIST_ROOT


class FashionMNIST(ArrayDataset):
    synthetic_sizes = {"train": 60000, "test": 10000}

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        split = "train" if train else "test"
        root = FASHION_MNIST_ROOT if root is None else os.fspath(root)
        try:
            X, y = load_fashion_mnist(root, split)
            self.synthetic = False
        except DataFileError as exc:
            # One draw for both splits (the same class templates), test images after the training ones.
            n_train, n_test = (self._limit(self.synthetic_sizes[s]) for s in ("train", "test"))
            X, y = make_images(n_train + n_test, 10, (1, 28, 28), seed=0)
            X, y = (X[:n_train], y[:n_train]) if train else (X[n_train:], y[n_train:])
            self.synthetic = True
            ignored = ", download=True ignored" if download else ""
            print(f"disttrain.vision: {type(self).__name__} {split} files not found ({exc}); using {len(X)} "
                  f"synthetic 28x28 images instead (nothing is downloaded{ignored})", file=sys.stderr)
        n = self._limit(len(X))
        X, y = X[:n], y[:n]
        if transform is not None:
            X = transform(X)
        if target_transform is not None:
            y = target_transform(y)
        self.data, self.targets = X, y
        super().__init__(X, y)

    @staticmethod
    def _limit(n):
        limit = os.environ.get("DISTTRAIN_DATA_LIMIT")
        if limit is None:
            return n
        if not limit.isdigit() or int(limit) < 1:
            raise ValueError(f"DISTTRAIN_DATA_LIMIT must be a positive integer, got {limit!r}")
        return min(n, int(limit))


class MNIST(FashionMNIST):
    """The same IDX layout; ``root`` must be given (there is no system-wide MNIST package)."""


__all__ = ["FashionMNIST", "MNIST"]
