"""Workload J: the sharded update (dist.ShardedOptimizer, ZeRO-1) vs plain DDP, MLP-A with Adam.

    mpiexec -n 2 python -m mpi4py bench/sharded.py           # efficiency + sync/update cost
    mpiexec -n 2 python -m mpi4py bench/sharded.py rss MODE  # peak memory of one mode (ddp, node, any)
    mpiexec -n 4 python -m mpi4py bench/sharded.py           # 4 ranks (oversubscribed on 2 cores)

One launch measures, side by side in rounds (alternating order, as bench/scaling.py):
  1rank    rank 0 trains MLP-A (batch 128, Adam) alone, the others sleep-wait
  nocomm   every rank trains it at once without communication: the ceiling of this machine
  ddp      DDP + Adam on every rank (allreduce of 1/N-scaled buckets, N identical updates)
  node     DDP + ShardedOptimizer, node-shared path (one parameter copy in shared memory)
  node-late  the same without early reduction (every bucket reduced after the first node barrier)
  any      DDP + ShardedOptimizer, any-topology path (reduce-scatter, slice update, all-gather)
  torch-zero  PyTorch DDP + ZeroRedundancyOptimizer(Adam) over gloo, when torch is installed
Efficiency = median t(1rank) / median t(mode); an N-rank step time is the slowest rank's.

"sync+update" isolates what follows backward, on gradients already computed: for the sharded
paths, copying each gradient into its bucket (what DDP's hooks do) plus the sharded step (node:
barrier, reduce own slice from the peers' buckets, update it, barrier; any: reduce-scatter,
update, all-gather); the reference is one raw MPI Allreduce (IN_PLACE) of the flat gradient
bytes plus one rank's full local Adam update. Ratio <= 1.0 is the target.

The rss mode builds one configuration per launch (peak RSS is a high-water mark, reset after the
kernels are loaded) and reports the peak, its growth while building MLP-A's model + optimizer
and training 5 steps, and at the end RSS and PSS (shared pages split among the ranks mapping them).
"""
import common  # noqa: F401  (thread limits before numpy loads)
import sys
import time

import numpy as np
from mpi4py import MPI

from common import emit, import_torch, median, STEPS, WARMUP, ROUNDS
import workloads as W

CTL = MPI.COMM_WORLD.Dup()
RANK, SIZE = CTL.Get_rank(), CTL.Get_size()
LR = 1e-3


def sleep_barrier():
    req = CTL.Ibarrier()
    while not req.Test():
        time.sleep(0.0005)


def timed(step, n, ranks):
    sleep_barrier()
    ts = np.zeros(n)
    if ranks == "all" or RANK == 0:
        for i in range(n):
            t0 = time.perf_counter()
            step()
            ts[i] = time.perf_counter() - t0
    out = np.empty_like(ts)
    sleep_barrier()
    CTL.Allreduce(ts, out, op=MPI.MAX)
    return list(out)


EARLY = []       # node path: buckets reduced while waiting at the first node barrier, per step


def build(mode, data):
    """(step, optimizer, ddp or None) for one mode."""
    import disttrain as dt
    import disttrain.distributed as dist
    F = dt.nn.functional
    model = W.dt_model("A")
    net = ddp = None
    if mode in ("1rank", "nocomm"):
        net, opt = model, dt.optim.Adam(model.parameters(), lr=LR)
    else:
        net = ddp = dt.DistributedDataParallel(model)
        if mode == "ddp":
            opt = dt.optim.Adam(model.parameters(), lr=LR)
        else:
            opt = dist.ShardedOptimizer(ddp, dt.optim.Adam, lr=LR, shared_memory=mode.startswith("node"))
            assert opt.node_shared == mode.startswith("node"), repr(opt)
            opt.early_reduction = mode != "node-late"
    xs = [(dt.tensor(x), y) for x, y in data]
    step = W._step_closure(net, opt, F.cross_entropy, xs)[0]
    if mode == "node":                  # how often a rank reduced buckets while waiting for its peer
        inner = step
        EARLY.clear()

        def step():
            inner()
            EARLY.append(opt.last_step_stats["reduced_early"])
    return step, opt, ddp


