"""DistributedSampler in one process, with explicit num_replicas/rank (multi-rank: test_distributed)."""
import numpy as np
import pytest

from disttrain.data import DataLoader, ArrayDataset, DistributedSampler


def shards(n, replicas, **kw):
    out = []
    for r in range(replicas):
        s = DistributedSampler(n, num_replicas=replicas, rank=r, **kw)
        out.append(list(s))
        assert len(s) == len(out[-1])
    return out


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (5, 1), (2, 4), (7, 7)])
def test_shards_are_disjoint_cover_and_padded_by_wraparound(n, replicas):
    parts = shards(n, replicas, shuffle=True, seed=5)
    per = -(-n // replicas)
    assert all(len(p) == per for p in parts)
    flat = [i for p in parts for i in p]
    assert set(flat) == set(range(n))
    # the padded permutation = permutation followed by its own start
    order = np.random.default_rng([5, 0]).permutation(n)
    padded = np.resize(order, per * replicas)
    for r, p in enumerate(parts):
        assert p == padded[r::replicas].tolist()
    if n % replicas == 0:
        assert len(flat) == len(set(flat))


def test_no_shuffle_is_strided_like_torch():
    assert shards(10, 3, shuffle=False) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]


def test_drop_last_truncates_to_equal_disjoint_shards():
    parts = shards(10, 3, shuffle=False, drop_last=True)
    assert parts == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    parts = shards(11, 4, shuffle=True, seed=1, drop_last=True)
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)) == 8


def test_set_epoch_reshuffles_identically_on_every_rank():
    a = [DistributedSampler(20, num_replicas=2, rank=r, seed=9) for r in range(2)]
    first = [list(s) for s in a]
    for s in a:
        s.set_epoch(1)
    second = [list(s) for s in a]
    assert first != second
    assert sorted(second[0] + second[1]) == list(range(20))
    b = DistributedSampler(20, num_replicas=2, rank=1, seed=9)
    b.set_epoch(1)
    assert list(b) == second[1]                       # same seed + epoch -> same shard
    c = DistributedSampler(20, num_replicas=2, rank=1, seed=10)
    c.set_epoch(1)
    assert list(c) != second[1]


def test_accepts_a_sized_dataset_and_defaults_to_the_process_group():
    ds = ArrayDataset(np.zeros((6, 2)), np.arange(6))
    s = DistributedSampler(ds, shuffle=False)        # single-process group: rank 0 of 1
    assert (s.num_replicas, s.rank, list(s)) == (1, 0, list(range(6)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank 3 is outside"):
        DistributedSampler(10, num_replicas=3, rank=3)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="dataset length"):
        DistributedSampler(object(), num_replicas=1, rank=0)


def test_dataloader_uses_the_sampler_and_passes_set_epoch_on():
    X = np.arange(10, dtype=np.float32).reshape(10, 1)
    ds = ArrayDataset(X, np.arange(10))
    s = DistributedSampler(ds, num_replicas=2, rank=1, seed=4)
    dl = DataLoader(ds, batch_size=2, sampler=s)
    dl.set_epoch(3)
    got = np.concatenate([np.asarray(y) for _, y in dl]).tolist()
    assert got == list(s) and s.epoch == 3 and len(got) == 5
