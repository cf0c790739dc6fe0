"""A job for the multi-host failure drills (tests/test_multihost.py).

dtrun -n 4 --hosts h0:2,h1:2 tests/mpi/multihost_cases.py MODE
  sum:   one 800 kB allreduce; every rank prints its host and the sum (10 on 4 ranks)
  loop:  every rank prints "UP rank R pid P host H", then allreduces in a loop for up to
         60 s (the test kills a rank, a host or the link meanwhile); a job that is still
         running then says so and exits 0, which the drills count as a failure to end
"""
import os
import socket
import sys
import time

import numpy as np

import disttrain.distributed as dist

mode = sys.argv[1]
group = dist.init()
rank, n = group.rank, group.size
if mode == "sum":
    a = np.full(100_000, rank + 1.0)
    dist.all_reduce(a)
    assert np.all(a == n * (n + 1) / 2), a[:3]
    print(f"SUM rank={rank} host={socket.gethostname()} value={a[0]:g}", flush=True)
elif mode == "loop":
    a = np.ones(1000)
    dist.all_reduce(a)
    print(f"UP rank {rank} pid {os.getpid()} host {socket.gethostname()}", flush=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        dist.all_reduce(a)
        a[:] = 1.0
        time.sleep(0.02)
    print(f"rank {rank}: still running after 60 s", flush=True)
else:
    raise SystemExit(f"unknown mode {mode!r}")
