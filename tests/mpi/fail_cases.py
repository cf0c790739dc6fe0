"""Jobs that must END (non-zero, within seconds) instead of hanging.

mpiexec -n N python tests/mpi/fail_cases.py MODE
  raise:     the last rank raises an uncaught exception while the others wait in an allreduce
  exit:      rank 1 calls sys.exit(3) while the others wait in an allreduce
  mismatch:  the last rank builds a different model; nobody catches DDP's error
  stall:     the last rank sleeps; the others' stall detector (0.5 s, stall_abort=True) ends the job
"""
import sys
import time

import numpy as np

import disttrain as dt
import disttrain.distributed as dist

mode = sys.argv[1]
group = dist.init(stall_timeout=0.5, stall_abort=True) if mode == "stall" else dist.init()
rank, n = group.rank, group.size
dist.all_reduce(np.ones(2))           # everyone is up and connected

if mode == "raise":
    if rank == n - 1:
        raise ValueError("deliberate failure in the training loop")
    dist.all_reduce(np.ones(2))       # would wait forever for the dead rank
elif mode == "exit":
    if rank == 1:
        sys.exit(3)
    dist.all_reduce(np.ones(2))
elif mode == "mismatch":
    width = 8 + (rank == n - 1)
    model = dt.nn.Sequential(dt.nn.Linear(3, width), dt.nn.Linear(width, 2))
    dist.DistributedDataParallel(model)
    dist.all_reduce(np.ones(2))
elif mode == "stall":
    if rank == n - 1:
        time.sleep(30)
    dist.all_reduce(np.ones(2))
else:
    raise SystemExit(f"unknown mode {mode!r}")
time.sleep(30)                        # only reached if the job did not end
print(f"rank {rank}: still running", flush=True)