def build_torch_zero(torch, data, weights):
    import datetime
    import torch.distributed as tdist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as TDDP
    from scaling import free_port
    if not tdist.is_initialized():
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=RANK,
                                 world_size=SIZE, timeout=datetime.timedelta(seconds=60))
    model = W.torch_model("A", torch, weights)
    net = TDDP(model)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=LR)
    xs = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    return W._step_closure(net, opt, torch.nn.functional.cross_entropy, xs)[0]


# -- sync + update in isolation ------------------------------------------------------------------
def sync_update_sharded(step, opt, ddp):
    """After one real step (gradients in place), a closure repeating what follows backward."""
    from disttrain.distributed import shared_memory as shm
    step()
    params = ddp._params
    grads = [np.array(p.grad.data) for p in params]        # this rank's local gradients, kept aside

    def run():
        for i, (p, g) in enumerate(zip(params, grads)):
            b, k = ddp._where[i]
            if b.solo:                       # DDP adopts the gradient array: no copy
                b.adopt(g)
            else:
                b.views[k][...] = g
            p._grad = b.views[k]
        for pc in opt._pieces:
            if not opt.node_shared:
                shm.ireduce_scatter(opt.group, pc.bucket.buffer, pc.grad, pc.counts, "bench reduce-scatter").wait()
            pc.reduced = True
        opt.step()
    return run


def sync_update_reference(step, opt, model_params):
    """One raw Allreduce of the flat gradient bytes + one rank's full local Adam update."""
    step()
    flat = np.concatenate([np.asarray(p.grad.data).reshape(-1) for p in model_params])
    views, off = [], 0
    for p in model_params:
        views.append(flat[off:off + p.data.size].reshape(p.data.shape))
        off += p.data.size
    comm = CTL.Dup()

    def run():
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        for p, v in zip(model_params, views):
            p._grad = v
        opt.step()
    return run


