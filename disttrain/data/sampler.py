"""`DistributedSampler`: each rank's share of the sample indices.

Rank r takes every num_replicas-th index starting at r from one permutation
that every rank computes identically (seeded by ``seed + epoch``), so the
shards are disjoint and together cover the dataset. When the length does not
divide evenly the permutation is padded by wrapping around to its start
(a few samples are seen twice per epoch), or, with ``drop_last=True``,
truncated (a few are skipped). Follows torch.utils.data.DistributedSampler.
"""
import math
import operator

import numpy as np


class DistributedSampler:
    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if isinstance(dataset, (int, np.integer)) and not isinstance(dataset, bool):
            n = int(dataset)
        elif hasattr(dataset, "__len__"):
            n = len(dataset)
        else:
            raise TypeError(f"DistributedSampler: expected a dataset length or a sized dataset, "
                            f"got {type(dataset).__name__}")
        if n < 0:
            raise ValueError(f"DistributedSampler: dataset length must be >= 0, got {n}")
        if num_replicas is None or rank is None:
            from .. import distributed as dist
            if num_replicas is None:
                num_replicas = dist.get_world_size()
            if rank is None:
                rank = dist.get_rank()
        num_replicas, rank = operator.index(num_replicas), operator.index(rank)
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is outside [0, {num_replicas - 1}]")
        self.dataset_len = n
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        if self.drop_last:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch):
        """Reshuffle for ``epoch`` (call on every rank with the same value before iterating)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 array."""
        n = self.dataset_len
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:
            if n == 0:
                return np.empty(0, np.int64)
            order = np.resize(order, self.total_size)    # wraps around, repeating as often as needed
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(len={self.dataset_len}, num_replicas={self.num_replicas}, rank={self.rank}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")
