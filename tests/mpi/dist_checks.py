"""Many distributed checks in one `mpiexec -n N` launch (a launch costs ~1 s plus Numba's load).

Every rank runs every check and prints one line per check:
``CHECK <name> rank=<r> ok`` or ``CHECK <name> rank=<r> FAIL <why>``; the
pytest side (tests/test_distributed.py) requires ``ok`` from every rank.
Checks are collective: all ranks run them in the same order, and a failing
assertion is caught, so one failure cannot desynchronise the rest.

Usage: mpiexec -n N python tests/mpi/dist_checks.py OUTDIR
"""
import json
import os
import sys
import time

import numpy as np

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F
from disttrain.data import DistributedSampler
from checklib import Checks

group = dist.init()
RANK, N = group.rank, group.size
OUTDIR = sys.argv[1] if len(sys.argv) > 1 else "."


check = Checks(RANK)


# -- collectives ---------------------------------------------------------------
def collectives():
    base = np.arange(6, dtype=np.float64) + 10 * RANK
    ranks_sum = 10 * N * (N - 1) / 2
    x = base.copy()
    assert dist.all_reduce(x) is x
    np.testing.assert_array_equal(x, N * np.arange(6) + ranks_sum)
    x = base.astype(np.float32)
    dist.all_reduce(x, "avg")
    np.testing.assert_allclose(x, np.arange(6) + ranks_sum / N, rtol=1e-6)
    x = base.copy()
    dist.all_reduce(x, dist.ReduceOp.MAX)
    np.testing.assert_array_equal(x, np.arange(6) + 10 * (N - 1))
    x = base.astype(np.int64)
    dist.all_reduce(x, "min")
    np.testing.assert_array_equal(x, np.arange(6))
    t = dt.tensor(base.copy())
    assert dist.all_reduce(t, "sum") is t
    np.testing.assert_array_equal(t.data, N * np.arange(6) + ranks_sum)
    # broadcast from the last rank
    x = np.full(3, float(RANK))
    dist.broadcast(x, src=N - 1)
    np.testing.assert_array_equal(x, np.full(3, N - 1.0))
    # all_gather: row r is rank r's array
    g = dist.all_gather(np.array([RANK, RANK * 2], np.int32))
    np.testing.assert_array_equal(g, np.stack([[r, 2 * r] for r in range(N)]))
    # reduce_scatter: rank r gets slice r of the sum
    src = np.arange(2 * N, dtype=np.float64).reshape(N, 2) * (RANK + 1)
    out = dist.reduce_scatter(src)
    np.testing.assert_array_equal(out, (np.arange(2 * N).reshape(N, 2) * (N * (N + 1) / 2))[RANK:RANK + 1])
    out = dist.reduce_scatter(src, op="avg")
    np.testing.assert_allclose(out, (np.arange(2 * N).reshape(N, 2) * ((N + 1) / 2))[RANK:RANK + 1])
    # non-blocking variants, several in flight at once
    a, b = np.ones(5) * RANK, np.full(4, float(RANK))
    w1 = dist.iall_reduce(a, "sum")
    w2 = dist.ibroadcast(b, src=0)
    w3 = dist.iall_gather(np.array([float(RANK)]))
    w4 = dist.ireduce_scatter(np.ones(N * 3))
    w5 = dist.ibarrier()
    assert w1.wait() is a and w2.wait() is b
    np.testing.assert_array_equal(a, np.full(5, ranks_sum / 10))
    np.testing.assert_array_equal(b, np.zeros(4))
    np.testing.assert_array_equal(w3.wait()[:, 0], np.arange(N))
    np.testing.assert_array_equal(w4.wait(), np.full(3, float(N)))
    w5.wait()
    assert w1.is_completed()
    dist.barrier()
    assert dist.get_rank() == RANK and dist.get_world_size() == N and dist.is_initialized()
    assert 0 <= dist.get_local_rank() < dist.get_local_world_size() <= N


# -- DDP equivalence --------------------------------------------------------------
B = 4              # per-rank batch
STEPS = 10


class MLP(dt.nn.Module):
    def __init__(self, dtype, unused=False):
        super().__init__()
        self.fc1 = dt.nn.Linear(6, 16, dtype=dtype)
        self.fc2 = dt.nn.Linear(16, 16, dtype=dtype)
        self.fc3 = dt.nn.Linear(16, 4, dtype=dtype)
        if unused:
            self.unused = dt.nn.Linear(3, 3, dtype=dtype)

    def forward(self, x):
        return self.fc3(self.fc2(self.fc1(x).tanh()).relu())


