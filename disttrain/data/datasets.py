"""Real datasets that work offline: the shipped 8x8 digits, .npz files, MNIST-format IDX files.

Every loader returns ``(X, y)`` with X float32 scaled to [0, 1] and y int64.
Problems with a file raise `DataFileError` naming the file and what is wrong;
nothing is ever unpickled.
"""
import gzip
import os
import zipfile
from importlib import resources

import numpy as np

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataFileError(ValueError):
    """A data file is missing, unreadable or malformed (the message names the file)."""


def load_digits():
    """The 8x8 handwritten digits (UCI; 1,797 samples) shipped with disttrain.

    Returns X float32 (1797, 64) in [0, 1] (pixel counts 0..16 divided by 16)
    and y int64 (1797,) in 0..9. Source and licence: disttrain/data/files/README.md.
    """
    ref = resources.files("disttrain.data").joinpath("files", "digits.csv.gz")
    try:
        with ref.open("rb") as raw, gzip.open(raw, "rt") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"cannot read the shipped digits data {ref}: {exc}") from exc
    if table.shape != (1797, 65):
        raise DataFileError(f"{ref}: expected a 1797 x 65 table, found {table.shape}")
    return np.ascontiguousarray(table[:, :64] / np.float32(16.0)), table[:, 64].astype(np.int64)


def load_npz(path, x_key="x", y_key="y"):
    """(X, y) from the arrays ``x_key``/``y_key`` of an .npz file (no pickles), as stored."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in (x_key, y_key) if k not in archive.files]
            if missing:
                raise DataFileError(f"{path}: no array named {', '.join(map(repr, missing))}; "
                                    f"it holds {', '.join(map(repr, archive.files)) or 'nothing'}")
            X, y = archive[x_key], archive[y_key]
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(f"{path}: not a readable .npz file of plain arrays ({exc})") from exc
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise DataFileError(f"{path}: {x_key!r} has shape {X.shape} and {y_key!r} has shape {y.shape}; "
                            "they need the same number of samples along axis 0")
    return X, y


def read_idx(path):
    """The array in an IDX file (the MNIST format), gzip-compressed or not."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            data = gzip.GzipFile(fileobj=f).read() if head == b"\x1f\x8b" else f.read()
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{path}: cannot read ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFileError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty file'})")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataFileError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions declared)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataFileError(f"{path}: IDX header declares shape {shape} ({expected} bytes of data), "
                            f"file holds {len(data) - header} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(images_path, labels_path):
    """(X, y) from an MNIST-format pair: X float32 (n, 1, rows, cols) scaled to [0, 1], y int64 (n,)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataFileError(f"{images_path}: expected images of shape (n, rows, cols), found {images.shape}")
    if labels.ndim != 1:
        raise DataFileError(f"{labels_path}: expected labels of shape (n,), found {labels.shape}")
    if len(images) != len(labels):
        raise DataFileError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(max(float(images.max()), 1.0))
    X = (images.astype(np.float32) / scale)[:, None, :, :]
    return X, labels.astype(np.int64)


def load_fashion_mnist(root=FASHION_MNIST_ROOT, split="train"):
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (or any directory of the
    four original IDX files, gzipped or not). ``split``: "train" (60,000) or "test" (10,000)."""
    prefixes = {"train": "train", "test": "t10k"}
    if split not in prefixes:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataFileError(f"Fashion-MNIST not found: {root} does not exist (install the Debian package "
                            f"dataset-fashion-mnist: `apt-get install dataset-fashion-mnist`, or pass root=)")

    def find(kind):
        base = os.path.join(root, f"{prefixes[split]}-{kind}")
        for candidate in (base, base + ".gz"):
            if os.path.exists(candidate):
                return candidate
        raise DataFileError(f"Fashion-MNIST {split} {kind.split('-')[0]} not found: neither {base} nor {base}.gz "
                            f"exists (Debian package dataset-fashion-mnist installs them in {FASHION_MNIST_ROOT})")

    return load_idx(find("images-idx3-ubyte"), find("labels-idx1-ubyte"))
