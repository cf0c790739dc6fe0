"""torch.distributed names on N ranks: init_process_group, object collectives, mp.spawn.

Prints ``CHECK <name> rank=<r> ok`` or ``... FAIL <why>`` per check (collective, in the
same order on every rank; a failing check is caught so the rest stay in step).
"""
import sys

import numpy as np

import disttrain as torch
import disttrain.distributed as dist
import disttrain.multiprocessing as mp
from disttrain.serialization import SaveError
from checklib import Checks

dist.init_process_group("nccl")                 # any backend name: MPI underneath
RANK, N = dist.get_rank(), dist.get_world_size()
check = Checks(RANK)


def broadcast_objects():
    objs = [{"lr": 0.1, "names": ["a", "b"], 3: (1, 2)}, np.arange(4) * 10, torch.ones(2)] if RANK == 0 \
        else [None, None, None]
    dist.broadcast_object_list(objs, src=0)
    assert objs[0] == {"lr": 0.1, "names": ["a", "b"], 3: (1, 2)}, objs
    np.testing.assert_array_equal(objs[1], np.arange(4) * 10)
    assert isinstance(objs[2], torch.Tensor) and objs[2].tolist() == [1.0, 1.0]


def gather_objects():
    out = [None] * N
    dist.all_gather_object(out, {"rank": RANK, "data": list(range(RANK + 1))})    # different sizes per rank
    assert out == [{"rank": r, "data": list(range(r + 1))} for r in range(N)], out


def refuse_everywhere():
    # Only the last rank holds something unsendable; every rank must raise (nobody left waiting).
    obj = object() if RANK == N - 1 else {"ok": 1}
    try:
        dist.all_gather_object([None] * N, obj)
    except SaveError as e:
        assert f"rank(s) [{N - 1}]" in str(e), str(e)
    else:
        raise AssertionError("all_gather_object sent an arbitrary object")
    objs = [object()] if RANK == 0 else [None]
    try:
        dist.broadcast_object_list(objs)
    except SaveError as e:
        assert "rank 0's objects cannot be sent without pickle" in str(e), str(e)
    else:
        raise AssertionError("broadcast_object_list sent an arbitrary object")


def world_size_mismatch():
    try:
        dist.init_process_group("gloo", world_size=N + 1, rank=RANK)
    except RuntimeError as e:
        assert f"this job has {N} process(es); start it with `dtrun -n {N + 1}" in str(e), str(e)
    else:
        raise AssertionError("a wrong world_size was accepted")


def spawn_runs_on_the_first_nprocs_ranks():
    ran = []
    mp.spawn(lambda rank, tag: ran.append((rank, tag)), args=("x",), nprocs=N)
    assert ran == [(RANK, "x")], ran
    ran.clear()
    mp.spawn(lambda rank: ran.append(rank), nprocs=1)
    assert ran == ([0] if RANK == 0 else []), ran
    try:
        mp.spawn(lambda rank: None, nprocs=N + 1)
    except RuntimeError as e:
        assert f"dtrun -n {N + 1}" in str(e), str(e)
    else:
        raise AssertionError("spawn with more processes than the job has did not raise")


for name, fn in [("broadcast_objects", broadcast_objects), ("gather_objects", gather_objects),
                 ("refuse_everywhere", refuse_everywhere), ("world_size_mismatch", world_size_mismatch),
                 ("spawn", spawn_runs_on_the_first_nprocs_ranks)]:
    check(name, fn)
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
