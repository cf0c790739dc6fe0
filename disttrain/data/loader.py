"""`DataLoader`: batches of Tensors gathered by fancy indexing.

Shuffling is a permutation drawn from ``default_rng([seed, epoch])``, so the
order depends only on (seed, epoch): every rank and every rerun sees the same
one. Each pass over the loader uses the current epoch and then advances it;
`set_epoch` sets it explicitly (as a distributed training loop does).
"""
import numpy as np

from ..autograd.tensor import Tensor


def _check_count(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"DataLoader: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


class DataLoader:
    """``for x, y in DataLoader(ArrayDataset(X, y), batch_size=64, shuffle=True, seed=0): ...``

    ``sampler``: any iterable of sample indices with ``__len__`` (e.g. a
    DistributedSampler); it replaces ``shuffle`` and gets ``set_epoch`` calls.
    Datasets with an ``arrays`` attribute (ArrayDataset) are gathered by one
    fancy-indexing operation per array; any other dataset (``__len__`` and
    ``__getitem__`` returning a tuple of arrays) is gathered sample by sample.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=0, drop_last=False, sampler=None):
        self.dataset = dataset
        self.batch_size = _check_count("batch_size", batch_size, 1)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: pass either shuffle=True or a sampler, not both (the sampler sets the order)")
        if sampler is not None and not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
            raise TypeError(f"DataLoader: sampler must be an iterable of indices with __len__, "
                            f"got {type(sampler).__name__}")
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch):
        """Use ``epoch`` for the next pass (and pass it on to the sampler)."""
        self.epoch = _check_count("epoch", epoch, 0)
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def _num_samples(self):
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def __len__(self):
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self, epoch=None):
        """The sample order of one pass (for ``epoch``, default the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        if self.shuffle:
            return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return np.arange(len(self.dataset))

    def __iter__(self):
        order = self.indices()
        self.epoch += 1
        n, bs = len(order), self.batch_size
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            yield self._gather(order[start:start + bs])

    def _gather(self, idx):
        arrays = getattr(self.dataset, "arrays", None)
        if arrays is not None:
            return tuple(Tensor(a[idx]) for a in arrays)
        samples = [self.dataset[int(i)] for i in idx]
        if not isinstance(samples[0], tuple):
            return Tensor(np.stack([np.asarray(s) for s in samples]))
        return tuple(Tensor(np.stack([np.asarray(s[k]) for s in samples])) for k in range(len(samples[0])))

    def __repr__(self):
        sampler = None if self.sampler is None else type(self.sampler).__name__
        return (f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last}, sampler={sampler})")