def make_data(dtype, per_rank, steps=STEPS):
    rng = np.random.default_rng(1234)
    X = rng.standard_normal((steps, N * per_rank, 6)).astype(dtype)
    Y = rng.integers(0, 4, (steps, N * per_rank))
    return X, Y


def make_opt(kind, params):
    if kind == "sgd":
        return dt.optim.SGD(params, lr=0.1, momentum=0.9)
    return dt.optim.Adam(params, lr=0.01)


def reference(dtype, kind, accum=1, unused=False):
    dt.manual_seed(7)
    model = MLP(dtype, unused)
    opt = make_opt(kind, model.parameters())
    X, Y = make_data(dtype, B * accum)
    for s in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(dt.tensor(X[s])), dt.tensor(Y[s])).backward()
        opt.step()
    return model


def run_ddp(dtype, kind, accum=1, unused=False, hook=None, **ddp_kwargs):
    dt.manual_seed(7 + RANK)      # different initial weights: DDP must broadcast rank 0's
    if RANK == 0:
        dt.manual_seed(7)
    model = MLP(dtype, unused)
    ddp = dist.DistributedDataParallel(model, **ddp_kwargs)
    if hook is not None:
        ddp.register_comm_hook(None, hook)
    opt = make_opt(kind, ddp.parameters())
    X, Y = make_data(dtype, B * accum)
    for s in range(STEPS):
        opt.zero_grad()
        for k in range(accum):
            lo = (RANK * accum + k) * B    # this rank's k-th micro-batch of the global batch
            x, y = dt.tensor(X[s, lo:lo + B]), dt.tensor(Y[s, lo:lo + B])
            if k < accum - 1:
                with ddp.no_sync():
                    (F.cross_entropy(ddp(x), y) * (1.0 / accum)).backward()
            else:
                (F.cross_entropy(ddp(x), y) * (1.0 / accum)).backward()
        opt.step()
    return ddp


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def compare(ddp, ref, tol):
    got = dict(ddp.module.named_parameters())
    for name, p in ref.named_parameters():
        q = got[name]
        if p._grad is None:
            assert q._grad is None, f"{name}: reference has no gradient but DDP has one"
            np.testing.assert_array_equal(q.data, p.data)
            continue
        err = max_rel(q.data, p.data)
        assert err <= tol, f"{name}: max relative difference {err:.3g} > {tol:g}"
    assert_bitwise_identical(ddp.module)


def assert_bitwise_identical(model):
    for name, p in model.named_parameters():
        flat = np.ascontiguousarray(p.data).reshape(-1)
        rows = dist.all_gather(flat.view(np.uint8))
        for r in range(1, N):
            assert np.array_equal(rows[r], rows[0]), f"{name}: rank {r} differs bitwise from rank 0"


TOL = {np.float32: 1e-5, np.float64: 1e-10}


def equivalence(kind, dtype, **kw):
    def run():
        ref = reference(dtype, kind, accum=kw.get("accum", 1), unused=kw.get("unused", False))
        ddp = run_ddp(dtype, kind, **kw)
        if kw.get("bucket_cap_mb", 25) < 1e-3:
            assert len(ddp.bucket_layout) == 6, ddp.bucket_layout     # one bucket per parameter
        compare(ddp, ref, TOL[dtype])
    return run


# -- error paths inside the job (caught, so the job goes on) ------------------------
def unused_without_flag():
    model = MLP(np.float64, unused=True)
    ddp = dist.DistributedDataParallel(model)
    x, y = make_data(np.float64, B, steps=1)
    try:
        F.cross_entropy(ddp(dt.tensor(x[0, :B])), dt.tensor(y[0, :B])).backward()
    except RuntimeError as e:
        msg = str(e)
        assert "unused.weight" in msg and "unused.bias" in msg and "find_unused_parameters=True" in msg, msg
        assert f"rank {RANK}" in msg, msg
    else:
        raise AssertionError("an unused parameter without find_unused_parameters did not raise")
    ddp.remove_hooks()