def main_timing():
    import disttrain.distributed as dist
    dist.init()
    data = W.batches("A", rank=RANK)
    phases = {}
    for mode, ranks in (("1rank", "one"), ("nocomm", "all"), ("ddp", "all"), ("node", "all"), ("node-late", "all"),
                        ("any", "all")):
        step, opt, ddp = build(mode, data)
        phases[mode] = (step, ranks, opt, ddp)
    torch = import_torch()
    if torch is not None:
        try:
            weights = W.state_arrays(W.dt_model("A"))
            phases["torch-zero"] = (build_torch_zero(torch, data, weights), "all", None, None)
        except Exception as e:          # noqa: BLE001 -- the peer failing must not cost our figures
            if RANK == 0:
                print(f"torch ZeroRedundancyOptimizer set-up failed: {e!r}", file=sys.stderr)
    ok = np.array([1 if "torch-zero" in phases or torch is None else 0], np.int32)
    CTL.Allreduce(MPI.IN_PLACE, ok, op=MPI.MIN)
    if not ok[0]:
        phases.pop("torch-zero", None)
    for step, ranks, _, _ in phases.values():
        for _ in range(WARMUP):
            timed(step, 1, ranks)
    times = {k: [] for k in phases}
    per_round = max(1, -(-max(STEPS, 30) // ROUNDS))
    for r in range(ROUNDS):
        order = list(phases.items()) if r % 2 == 0 else list(reversed(phases.items()))
        for key, (step, ranks, _, _) in order:
            times[key] += timed(step, per_round, ranks)
    t1 = median(times["1rank"])
    rec = dict(workload="J", ranks=SIZE, oversubscribed=SIZE > common_cores(), optimizer="adam",
               t_1rank_ms=t1 * 1e3, samples=len(times["1rank"]))
    for k in phases:
        if k != "1rank":
            rec[f"t_{k}_ms"] = median(times[k]) * 1e3
            rec[f"eff_{k}"] = t1 / median(times[k])
    node_opt = phases["node"][2]
    rec["window_bytes"] = node_opt.window_bytes
    rec["node_buckets"] = len(node_opt._pieces)
    rec["node_reduced_early_mean"] = float(np.mean(EARLY)) if EARLY else None
    rec["param_bytes"] = int(sum(p.data.nbytes for p in phases["ddp"][3]._params))

    # sync + update, alternating the three closures
    runs = {"node": sync_update_sharded(phases["node"][0], phases["node"][2], phases["node"][3]),
            "any": sync_update_sharded(phases["any"][0], phases["any"][2], phases["any"][3]),
            "reference": sync_update_reference(phases["nocomm"][0], phases["nocomm"][2],
                                               phases["nocomm"][2].param_groups[0]["params"])}
    for fn in runs.values():
        for _ in range(WARMUP):
            timed(fn, 1, "all")
    st = {k: [] for k in runs}
    for r in range(ROUNDS):
        order = list(runs.items()) if r % 2 == 0 else list(reversed(runs.items()))
        for key, fn in order:
            st[key] += timed(fn, per_round, "all")
    for k in runs:
        rec[f"sync_update_{k}_ms"] = median(st[k]) * 1e3
    rec["sync_update_ratio_node"] = rec["sync_update_node_ms"] / rec["sync_update_reference_ms"]
    rec["sync_update_ratio_any"] = rec["sync_update_any_ms"] / rec["sync_update_reference_ms"]
    if RANK == 0:
        emit(rec)
    if "torch-zero" in phases:
        import torch.distributed as tdist
        tdist.destroy_process_group()


def common_cores():
    from disttrain.distributed.threads import cores
    return cores()


def _proc_kib(field, path="/proc/self/status"):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def main_rss(mode):
    """Peak memory of training MLP-A in one mode: kernels are loaded first on a small model (B), the
    high-water mark is reset (/proc/self/clear_refs), then the mode's model, optimizer and 5 steps."""
    import disttrain as dt
    import disttrain.distributed as dist
    dist.init()
    small = W.dt_model("B")
    sopt = dt.optim.Adam(small.parameters(), lr=LR)
    for x, y in W.batches("B", rank=RANK)[:2]:
        sopt.zero_grad()
        dt.nn.functional.cross_entropy(small(dt.tensor(x)), y).backward()
        sopt.step()
    data = W.batches("A", rank=RANK)
    sleep_barrier()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                     # VmHWM := VmRSS
    except OSError:
        pass
    before = _proc_kib("VmRSS")
    step, opt, ddp = build(mode, data)
    for _ in range(5):
        step()
    sleep_barrier()
    state = sum(v.nbytes for st in opt.state.values() for v in st.values() if isinstance(v, np.ndarray))
    row = np.array([_proc_kib("VmHWM"), before, _proc_kib("VmRSS"), _proc_kib("Pss", "/proc/self/smaps_rollup"),
                    state], np.int64)
    rows = np.empty((SIZE, row.size), np.int64)
    CTL.Allgather(row, rows)
    if RANK == 0:
        emit(dict(workload="J-rss", mode=mode, ranks=SIZE, optimizer="adam",
                  peak_rss_mib=[round(x / 1024, 1) for x in rows[:, 0]],
                  peak_growth_mib=[round((a - b) / 1024, 1) for a, b in zip(rows[:, 0], rows[:, 1])],
                  rss_end_mib=[round(x / 1024, 1) for x in rows[:, 2]],
                  pss_end_mib=[round(x / 1024, 1) for x in rows[:, 3]],
                  optimizer_state_mib=[round(x / 2**20, 2) for x in rows[:, 4]]))
    if getattr(opt, "close", None):
        opt.close()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "rss":
        main_rss(sys.argv[2])
    else:
        main_timing()
