"""Workload E: data-parallel weak scaling, disttrain DDP vs PyTorch DDP (gloo).

    mpiexec -n 2 python -m mpi4py bench/scaling.py          # A and C on 2 ranks
    dtrun -n 2 bench/scaling.py A                            # one workload
    mpiexec -n 8 python -m mpi4py bench/scaling.py          # any rank count (on a bigger machine)

Every figure comes from ONE launch, so all phases see the same machine:
  1rank   rank 0 trains the plain model alone; the other ranks sleep-wait
          (a busy-polling MPI wait would steal a core and flatter nothing);
  nrank   every rank trains its shard (per-rank batch as in A/C) under DDP;
  nocomm  every rank trains the plain model at once, no communication: the
          ceiling that memory bandwidth and the shared machine leave.
A third "framework", raw-mpi, is the simplest correct data parallelism on
disttrain's engine: backward, one flat blocking mpi4py Allreduce, step (no
overlap, no buckets) -- what DDP's overlap machinery has to beat.
The phases of both frameworks take turns in rounds. Efficiency (weak scaling)
= median t(1rank) / median t(nrank); an n-rank step time is the slowest rank's
time of that step. PyTorch ranks are these same processes, joined by a gloo
process group over a loopback TCP rendezvous (127.0.0.1).
"""
import common  # noqa: F401  (thread limits before numpy/torch load)
import socket
import sys
import time
import traceback

import numpy as np
from mpi4py import MPI

from common import emit, skip, missing, import_torch, median, STEPS, WARMUP, ROUNDS
import workloads as W

WORLD = MPI.COMM_WORLD
CTL = WORLD.Dup()           # our own control traffic never mixes with DDP's
RANK, SIZE = CTL.Get_rank(), CTL.Get_size()


def sleep_barrier():
    """A barrier that waits by sleeping, not by spinning on a core."""
    req = CTL.Ibarrier()
    while not req.Test():
        time.sleep(0.0005)


CPU = {}             # phase key -> this rank's CPU seconds per step (all threads of the process)


def run_phase(step, n, ranks, key=None):
    """n timed steps on `ranks` ("one" or "all"); returns per-step seconds (max over ranks).

    Also records the process CPU time per step (all threads: a spinning comm
    thread counts), a figure that the load of a shared machine barely moves.
    """
    sleep_barrier()
    ts = np.zeros(n)
    if ranks == "all" or RANK == 0:
        clock = time.perf_counter
        c0 = time.process_time()
        for i in range(n):
            t0 = clock()
            step()
            ts[i] = clock() - t0
        if key is not None:
            CPU.setdefault(key, []).append((time.process_time() - c0) / n)
    out = np.empty_like(ts)
    sleep_barrier()
    CTL.Allreduce(ts, out, op=MPI.MAX)
    return list(out)


def free_port():
    port = 0
    if RANK == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    buf = np.array([port], np.int64)
    CTL.Bcast(buf, root=0)          # buffer API: no pickling
    return int(buf[0])


SYNC_STATS = {}      # workload -> [DDP.last_sync_stats of each 2-rank step] (this rank's)
RAW = WORLD.Dup()    # the raw-MPI reference's own communicator


def raw_mpi_step(name, data):
    """The simplest correct data parallelism, as a reference: plain backward, then
    the gradients scaled by 1/size into one flat buffer, ONE blocking mpi4py
    Allreduce of it (no overlap, no buckets), gradients back as views, SGD step."""
    import disttrain as dt
    F = dt.nn.functional
    model = W.dt_model(name)
    params = list(model.parameters())
    sizes = [p.data.size for p in params]
    offs = np.cumsum([0] + sizes)
    flat = np.empty(int(offs[-1]), np.float32)
    views = [flat[a:b].reshape(p.data.shape) for p, a, b in zip(params, offs[:-1], offs[1:])]
    inv = np.float32(1.0 / SIZE)
    opt = dt.optim.SGD(params, lr=W.LR, momentum=W.MOMENTUM)
    xs = [(dt.tensor(x), y) for x, y in data]
    state = {"i": 0}

    def step():
        x, y = xs[state["i"] % W.POOL]
        state["i"] += 1
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for p, v in zip(params, views):
            np.multiply(p.grad.numpy(), inv, out=v)
        RAW.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        for p, v in zip(params, views):
            p.grad = v
        opt.step()
    return step


