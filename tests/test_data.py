"""Datasets, the DataLoader, file readers (digits, .npz, IDX, Fashion-MNIST) and synthetic data."""
import gzip
import struct

import numpy as np
import pytest

import disttrain as dt
from disttrain import data


def ids_of(batches):
    return [b[0].numpy().ravel().tolist() for b in batches]


def make_loader(n=10, **kw):
    X = np.arange(n, dtype=np.int64)
    return data.DataLoader(data.ArrayDataset(X, X * 10.0), **kw)


# -- DataLoader -------------------------------------------------------------------
def test_batches_in_order_with_partial_last_batch():
    loader = make_loader(10, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and ids_of(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert isinstance(x, dt.Tensor) and isinstance(y, dt.Tensor)
    np.testing.assert_array_equal(y.numpy(), [0.0, 10.0, 20.0, 30.0])


def test_drop_last():
    loader = make_loader(10, batch_size=4, drop_last=True)
    assert len(loader) == 2 and ids_of(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(make_loader(8, batch_size=4, drop_last=True)) == 2


def test_shuffle_covers_every_sample_once_and_is_deterministic():
    a = make_loader(23, batch_size=5, shuffle=True, seed=3)
    epoch0 = sum(ids_of(a), [])
    assert sorted(epoch0) == list(range(23)) and epoch0 != list(range(23))
    epoch1 = sum(ids_of(a), [])                       # the next pass is the next epoch
    assert sorted(epoch1) == list(range(23)) and epoch1 != epoch0
    b = make_loader(23, batch_size=5, shuffle=True, seed=3)
    b.set_epoch(1)
    assert sum(ids_of(b), []) == epoch1               # order depends only on (seed, epoch)
    b.set_epoch(0)
    assert sum(ids_of(b), []) == epoch0
    c = make_loader(23, batch_size=5, shuffle=True, seed=4)
    assert sum(ids_of(c), []) != epoch0


def test_sampler_sets_the_order_and_gets_set_epoch():
    class Sampler:
        def __init__(self):
            self.epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            return iter([7, 2, 5])

        def __len__(self):
            return 3

    sampler = Sampler()
    loader = make_loader(10, batch_size=2, sampler=sampler)
    loader.set_epoch(4)
    assert sampler.epoch == 4 and len(loader) == 2 and ids_of(loader) == [[7, 2], [5]]
    with pytest.raises(ValueError, match="either shuffle=True or a sampler"):
        make_loader(10, shuffle=True, sampler=sampler)


def test_generic_dataset_and_argument_errors():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i], np.float32), i * i

    (x, y), = list(data.DataLoader(Squares(), batch_size=5))
    np.testing.assert_array_equal(y.numpy(), [0, 1, 4, 9, 16])
    assert x.shape == (5, 1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        make_loader(batch_size=0)
    with pytest.raises(ValueError, match=r"array 0: \(3,\), array 1: \(4,\)"):
        data.ArrayDataset(np.zeros(3), np.zeros(4))


def test_train_val_split():
    X, y = np.arange(20).reshape(10, 2), np.arange(10)
    Xt, yt, Xv, yv = data.train_val_split(X, y, val_fraction=0.3, seed=1)
    assert len(Xv) == 3 and len(Xt) == 7
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(10))
    np.testing.assert_array_equal(Xt[:, 0] // 2, yt)                     # rows stay paired
    again = data.train_val_split(X, y, val_fraction=0.3, seed=1)
    np.testing.assert_array_equal(again[3], yv)
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(X, y, val_fraction=1.0)


# -- real data ---------------------------------------------------------------------
def test_digits_shape_range_and_labels():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.all(np.isin(X * 16, np.arange(17)))          # 0..16 pixel counts / 16
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert X[0].reshape(8, 8)[0].tolist() == [0, 0, 5 / 16, 13 / 16, 9 / 16, 1 / 16, 0, 0] and y[0] == 0


def write_idx(path, array, code=0x08, compress=False):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader(tmp_path, compress):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
    labels = np.array([7, 0, 9], np.uint8)
    ip = write_idx(tmp_path / "img.idx", images, compress=compress)
    lp = write_idx(tmp_path / "lab.idx", labels, compress=compress)
    np.testing.assert_array_equal(data.read_idx(ip), images)
    X, y = data.load_idx(ip, lp)
    assert X.shape == (3, 1, 4, 5) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X[:, 0], images / 255.0, rtol=1e-6)
    assert y.tolist() == [7, 0, 9]
    ints = np.array([[1, -2], [300000, 4]], np.int32)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "i32.idx", ints, code=0x0C)), ints)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(data.DataFileError, match=r"bad.idx: not an IDX file"):
        data.read_idx(bad)
    short = write_idx(tmp_path / "short.idx", np.zeros((2, 3), np.uint8))
    short.write_bytes(short.read_bytes()[:-1])
    with pytest.raises(data.DataFileError, match=r"short.idx: IDX header declares shape \(2, 3\)"):
        data.read_idx(short)
    imgs = write_idx(tmp_path / "imgs.idx", np.zeros((3, 2, 2), np.uint8))
    labs = write_idx(tmp_path / "labs.idx", np.zeros(2, np.uint8))
    with pytest.raises(data.DataFileError, match=r"imgs.idx holds 3 images but .*labs.idx holds 2 labels"):
        data.load_idx(imgs, labs)
    with pytest.raises(data.DataFileError, match="nothere.idx: no such file"):
        data.read_idx(tmp_path / "nothere.idx")


def test_fashion_mnist_missing_and_present(tmp_path):
    with pytest.raises(data.DataFileError, match=r"/nonexistent/fm does not exist .*dataset-fashion-mnist"):
        data.load_fashion_mnist(root="/nonexistent/fm")
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.full((2, 28, 28), 255, np.uint8), compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 1], np.uint8), compress=True)
    X, y = data.load_fashion_mnist(root=tmp_path, split="test")
    assert X.shape == (2, 1, 28, 28) and X.max() == 1.0 and y.tolist() == [3, 1]
    with pytest.raises(data.DataFileError, match="train-images-idx3-ubyte"):
        data.load_fashion_mnist(root=tmp_path, split="train")


def test_load_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.ones((4, 2), np.float32), target=np.arange(4))
    X, y = data.load_npz(path, "features", "target")
    assert X.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(data.DataFileError, match=r"d.npz: no array named 'x', 'y'; it holds 'features', 'target'"):
        data.load_npz(path)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(data.DataFileError, match="obj.npz: not a readable .npz file of plain arrays"):
        data.load_npz(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataFileError, match="junk.npz"):
        data.load_npz(tmp_path / "junk.npz")


# -- synthetic -----------------------------------------------------------------------
def test_synthetic_generators_are_seeded_and_shaped():
    X, y = data.make_classification(200, 16, 4, seed=1)
    assert X.shape == (200, 16) and X.dtype == np.float32 and set(y.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(data.make_classification(200, 16, 4, seed=1)[0], X)
    assert not np.array_equal(data.make_classification(200, 16, 4, seed=2)[0], X)
    # learnable: nearest class mean classifies well above chance
    means = np.stack([X[y == c].mean(0) for c in range(4)])
    assert (np.argmin(((X[:, None] - means) ** 2).sum(-1), 1) == y).mean() > 0.8

    imgs, labels = data.make_images(50, n_classes=10, seed=0)
    assert imgs.shape == (50, 1, 28, 28) and imgs.dtype == np.float32 and labels.dtype == np.int64
    assert 0.0 <= imgs.min() and imgs.max() <= 1.0
    np.testing.assert_array_equal(data.make_images(50, n_classes=10, seed=0)[0], imgs)