def unused_on_one_rank_without_flag():
    # `unused` takes part everywhere but on the last rank, which raises (caught here); the
    # others finish normally. Their collectives must still be matched: the next ones agree.
    dt.manual_seed(7)
    model = MLP(np.float64, unused=True)
    ddp = dist.DistributedDataParallel(model)
    X, Y = make_data(np.float64, B, steps=1)
    loss = F.cross_entropy(ddp(dt.tensor(X[0, RANK * B:(RANK + 1) * B])), dt.tensor(Y[0, RANK * B:(RANK + 1) * B]))
    if RANK != N - 1:
        loss = loss + model.unused(dt.tensor(np.ones((2, 3)))).sum()
    try:
        loss.backward()
    except RuntimeError as e:
        assert RANK == N - 1 and "unused.weight" in str(e) and f"rank {RANK}" in str(e), str(e)
    else:
        assert RANK != N - 1, "the rank without a gradient for `unused` did not raise"
        np.testing.assert_allclose(model.unused.weight.grad.data, np.full((3, 3), 2.0 * (N - 1) / N), rtol=1e-12)
    total = dist.all_reduce(np.full(4, RANK + 1.0))
    np.testing.assert_array_equal(total, np.full(4, N * (N + 1) / 2))
    ddp.remove_hooks()


def mismatched_models():
    width = 16 + (1 if RANK == N - 1 else 0)
    model = dt.nn.Sequential(dt.nn.Linear(4, width), dt.nn.ReLU(), dt.nn.Linear(width, 2))
    t0 = time.perf_counter()
    try:
        dist.DistributedDataParallel(model)
    except dist.ModelMismatchError as e:
        msg = str(e)
        assert time.perf_counter() - t0 < 5.0
        assert "'0.weight'" in msg and f"rank {N - 1}" in msg and "(16, 4)" in msg and "(17, 4)" in msg, msg
        print(f"MISMATCH rank={RANK} {msg}", flush=True)
    else:
        raise AssertionError("DDP accepted models that differ across ranks")


def comm_hooks():
    # Under the default progress (the communication thread where MPI allows it) and,
    # with several ranks, Test() from the hooks: the user-defined bf16 op runs in either.
    groups = [(None, None)] + ([(other_group(False, "sleep"), "hooks")] if N > 1 else [])
    ref = reference(np.float32, "sgd")
    for g, mode in groups:
        kw = {} if g is None else {"group": g}
        for hook, tol in ((dist.fp16_compress_hook, 2e-3), (dist.bf16_compress_hook, 2e-2)):
            ddp = run_ddp(np.float32, "sgd", hook=hook, **kw)
            for (name, p), q in zip(ref.named_parameters(), ddp.module.parameters()):
                err = max_rel(q.data, p.data)
                assert err <= tol, f"{hook.__name__} {mode or 'default'} {name}: relative difference {err:.3g} > {tol}"
            assert_bitwise_identical(ddp.module)
        if g is not None:
            g.engine.close()


def _tree_sums(vals, add):
    """Every value a reduction tree (any order, any grouping) of ``vals`` can give."""
    if len(vals) == 1:
        return {vals[0]}
    out = set()
    n = len(vals)
    for mask in range(1, 2 ** n - 1):
        left = tuple(v for i, v in enumerate(vals) if mask >> i & 1)
        right = tuple(v for i, v in enumerate(vals) if not mask >> i & 1)
        for a in _tree_sums(left, add):
            for b in _tree_sums(right, add):
                out.add(add(a, b))
    return out