def build_dt(name, dist_ok):
    data = W.batches(name, rank=RANK)
    phases = {}
    m1 = W.dt_model(name)
    phases["disttrain/1rank"] = (W.dt_step(m1, data)[0], "one")
    phases["disttrain/nocomm"] = (W.dt_step(W.dt_model(name), data)[0], "all")
    if dist_ok:
        import disttrain as dt
        m2 = W.dt_model(name)
        step2, _, net2 = W.dt_step(m2, data, wrap=dt.DistributedDataParallel)
        stats = SYNC_STATS[name] = []

        def step2_with_stats():
            step2()
            s = getattr(net2, "last_sync_stats", None)
            if s:
                stats.append(s)
        phases["disttrain/nrank"] = (step2_with_stats, "all")
    # The raw-MPI reference shares disttrain's 1rank/nocomm phases (same local engine).
    phases["raw-mpi/nrank"] = (raw_mpi_step(name, data), "all")
    return phases, W.state_arrays(m1)


def build_torch(name, torch, weights):
    import torch.distributed as tdist
    data = W.batches(name, rank=RANK)
    if not tdist.is_initialized():
        import datetime
        # A bounded timeout: a rank that cannot join must not hang the launch.
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}",
                                 rank=RANK, world_size=SIZE, timeout=datetime.timedelta(seconds=60))
    from torch.nn.parallel import DistributedDataParallel as TDDP
    return {
        "torch/1rank": (W.torch_step(W.torch_model(name, torch, weights), data, torch)[0], "one"),
        "torch/nocomm": (W.torch_step(W.torch_model(name, torch, weights), data, torch)[0], "all"),
        "torch/nrank": (W.torch_step(W.torch_model(name, torch, weights), data, torch, wrap=TDDP)[0], "all"),
    }


