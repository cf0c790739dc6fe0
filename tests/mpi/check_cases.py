"""Jobs for the collective check and the stall report (tests/test_collective_check.py).

mpiexec -n N python tests/mpi/check_cases.py MODE
  skip-caught:   the last rank skips one allreduce; every rank catches CollectiveMismatchError,
                 prints it, and the job goes on (one more allreduce must sum to N)
  shape-caught:  the last rank passes a longer array; same as above
  shape:         the same, uncaught: the job must end
  deadlock:      default settings (stall abort on), stall timeout 2 s: rank 1 returns from the
                 program, rank 2 (if any) sleeps, rank 0 waits in an allreduce; the job must end
  other-op:      check off, stall timeout 2 s: rank 1 waits in a broadcast, rank 0 in an allreduce
  quiet-wait:    rank 1 sleeps 6 s; rank 0 waits for it and prints the CPU seconds it used between
                 2 s and 6 s into the wait (a spinning wait would use most of that time)
"""
import sys
import threading
import time

import numpy as np

import disttrain.distributed as dist

mode = sys.argv[1]
kw = {}
if mode in ("deadlock", "other-op"):
    kw["stall_timeout"] = 2.0
if mode == "other-op":
    kw["check_collectives"] = False
group = dist.init(**kw)
rank, n = group.rank, group.size
last = n - 1
dist.all_reduce(np.ones(3))


def caught(call):
    try:
        call()
    except dist.CollectiveMismatchError as exc:
        print(f"CAUGHT rank={rank} {exc}", flush=True)
    else:
        print(f"NOT CAUGHT rank={rank}", flush=True)
    total = dist.all_reduce(np.ones(1))          # the job is still consistent
    print(f"AFTER rank={rank} sum={total[0]:g}", flush=True)


if mode == "skip-caught":
    def skip():
        if rank != last:
            dist.all_reduce(np.ones(3))
        dist.all_reduce(np.ones(5))
    caught(skip)
elif mode == "shape-caught":
    caught(lambda: dist.all_reduce(np.ones(4 + (rank == last))))
elif mode == "shape":
    dist.all_reduce(np.ones(4 + (rank == last)))
elif mode == "deadlock":
    if rank == 1:
        sys.exit(0)
    if rank == 2:
        time.sleep(30)
    dist.all_reduce(np.ones(3))
elif mode == "other-op":
    if rank == 1:
        dist.broadcast(np.ones(2), src=0)
    else:
        dist.all_reduce(np.ones(3))
elif mode == "quiet-wait":
    if rank == 1:
        time.sleep(6)
    else:
        cpu = {}
        t0 = time.monotonic()

        def sample():
            for at in (2.0, 6.0):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                cpu[at] = time.process_time()
        th = threading.Thread(target=sample)
        th.start()
    dist.all_reduce(np.ones(3))
    if rank == 0:
        th.join()
        print(f"WAITCPU {cpu[6.0] - cpu[2.0]:.3f}", flush=True)
else:
    raise SystemExit(f"unknown mode {mode!r}")
if mode in ("shape", "deadlock", "other-op"):
    time.sleep(30)                        # only reached if the job did not end
    print(f"rank {rank}: still running", flush=True)