def comm_hooks_exact():
    # The 16-bit allreduce sums in 16 bits, correctly rounded at each add: the
    # result must be what numpy's float16 / bfloat16 adds give for SOME reduction
    # order (MPI picks the tree; with 2 ranks there is only one), bitwise equal on
    # every rank. 0.1*rank-style values, plus ties that must round to even.
    from disttrain.distributed import comm_hooks as ch
    j = np.arange(16)
    vals = (0.1 * RANK * (1 + j / 7)).astype(np.float32)
    vals[0] = 1.0 if RANK == 0 else 2.0 ** -8 * 1.5     # bf16: 1 + 1.5*2^-8 -> 1.0078125 (N=2)
    vals[1] = 1.0 if RANK == 0 else 2.0 ** -11          # fp16: 1 + 2^-11 is a tie -> 1.0 (even)
    encode = {"fp16": lambda v: v.astype(np.float16).view(np.uint16), "bf16": ch.to_bf16_bits}
    add = {"fp16": ch.fp16_sum_bits, "bf16": ch.bf16_sum_bits}
    engines = [("default", group.engine)]
    if N > 1:
        hooks = other_group(False, "sleep")
        engines.append(("hooks", hooks.engine))
    routes = [("fp16", None), ("fp16", False), ("bf16", None)]     # None: native fp16 where MPI has it
    for mode, engine in engines:
        for fmt, native in routes:
            mine = encode[fmt](vals)
            wire = mine.copy()
            engine.submit(f"exact {fmt}", lambda: ch.iallreduce_16bit(group.comm, wire, fmt, native),
                          start_in_thread=True).wait()
            every = dist.all_gather(mine)                   # (N, 16) uint16: each rank's input
            results = dist.all_gather(wire)
            assert (results == results[0]).all(), f"{fmt} {mode}: ranks differ"
            add_bits = lambda a, b: int(add[fmt](np.array([a], np.uint16), np.array([b], np.uint16))[0])  # noqa: E731
            for k in range(j.size):
                allowed = _tree_sums(tuple(int(v) for v in every[:, k]), add_bits)
                assert int(wire[k]) in allowed, (f"{fmt} native={native} {mode} element {k}: "
                                                 f"got bits {int(wire[k]):#06x}, allowed {sorted(allowed)}")
            if N == 2:
                np.testing.assert_array_equal(wire, add[fmt](every[0], every[1]))
                if fmt == "bf16":
                    assert ch.from_bf16_bits(wire[:1])[0] == 1.0078125
                else:
                    assert wire[:2].view(np.float16)[1] == 1.0
    if N > 1:
        hooks.engine.close()


def stall_detector():
    stall = group.stall
    old_timeout, old_log, old_abort = stall.timeout, stall.log, stall.abort
    lines = []
    stall.timeout, stall.log, stall.abort = 0.3, lines.append, False     # report only
    n_reports = len(stall.reports)
    try:
        if RANK == N - 1:
            time.sleep(2.5)          # the late rank: every other rank waits for it
        dist.all_reduce(np.ones(3))
    finally:
        stall.timeout, stall.log, stall.abort = old_timeout, old_log, old_abort
    if RANK != N - 1:
        new = stall.reports[n_reports:]
        assert new, "no stall was reported although rank N-1 slept past the timeout"
        assert new[0]["not_joined"] == [N - 1], new[0]
        assert f"[{N - 1}]" in lines[0] and "all_reduce" in lines[0], lines[0]
        print(f"STALL rank={RANK} {lines[0]}", flush=True)
    dist.barrier()


def timeline():
    path = os.path.join(OUTDIR, "trace-{rank}.json")
    dt.manual_seed(7)
    model = MLP(np.float32)
    ddp = dist.DistributedDataParallel(model, timeline=path, bucket_cap_mb=2e-4, first_bucket_cap_mb=1e-4)
    opt = ddp.trace_optimizer(make_opt("sgd", ddp.parameters()))
    X, Y = make_data(np.float32, B, steps=2)
    for s in range(2):
        opt.zero_grad()
        F.cross_entropy(ddp(dt.tensor(X[s, RANK * B:(RANK + 1) * B])), dt.tensor(Y[s, RANK * B:(RANK + 1) * B])).backward()
        opt.step()
    written = ddp.save_timeline()
    group.engine.timeline = None
    assert written == os.path.join(OUTDIR, f"trace-{RANK}.json")
    with open(written) as f:
        trace = json.load(f)
    names = [e["name"] for e in trace["traceEvents"] if e.get("ph") == "X"]
    for want in ("forward", "backward", "optimizer.step", "wait for buckets"):
        assert want in names, f"{want!r} missing from the timeline: {sorted(set(names))}"
    assert any(n.startswith("allreduce bucket") for n in names)
    assert any(n.startswith("copy-in fc1.weight") for n in names)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in trace["traceEvents"] if e.get("ph") == "X")
    assert ddp.last_sync_stats["buckets"] >= 3