def bench(name, torch, dist_ok):
    CPU.clear()                         # per workload
    why = missing(*W.NEEDS[name])
    phases = {}
    weights = None
    if why is None:
        phases, weights = build_dt(name, dist_ok)
    if torch is not None:
        if weights is None:             # disttrain's nn not there yet: torch's own seeded init
            torch.manual_seed(common.SEED)
        err = None
        try:
            tphases = build_torch(name, torch, weights)
        except Exception as e:          # noqa: BLE001 -- the peer failing must not cost disttrain's figures
            tphases, err = {}, f"torch DDP (gloo) set-up failed: {type(e).__name__}: {e}"
        ok = np.array([0 if err else 1], np.int32)
        CTL.Allreduce(MPI.IN_PLACE, ok, op=MPI.MIN)      # buffer API; all ranks agree, or none uses torch
        if ok[0]:
            phases.update(tphases)
        elif RANK == 0:
            skip(f"E-{name}", err or "torch DDP (gloo) set-up failed on another rank", framework="torch")
    if not phases:
        return [skip(f"E-{name}", why or "nothing to run")]
    for step, ranks in phases.values():              # warm-up (collective for nrank phases)
        for _ in range(WARMUP):
            run_phase(step, 1, ranks)
    times = {k: [] for k in phases}
    per_round = max(1, -(-max(STEPS, 30) // ROUNDS))
    for r in range(ROUNDS):
        order = list(phases.items())
        if r % 2:
            order.reverse()
        for key, (step, ranks) in order:
            times[key] += run_phase(step, per_round, ranks, key)
    recs = []
    for fw in ("disttrain", "raw-mpi", "torch"):
        base = "disttrain" if fw == "raw-mpi" else fw
        t1, tn = times.get(f"{base}/1rank"), times.get(f"{base}/nocomm")
        t2 = times.get(f"{fw}/nrank")
        if fw == "raw-mpi" and t2 is None:
            continue
        if t1 is None:
            continue
        rec = dict(workload=f"E-{name}", framework=fw, status="ok", ranks=SIZE, unit="ms/step",
                   t_1rank=median(t1) * 1e3, t_nocomm=median(tn) * 1e3,
                   ceiling=median(t1) / median(tn), samples=len(t1))
        for p in ("1rank", "nrank", "nocomm"):       # rank 0's CPU ms per step
            c = CPU.get(f"{fw if p == 'nrank' else base}/{p}")
            if c:
                rec[f"cpu_{p}"] = median(c) * 1e3
        if t2 is not None:
            # efficiency / ceiling: the part of the loss that communication (not the
            # shared machine) is responsible for.
            rec.update(t_nrank=median(t2) * 1e3, efficiency=median(t1) / median(t2),
                       comm_efficiency=median(tn) / median(t2))
        else:
            rec.update(t_nrank=None, efficiency=None,
                       reason="disttrain.DistributedDataParallel / distributed.init not available yet")
        recs.append(rec)
    stats = SYNC_STATS.get(name) or []
    for r in recs:
        if r["framework"] == "disttrain" and stats:
            for key in ("wait_s", "comm_s", "backward_s", "hidden_fraction"):
                vals = [s[key] for s in stats if isinstance(s.get(key), (int, float))]
                if vals:
                    r["ddp_" + key.replace("_s", "_ms") if key.endswith("_s") else "ddp_" + key] = (
                        median(vals) * (1e3 if key.endswith("_s") else 1))
    by = {r["framework"]: r for r in recs}
    if "disttrain" in by and "torch" in by and by["disttrain"].get("efficiency") and by["torch"].get("efficiency"):
        by["disttrain"]["torch_efficiency"] = by["torch"]["efficiency"]
        by["disttrain"]["step_ratio_nrank"] = by["disttrain"]["t_nrank"] / by["torch"]["t_nrank"]
    if "disttrain" in by and "raw-mpi" in by and by["disttrain"].get("efficiency"):
        by["disttrain"]["raw_mpi_efficiency"] = by["raw-mpi"]["efficiency"]
        # < 1: DDP's overlap beats a blocking flat Allreduce after backward; > 1: it costs more.
        by["disttrain"]["step_vs_raw_mpi"] = by["disttrain"]["t_nrank"] / by["raw-mpi"]["t_nrank"]
    if why is not None:
        recs.append(dict(workload=f"E-{name}", framework="disttrain", status="skipped", reason=why))
    return [emit(r) if RANK == 0 else r for r in recs]


def main(argv):
    wanted = [a.upper() for a in argv] or ["A", "C"]
    if SIZE < 2:
        if RANK == 0:
            skip("E", "needs an MPI launch with >= 2 ranks (mpiexec -n 2 ...)")
        return 0
    torch = import_torch()
    dist_ok = missing("dt.distributed.init", "dt.DistributedDataParallel") is None
    if dist_ok:
        import disttrain.distributed as dist
        try:
            dist.init()
        except Exception as e:          # noqa: BLE001
            dist_ok = False
            if RANK == 0:
                print(f"disttrain.distributed.init failed: {e!r}", file=sys.stderr)
    for name in wanted:
        try:
            bench(name, torch, dist_ok)
        except Exception as e:          # noqa: BLE001
            traceback.print_exc()
            if RANK == 0:
                emit(dict(workload=f"E-{name}", status="error", reason=f"{type(e).__name__}: {e}"))
            # A half-finished collective phase cannot be resumed safely: stop here.
            CTL.Abort(1)
    if torch is not None:
        import torch.distributed as tdist
        if tdist.is_initialized():
            tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
