"""Gradient-synchronisation cost of DistributedDataParallel (issue 3's benchmark).

    mpiexec -n 2 python bench/ddp_sync.py        (BENCH_QUICK=1 for a smoke run)

For the MLP 784-1024-1024-10 (batch 128 per rank) and a LeNet-style CNN
(batch 64 per rank), on every rank at once:

* ``local``: the same training step without DDP (no communication);
* DDP step time for each progress mode (communication thread / Test() from
  hooks), wait mode (spin / sleep) and ``bucket_cap_mb``;
* ``sync cost`` = DDP step - local step, against ``raw allreduce``: one
  blocking mpi4py ``Allreduce`` of a float32 buffer as large as all gradients;
* ``hidden``: the fraction of the allreduces' time that overlapped backward
  compute (from DDP's per-step timestamps), and ``exposed``: time spent
  waiting for buckets after backward.

Two readings of "the time DDP spends syncing" (issue 5, workload F), both printed:

1. ``isolated`` (probe="isolated"): DDP's sync machinery alone. The loss is
   an op whose backward hands every parameter a copy of a constant (all
   gradients ready at once, for one memcpy of compute), both ranks start
   backward together (a barrier in a hook on the loss), so a DDP backward
   minus the same backward without DDP = copy-in + bucket allreduces +
   write-back. Compared with ONE
   blocking mpi4py Allreduce of a buffer of all gradients' bytes
   (``sync_vs_raw``, target <= 1.10), and with ``raw-mpi``: the same
   backward, then the gradients scaled into one flat buffer and one blocking
   Allreduce (what DDP's buckets have to match).
2. ``in training`` (the table's ``sync ms``/``exposed ms``/``hidden``): during
   real training steps, DDP step - local step, the time the main thread
   waited for buckets after backward, and the fraction of allreduce time
   hidden behind backward compute.

Prints one JSON line per result (rank 0) and tables at the end.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (thread limits before numpy loads)
from common import median  # noqa: E402
import workloads  # noqa: E402

import numpy as np  # noqa: E402

import disttrain.distributed as dist  # noqa: E402
from disttrain.autograd.function import Function  # noqa: E402
from disttrain.distributed.process_group import ProcessGroup  # noqa: E402
from disttrain.distributed.progress import ProgressEngine  # noqa: E402

QUICK = common.QUICK
STEPS = int(os.environ.get("BENCH_STEPS", "8" if QUICK else "40"))
ROUNDS = 2 if QUICK else 5
WARMUP = 3
MODELS = {"mlp": ("A", 128), "lenet": ("C", 64)}

group = dist.init()
RANK, N = group.rank, group.size
comm = group.comm


def make_group(threaded, wait):
    """A process group over the same communicator with its own progress engine."""
    if threaded and not comm.thread_level_multiple:
        return None
    return ProcessGroup(comm, ProgressEngine(comm, threaded, wait, group.stall), group.stall, group.thread_limits)


def build(model_key, batch, wrap):
    model = workloads.dt_model(model_key)
    data = workloads.batches(model_key, batch=batch, rank=RANK)
    step, state, net = workloads.dt_step(model, data, wrap=wrap)
    for _ in range(WARMUP):
        step()
    return dict(step=step, net=net if wrap is not None else None, model=model, times=[], stats=[])


def time_rounds(runs):
    """Alternate the configurations in rounds so the drift of a shared machine hits all alike."""
    per_round = max(1, STEPS // ROUNDS)
    for r in range(ROUNDS):
        order = runs if r % 2 == 0 else runs[::-1]
        for run in order:
            dist.barrier()
            for _ in range(per_round):
                t0 = time.perf_counter()
                run["step"]()
                run["times"].append(time.perf_counter() - t0)
                if run["net"] is not None:
                    run["stats"].append(run["net"].last_sync_stats)


def summarise(run):
    # the slowest rank sets the pace: the max over ranks of the medians
    # p10 too: on a shared, busy machine the fast steps show the uncontended cost
    med = np.array([median(run["times"]), float(np.percentile(run["times"], 10))])
    dist.all_reduce(med, "max")
    out = {"step_ms": float(med[0]) * 1e3, "step_ms_p10": float(med[1]) * 1e3}
    if run["stats"]:
        for k in ("hidden_fraction", "wait_s", "comm_s", "backward_s"):
            v = np.array([median([s[k] for s in run["stats"]])])
            dist.all_reduce(v, "avg")
            out[k] = float(v[0])
        out["buckets"] = run["stats"][-1]["buckets"]
    return out


def raw_allreduce_ms(nbytes):
    from mpi4py import MPI
    buf = np.ones(nbytes // 4, np.float32)
    w = comm.comm
    for _ in range(3):
        w.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    ts = []
    for _ in range(STEPS):
        w.Barrier()
        t0 = time.perf_counter()
        w.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        ts.append(time.perf_counter() - t0)
    v = np.array([median(ts)])
    dist.all_reduce(v, "max")
    return float(v[0]) * 1e3


def overlap_probe(nbytes, compute_ms=20.0):
    """Does an allreduce progress while the rank computes? The cleanest evidence of overlap.

    Start a non-blocking allreduce of ``nbytes``, run ~compute_ms of BLAS
    matmuls (GIL released, as in backward), then wait. ``exposed`` is the time
    still spent waiting after the compute: ~0 when communication really ran in
    the background, ~the whole allreduce when it only moved inside ``wait``.
    """
    a = np.random.default_rng(RANK).standard_normal((256, 256), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    per = (time.perf_counter() - t0) / 10
    reps = max(1, int(compute_ms / 1e3 / per))
    out = []
    for progress, wait in (("thread", group.engine.wait_mode), ("thread", "sleep"), ("hooks", "spin")):
        g = make_group(progress == "thread", wait)
        if g is None:
            continue
        buf = np.ones(nbytes // 4, np.float32)
        exposed, compute = [], []
        for _ in range(STEPS):
            dist.barrier()
            w = dist.all_reduce(buf, async_op=True, group=g)
            t0 = time.perf_counter()
            g.engine.progress()              # the launching hook's Test(); then one layer's
            for _ in range(reps):            # backward: matmuls with no hook in between
                a @ a
            t1 = time.perf_counter()
            w.wait()
            exposed.append(time.perf_counter() - t1)
            compute.append(t1 - t0)
        g.engine.close()
        v = np.array([median(exposed), median(compute)])
        dist.all_reduce(v, "avg")
        out.append(emit(dict(bench="ddp_sync", probe="overlap", progress=progress, wait=wait,
                             allreduce_mb=round(nbytes / 2**20, 2), compute_ms=float(v[1]) * 1e3,
                             exposed_ms=float(v[0]) * 1e3)))
    return out


class _GradSource(Function):
    """``loss = 0`` whose backward hands every parameter a fresh copy of a constant
    gradient: all gradients are ready at once, for the cost of one memcpy."""

    @staticmethod
    def forward(ctx, consts, *params):
        ctx.consts = consts
        return np.zeros((), params[0].dtype)

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(c.copy() for c in ctx.consts)


def isolated_sync(model_key, rounds=None, wrappers=None):
    """F reading (1): the sync machinery alone (see the module docstring).

    ``wrappers``: {name: model -> DDP wrapper} to compare (default: {"ddp": DDP})."""
    wrappers = wrappers or {"ddp": dist.DistributedDataParallel}
    from mpi4py import MPI
    rounds = rounds or (4 if QUICK else 16)
    world = comm.comm

    def sync_start(grad):
        world.Barrier()

    def setup(wrap):
        model = workloads.dt_model(model_key)
        params = list(model.parameters())
        consts = tuple(np.full(p.data.shape, 0.5, p.data.dtype) for p in params)
        net = wrap(model) if wrap else None

        def backward():
            for p in params:
                p._grad = None          # zero_grad(set_to_none=True), as optimizers do
            loss = _GradSource.apply(consts, *params)
            # Both ranks start backward together: the skew of what ran before
            # (noise on a shared machine) must not count as sync time.
            loss.register_hook(sync_start)
            loss.backward()
        return backward, params, net

    local, params, _ = setup(None)
    wrapped = {name: setup(w) for name, w in wrappers.items()}
    rawb, rparams, _ = setup(None)
    nbytes = sum(p.data.nbytes for p in params)
    flat = np.empty(nbytes // 4, np.float32)
    offs = np.cumsum([0] + [p.data.size for p in rparams])
    views = [flat[a:b].reshape(p.data.shape) for p, a, b in zip(rparams, offs[:-1], offs[1:])]
    inv = np.float32(1.0 / N)
    buf = np.ones(nbytes // 4, np.float32)

    def raw_allreduce():
        world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def raw_mpi():
        rawb()
        for p, v in zip(rparams, views):
            np.multiply(p._grad, inv, out=v)
        world.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        for p, v in zip(rparams, views):
            p._grad = v

    runs = {"local": local, "raw_allreduce": raw_allreduce, "raw_mpi": raw_mpi}
    runs.update((name, w[0]) for name, w in wrapped.items())
    times = {k: [] for k in runs}
    for _ in range(WARMUP):
        for f in runs.values():
            world.Barrier()
            f()
    for r in range(rounds):
        order = list(runs.items()) if r % 2 else list(runs.items())[::-1]
        for k, f in order:
            for _ in range(5):
                world.Barrier()
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    # median and p10 (the uncontended cost on a shared machine), slowest rank's
    med = np.array([[median(times[k]), np.percentile(times[k], 10)] for k in runs])
    dist.all_reduce(med, "max")
    m = {k: med[j] * 1e3 for j, k in enumerate(runs)}
    raw = m["raw_allreduce"]
    out = []
    for name, (_, _, net) in wrapped.items():
        sync = m[name] - m["local"]
        out.append(emit(dict(
            bench="ddp_sync", probe="isolated", workload=f"F-{model_key_name(model_key)}-isolated",
            config=name, model=model_key_name(model_key), ranks=N,
            grad_mb=round(nbytes / 2**20, 3), buckets=len(net.bucket_layout),
            local_backward_ms=float(m["local"][0]), ddp_backward_ms=float(m[name][0]),
            sync_ms=float(sync[0]), raw_allreduce_ms=float(raw[0]), sync_vs_raw=float(sync[0] / raw[0]),
            raw_mpi_sync_ms=float(m["raw_mpi"][0] - m["local"][0]),
            sync_ms_p10=float(sync[1]), raw_allreduce_ms_p10=float(raw[1]),
            sync_vs_raw_p10=float(sync[1] / raw[1]))))
    return out


def model_key_name(key):
    return {v[0]: k for k, v in MODELS.items()}[key]


def emit(rec):
    if RANK == 0:
        print(json.dumps(rec, sort_keys=True), flush=True)
    return rec


def main():
    if N < 2:
        print("run me under mpiexec -n 2 (or more)", file=sys.stderr)
    results = []
    isolated = [r for key, _ in MODELS.values() for r in isolated_sync(key)]
    probes = overlap_probe(4 * 2**20)
    blocking = raw_allreduce_ms(4 * 2**20)
    auto = group.engine.wait_mode
    # (progress, wait, bucket_cap_mb); the first is the default configuration
    configs = [("thread", auto, 25), ("thread", "spin", 25), ("thread", "sleep", 25),
               ("hooks", "spin", 25), ("hooks", "sleep", 25)]
    if not QUICK:
        configs += [("thread", auto, cap) for cap in (0.05, 1, 5, 100)]
    groups = {}
    for name, (key, batch) in MODELS.items():
        runs = [dict(build(key, batch, None), config="local (no DDP)")]
        for progress, wait, cap in configs:
            g = groups.get((progress, wait))
            if g is None:
                g = groups[(progress, wait)] = make_group(progress == "thread", wait)
            if g is None:
                continue
            run = build(key, batch, lambda m, g=g, cap=cap: dist.DistributedDataParallel(m, bucket_cap_mb=cap, group=g))
            run.update(config=f"ddp progress={progress} wait={wait} bucket_cap_mb={cap}",
                       progress=progress, wait=wait, bucket_cap_mb=cap)
            runs.append(run)
        time_rounds(runs)
        nbytes = sum(p.data.nbytes for p in runs[0]["model"].parameters())
        raw = raw_allreduce_ms(nbytes)
        local_sum = summarise(runs[0])
        local, local_p10 = local_sum["step_ms"], local_sum["step_ms_p10"]
        base = dict(bench="ddp_sync", model=name, ranks=N, batch_per_rank=batch,
                    grad_mb=round(nbytes / 2**20, 3), local_step_ms=local, raw_allreduce_ms=raw)
        for run in runs:
            rec = dict(base, config=run["config"], **summarise(run))
            for k in ("progress", "wait", "bucket_cap_mb"):
                if k in run:
                    rec[k] = run[k]
            if run["net"] is not None:
                rec["sync_cost_ms"] = rec["step_ms"] - local
                rec["sync_cost_ms_p10"] = rec["step_ms_p10"] - local_p10
            results.append(emit(rec))
        del runs
    for g in groups.values():
        g.engine.close()
    if RANK == 0:
        print(f"\nOverlap probe: 4 MiB allreduce started, then ~{probes[0]['compute_ms']:.0f} ms of matmuls, "
              f"then wait (blocking Allreduce alone: {blocking:.2f} ms)")
        for p in probes:
            print(f"  progress={p['progress']:6} wait={p['wait']:8}  exposed after compute: {p['exposed_ms']:6.2f} ms")
        print(f"\nF (1) isolated: DDP's sync machinery alone (gradients all ready at once; DDP backward - "
              f"plain backward), {N} ranks, median (p10) of the slowest rank")
        for r in isolated:
            print(f"  {r['model']:6} {r['grad_mb']:6.2f} MiB in {r['buckets']} buckets: sync {r['sync_ms']:6.3f} ms "
                  f"({r['sync_ms_p10']:.3f})  one raw Allreduce {r['raw_allreduce_ms']:6.3f} ms "
                  f"({r['raw_allreduce_ms_p10']:.3f})  ratio {r['sync_vs_raw']:5.2f} ({r['sync_vs_raw_p10']:.2f})  "
                  f"raw-mpi copy+Allreduce {r['raw_mpi_sync_ms']:6.3f} ms")
        print(f"\nF (2) in training: DDP gradient sync, {N} ranks ({os.cpu_count()} cores), median of {STEPS} steps; "
              f"sync cost = DDP step - local step; exposed = main thread waiting for buckets after backward; "
              f"hidden = share of allreduce time overlapping backward")
        hdr = (f"{'model':6} {'config':48} {'step ms':>8} {'p10 ms':>7} {'sync ms':>8} {'sync p10':>8} "
               f"{'raw AR ms':>9} {'hidden':>6} "
               f"{'exposed ms':>10} {'comm ms':>8} {'buckets':>7}")
        print(hdr)
        print("-" * len(hdr))
        for r in results:
            sync = r.get("sync_cost_ms")
            sync10 = r.get("sync_cost_ms_p10")
            print(f"{r['model']:6} {r['config']:48} {r['step_ms']:8.2f} {r['step_ms_p10']:7.2f} "
                  f"{'' if sync is None else f'{sync:8.2f}':>8} {'' if sync10 is None else f'{sync10:8.2f}':>8} "
                  f"{r['raw_allreduce_ms']:9.2f} "
                  f"{'' if 'hidden_fraction' not in r else format(r['hidden_fraction'], '6.0%'):>6} "
                  f"{'' if 'wait_s' not in r else format(r['wait_s'] * 1e3, '10.2f'):>10} "
                  f"{'' if 'comm_s' not in r else format(r['comm_s'] * 1e3, '8.2f'):>8} "
                  f"{r.get('buckets', ''):>7}")


if __name__ == "__main__":
    main()
