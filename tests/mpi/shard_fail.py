"""Sharded-optimizer jobs that must END (non-zero, within seconds) when a rank dies mid-step.

mpiexec -n N python tests/mpi/shard_fail.py MODE PATH      (PATH: any | node)
  raise:  the last rank raises inside the UPDATE rule at step 3 while the others reach the
          parameter all-gather (any) or the node barrier that publishes the step (node)
  kill:   the last rank SIGKILLs itself after backward at step 3, the others wait on the
          gradient reduce-scatter (any) or the node barrier before the reduction (node)
"""
import os
import signal
import sys
import time

import numpy as np

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F

mode, path = sys.argv[1], sys.argv[2]
group = dist.init()
rank, n = group.rank, group.size
step = [0]


@dt.optim.register_rule("sgd_that_fails", defaults={"lr": 0.1})
def sgd_that_fails(theta, grad, state, hp):
    if mode == "raise" and rank == n - 1 and step[0] == 3:
        raise ValueError("deliberate failure inside the sharded update")
    theta -= hp["lr"] * grad


dt.manual_seed(0)
model = dist.DistributedDataParallel(dt.nn.Sequential(dt.nn.Linear(8, 32), dt.nn.ReLU(), dt.nn.Linear(32, 4)))
opt = dist.ShardedOptimizer(model, "sgd_that_fails", shared_memory=(path == "node"))
assert opt.node_shared == (path == "node"), repr(opt)
x, y = dt.tensor(np.ones((4, 8), np.float32)), dt.tensor(np.zeros(4, np.int64))
for step[0] in range(6):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    if mode == "kill" and rank == n - 1 and step[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    opt.step()
time.sleep(30)                        # only reached if the job did not end
print(f"rank {rank}: still running", flush=True)