def sampler():
    for n_items, drop in ((10, False), (10, True), (3, False), (N * 5, False)):
        s = DistributedSampler(n_items, shuffle=True, seed=3, drop_last=drop)
        s.set_epoch(2)
        mine = s.indices()
        assert len(mine) == len(s)
        shards = dist.all_gather(mine)            # equal lengths on every rank, or this fails
        flat = shards.reshape(-1).tolist()
        if drop:
            assert len(set(flat)) == len(flat) == (n_items // N) * N
        else:
            assert set(flat) == set(range(n_items)) and len(flat) == -(-n_items // N) * N


def partially_used():
    # `unused` takes part on rank 0 only: every rank must get rank 0's gradient / N
    dt.manual_seed(7)
    model = MLP(np.float64, unused=True)
    ddp = dist.DistributedDataParallel(model, find_unused_parameters=True)
    X, Y = make_data(np.float64, B, steps=1)
    for _ in range(2):                  # before and after the bucket rebuild
        model.zero_grad()
        loss = F.cross_entropy(ddp(dt.tensor(X[0, RANK * B:(RANK + 1) * B])), dt.tensor(Y[0, RANK * B:(RANK + 1) * B]))
        if RANK == 0:
            loss = loss + model.unused(dt.tensor(np.ones((2, 3)))).sum()
        loss.backward()
        np.testing.assert_allclose(model.unused.weight.grad.data, np.full((3, 3), 2.0 / N), rtol=1e-12)
        np.testing.assert_allclose(model.unused.bias.grad.data, np.full(3, 2.0 / N), rtol=1e-12)
    assert_bitwise_identical(model)
    ddp.remove_hooks()


def buffers_broadcast():
    dt.manual_seed(7)
    model = MLP(np.float32)
    model.register_buffer("running", np.full(3, float(RANK), np.float32))
    ddp = dist.DistributedDataParallel(model)
    np.testing.assert_array_equal(model.running.data, np.zeros(3))      # rank 0's at construction
    model.running.data[...] = RANK + 5                                   # drift apart ...
    ddp(dt.tensor(np.ones((2, 6), np.float32)))
    np.testing.assert_array_equal(model.running.data, np.full(3, 5.0))  # ... rank 0's before forward
    ddp.remove_hooks()


def thread_limits():
    from disttrain.distributed import threads
    want = max(1, threads.cores() // dist.get_local_world_size())
    if any(v in os.environ for v in threads._BLAS_USER_VARS):
        assert group.thread_limits["blas"] is None, "the user's BLAS thread setting was overridden"
    else:
        assert group.thread_limits["blas"] == want, group.thread_limits
        got = threads.get_blas_threads()
        assert got and all(g == want for g in got), f"BLAS threads {got}, expected {want}"


check("collectives", collectives)
for kind in ("sgd", "adam"):
    for dtype in (np.float32, np.float64):
        tag = f"{kind}_{np.dtype(dtype).name}"
        check(f"ddp_{tag}", equivalence(kind, dtype))
        check(f"ddp_{tag}_no_sync", equivalence(kind, dtype, accum=2))
        check(f"ddp_{tag}_many_buckets", equivalence(kind, dtype, bucket_cap_mb=1e-5, first_bucket_cap_mb=1e-5))
def other_group(threaded, wait):
    """The same communicator driven another way (the default group's engine stays idle meanwhile)."""
    from disttrain.distributed.process_group import ProcessGroup
    from disttrain.distributed.progress import ProgressEngine
    comm = group.comm
    return ProcessGroup(comm, ProgressEngine(comm, threaded, wait, group.stall), group.stall, {})


if N > 1:
    # The other progress/wait modes: Test() from hooks (no thread), and a thread that always spins.
    for threaded, wait in ((False, "sleep"), (False, "spin"), (True, "spin")):
        g = other_group(threaded, wait)
        check(f"ddp_progress_{'thread' if threaded else 'hooks'}_{wait}",
              equivalence("adam", np.float64, group=g, bucket_cap_mb=1e-5, first_bucket_cap_mb=1e-5))
        g.engine.close()
check("ddp_find_unused", equivalence("sgd", np.float64, unused=True, find_unused_parameters=True))
check("ddp_unused_error", unused_without_flag)
if N > 1:
    check("ddp_unused_on_one_rank_error", unused_on_one_rank_without_flag)
check("ddp_partially_used", partially_used)
check("ddp_comm_hooks", comm_hooks)
check("comm_hooks_exact", comm_hooks_exact)
check("timeline", timeline)
check("ddp_broadcast_buffers", buffers_broadcast)
check("sampler", sampler)
if N > 1:
    check("ddp_mismatch_error", mismatched_models)
    check("stall_detector", stall_detector)
    check("thread_limits", thread_limits)
dist.barrier()
check.write(OUTDIR)
print(f"DONE rank={RANK}", flush=True)
