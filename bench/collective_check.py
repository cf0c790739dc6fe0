"""Cost of the collective check (issue 8): a descriptor allgather before each collective.

    mpiexec -n 2 python bench/collective_check.py

Alternates check on / off in one process (same load for both), reporting medians:
* per collective: a blocking all_reduce of 8 floats (latency-bound) and of 1 MiB;
* per DDP step: the digits MLP 64-128-10 step (batch 32 per rank), DDP's bucket
  allreduces checked like any collective.
Prints one JSON line per result on rank 0.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (thread limits before numpy loads)
from common import median  # noqa: E402

import numpy as np  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.distributed as dist  # noqa: E402
from disttrain.distributed.collective_check import CollectiveChecker  # noqa: E402

group = dist.init(check_collectives=False)
RANK = group.rank
ROUNDS, REPS = (3, 50) if common.QUICK else (7, 200)


def with_check(on):
    group.engine.checker = CollectiveChecker(group.comm, "all") if on else None


def time_allreduce(n):
    buf = np.ones(n, np.float32)
    dist.barrier()
    t = time.perf_counter()
    for _ in range(REPS):
        dist.all_reduce(buf)
    return (time.perf_counter() - t) / REPS


def ddp_step_timer():
    dt.manual_seed(0)
    model = dist.DistributedDataParallel(dt.nn.Sequential(dt.nn.Linear(64, 128), dt.nn.ReLU(), dt.nn.Linear(128, 10)))
    opt = dt.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = dt.nn.CrossEntropyLoss()
    rng = np.random.default_rng(RANK)
    x = dt.tensor(rng.random((32, 64), np.float32))
    y = dt.tensor(rng.integers(0, 10, 32))

    def run(steps):
        dist.barrier()
        t = time.perf_counter()
        for _ in range(steps):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t) / steps
    return run


ddp_run = ddp_step_timer()
cases = {"all_reduce 8 floats": lambda: time_allreduce(8),
         "all_reduce 1 MiB": lambda: time_allreduce(1 << 18),
         "DDP step digits MLP": lambda: ddp_run(REPS // 4)}
results = {name: {False: [], True: []} for name in cases}
for name, fn in cases.items():
    with_check(False)
    fn()                                       # warm-up
    for _ in range(ROUNDS):
        for on in (False, True):
            with_check(on)
            results[name][on].append(fn())
with_check(False)
if RANK == 0:
    for name, r in results.items():
        off, on = median(r[False]) * 1e3, median(r[True]) * 1e3
        print(json.dumps({"bench": "collective_check", "case": name, "ranks": group.size,
                          "off_ms": round(off, 4), "on_ms": round(on, 4), "added_ms": round(on - off, 4),
                          "ratio": round(on / off, 3)}), flush=True)
