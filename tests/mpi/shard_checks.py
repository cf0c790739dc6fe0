"""ShardedOptimizer checks in one `mpiexec -n N` launch (see dist_checks.py for the pattern).

Usage: mpiexec -n N python tests/mpi/shard_checks.py OUTDIR [CHECKPOINT_FROM_2_RANKS]
Writes OUTDIR/results-<rank>.json; with N == 2 also OUTDIR/resize.npz (a checkpoint that the
1-, 3- and 4-rank launches resume from).
"""
import json
import os
import sys

import numpy as np

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F
from disttrain.training import checkpoint as ckpt
from checklib import Checks

group = dist.init()
RANK, N = group.rank, group.size
OUTDIR = sys.argv[1]
RESIZE_FROM = sys.argv[2] if len(sys.argv) > 2 else None
check = Checks(RANK)
STEPS, B = 20, 3
TOL = {np.float32: 1e-6, np.float64: 1e-12}
TOL_SINGLE = {np.float32: 1e-5, np.float64: 1e-10}    # vs one process: what DDP itself is held to
CAP = 0.0005        # MiB: several buckets, and the 16x16 float32 weight gets a solo bucket


def MLP(dtype, unused=False):
    """6-16-16-4 (tanh, relu); ``unused`` adds a layer that takes no part in the loss."""
    L = dt.nn.Linear
    model = dt.nn.Sequential(L(6, 16, dtype=dtype), dt.nn.Tanh(), L(16, 16, dtype=dtype), dt.nn.ReLU(),
                             L(16, 4, dtype=dtype))
    if unused:
        model = _FirstOnly(model)
        model.unused = L(3, 3, dtype=dtype)
    return model


class _FirstOnly(dt.nn.Sequential):
    def forward(self, x):           # later children take no part in the loss
        return self[0](x)


def data(dtype, steps=STEPS, per_rank=B, world=None):
    world = world or N
    rng = np.random.default_rng(1234)
    n = world * per_rank
    return rng.standard_normal((steps, n, 6)).astype(dtype), rng.integers(0, 4, (steps, n))


def opt_kw(kind):
    return (dt.optim.SGD, dict(lr=0.1, momentum=0.9)) if kind == "sgd" else (dt.optim.Adam, dict(lr=0.01))


def single(dtype, kind):
    dt.manual_seed(7)
    model = MLP(dtype)
    cls, kw = opt_kw(kind)
    opt = cls(model.parameters(), **kw)
    X, Y = data(dtype)
    for s in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(dt.tensor(X[s])), dt.tensor(Y[s])).backward()
        opt.step()
    return model


def train(dtype, kind, sharded, steps=STEPS, start=0, accum=1, model=None, opt=None, **kw):
    """DDP (+ ShardedOptimizer when ``sharded`` is a dict of its options) on this rank's part of each global batch."""
    if model is None:
        dt.manual_seed(7 + RANK)      # different initial weights: DDP must broadcast rank 0's
        if RANK == 0:
            dt.manual_seed(7)
        model = dist.DistributedDataParallel(MLP(dtype), bucket_cap_mb=CAP)
        cls, okw = opt_kw(kind)
        if sharded is None:
            opt = cls(model.parameters(), **okw)
        else:
            opt = dist.ShardedOptimizer(model, cls, **sharded, **okw)
    X, Y = data(dtype, per_rank=B * accum)
    for s in range(start, start + steps):
        opt.zero_grad()
        for k in range(accum):
            lo = (RANK * accum + k) * B
            x, y = dt.tensor(X[s, lo:lo + B]), dt.tensor(Y[s, lo:lo + B])
            if k < accum - 1:
                with model.no_sync():
                    (F.cross_entropy(model(x), y) * (1.0 / accum)).backward()
            else:
                (F.cross_entropy(model(x), y) * (1.0 / accum)).backward()
        opt.step()
    return model, opt


def max_rel(a, b):
    return max(float(np.max(np.abs(p.data - q.data)) / max(np.max(np.abs(q.data)), 1e-30))
               for p, q in zip(a.parameters(), b.parameters()))


def assert_bitwise_identical(model):
    for name, p in model.named_parameters():
        rows = dist.all_gather(np.ascontiguousarray(p.data).reshape(-1).view(np.uint8))
        for r in range(1, N):
            assert np.array_equal(rows[r], rows[0]), f"{name}: rank {r} differs bitwise from rank 0"


def assert_bitwise_equal(a, b, what):
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert np.array_equal(p.data.view(np.uint8), q.data.view(np.uint8)), f"{what}: {n} differs"


PATHS = {"any": {"shared_memory": False}, "node": {}, "hier": {"ranks_per_node": max(1, N // 2)}}


def equivalence(kind, dtype, path, accum=1):
    def run():
        plain, _ = train(dtype, kind, None, accum=accum)
        shard, opt = train(dtype, kind, PATHS[path], accum=accum)
        assert opt.node_shared == (path != "any" and N > 1), repr(opt)
        err = max_rel(shard, plain)
        assert err <= TOL[dtype], f"vs plain DDP: max relative difference {err:.3g} > {TOL[dtype]:g}"
        if N <= 2:      # (a + b) / 2 == a/2 + b/2 exactly: the sharded sum-then-scale changes nothing
            assert_bitwise_equal(shard, plain, "sharded vs plain DDP")
        if accum == 1:
            err = max_rel(shard, single(dtype, kind))
            assert err <= TOL_SINGLE[dtype], f"vs one process: max relative difference {err:.3g}"
        assert_bitwise_identical(shard)
        again, _ = train(dtype, kind, PATHS[path], accum=accum)
        assert_bitwise_equal(shard, again, "run to run")
    return run


def node_equals_any():
    for dtype in (np.float32, np.float64):
        a, _ = train(dtype, "adam", PATHS["any"])
        b, _ = train(dtype, "adam", PATHS["node"])
        err = max_rel(b, a)
        assert err <= TOL[dtype], f"{dtype.__name__}: node-shared vs any topology {err:.3g}"
        if N <= 2:          # two addends: a + b == b + a, so the paths agree bit for bit
            assert_bitwise_equal(a, b, "node-shared vs any topology")


def state_bytes(path):
    def run():
        _, opt = train(np.float32, "adam", PATHS[path], steps=2)
        mine = sum(v.nbytes for st in opt.state.values() for v in st.values() if isinstance(v, np.ndarray))
        full = 2 * sum(p.data.nbytes for p in opt.ddp.parameters())        # exp_avg + exp_avg_sq
        parts = opt.node.local_size if opt.node_shared else N
        slack = 2 * 64 * len(opt._pieces)     # slices start on 64-byte boundaries
        assert mine <= full / parts + slack, f"{mine} state bytes on this rank; full state {full}, {parts} parts"
        # The owners of one copy (all ranks, or one node) hold the whole state between them.
        owners = dist.all_gather(np.array([mine, opt.node.placement[RANK][0] if opt.node_shared else 0], np.int64))
        copies = owners[owners[:, 1] == owners[0, 1], 0].sum()
        assert copies == full, f"ranks of one copy hold {copies} state bytes, the full state is {full}"
    return run


def windows():
    _, opt = train(np.float32, "adam", PATHS["node"], steps=1)
    if not opt.node_shared:
        return
    nbytes = sum(pc.n * pc.dtype.itemsize for pc in opt._pieces)
    wb = opt.window_bytes
    assert nbytes <= wb["parameters_per_node"] <= nbytes + 64 * len(opt._pieces), wb
    assert wb["parameters"] == (wb["parameters_per_node"] if opt.node.local_rank == 0 else 0), wb
    per_rank = dist.all_gather(np.array([wb["parameters"]], np.int64))[:, 0]
    assert per_rank.sum() == opt.node.nodes * wb["parameters_per_node"], per_rank     # one copy per node
    # Every rank's parameters are views into its node's one copy.
    for pc in opt._pieces:
        for i in pc.indices:
            assert np.shares_memory(opt._params[i].data, pc.pflat)


def resume_bitwise(path):
    def run():
        whole, _ = train(np.float64, "adam", PATHS[path])
        first, opt = train(np.float64, "adam", PATHS[path], steps=STEPS // 2)
        opt.consolidate_state_dict(to=0)
        d = os.path.join(OUTDIR, f"resume-{path}")
        if RANK == 0:
            ckpt.save(d, STEPS // 2, first.module, opt, {"world_size": N})
        dist.barrier()
        arrays, optim_state, _ = ckpt.read(ckpt.path_for(d, STEPS // 2))
        dt.manual_seed(99)
        model = dist.DistributedDataParallel(MLP(np.float64), bucket_cap_mb=CAP)
        model.load_state_dict(arrays)
        cls, okw = opt_kw("adam")
        opt2 = dist.ShardedOptimizer(model, cls, **PATHS[path], **okw)
        opt2.load_state_dict(optim_state)
        resumed, _ = train(np.float64, "adam", None, steps=STEPS - STEPS // 2, start=STEPS // 2, model=model, opt=opt2)
        assert_bitwise_equal(resumed, whole, "resumed vs uninterrupted")
    return run


RESIZE_STEPS, GLOBAL = 8, 12     # a global batch every world size (1..4) divides


def resize_train(model, opt, start, world):
    X, Y = data(np.float64, steps=2 * RESIZE_STEPS, per_rank=GLOBAL // world, world=world)
    per = GLOBAL // world
    me = RANK if world == N else 0
    for s in range(start, start + RESIZE_STEPS):
        opt.zero_grad()
        F.cross_entropy(model(dt.tensor(X[s, me * per:(me + 1) * per])),
                        dt.tensor(Y[s, me * per:(me + 1) * per])).backward()
        opt.step()


def save_for_resize():
    dt.manual_seed(7)
    model = dist.DistributedDataParallel(MLP(np.float64), bucket_cap_mb=CAP)
    opt = dist.ShardedOptimizer(model, dt.optim.Adam, lr=0.01)
    resize_train(model, opt, 0, N)
    opt.consolidate_state_dict(to=0)
    if RANK == 0:
        ckpt.save(OUTDIR, RESIZE_STEPS, model.module, opt, {"world_size": N})


def resume_resized(path):
    def run():
        arrays, optim_state, meta = ckpt.read(RESIZE_FROM)
        assert meta["world_size"] == 2
        dt.manual_seed(99)
        model = dist.DistributedDataParallel(MLP(np.float64), bucket_cap_mb=CAP)
        model.load_state_dict(arrays)
        opt = dist.ShardedOptimizer(model, dt.optim.Adam, lr=0.01, **PATHS[path])
        opt.load_state_dict(optim_state)
        resize_train(model, opt, RESIZE_STEPS, N)
        # The oracle: one process, a plain Adam loading the same file, the same global batches.
        ref = MLP(np.float64)
        ref.load_state_dict(arrays)
        ropt = dt.optim.Adam(ref.parameters(), lr=0.01)
        ropt.load_state_dict(optim_state)
        resize_train(ref, ropt, RESIZE_STEPS, 1)
        err = max_rel(model.module, ref)
        assert err <= TOL_SINGLE[np.float64], f"resumed on {N} ranks vs one process: {err:.3g}"
        assert_bitwise_identical(model.module)
    return run


class _Branchy(dt.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = MLP(np.float64)
        self.extra = dt.nn.Linear(6, 4, dtype=np.float64)

    def forward(self, x, use_extra):
        out = self.body(x)
        return out + self.extra(x) if use_extra else out


def partially_used():
    # A layer used on rank 0 only (find_unused_parameters=True): the others reduce it as zeros.
    models = []
    for sharded in (None, {}):
        dt.manual_seed(7)
        model = dist.DistributedDataParallel(_Branchy(), find_unused_parameters=True, bucket_cap_mb=CAP)
        opt = (dt.optim.Adam(model.parameters(), lr=0.01) if sharded is None
               else dist.ShardedOptimizer(model, dt.optim.Adam, lr=0.01))
        X, Y = data(np.float64, steps=6)
        for s in range(6):
            opt.zero_grad()
            x, y = dt.tensor(X[s, RANK * B:(RANK + 1) * B]), dt.tensor(Y[s, RANK * B:(RANK + 1) * B])
            F.cross_entropy(model(x, RANK == 0), y).backward()
            opt.step()
        models.append(model.module)
    err = max_rel(models[1], models[0])
    assert err <= TOL[np.float64], f"vs plain DDP: {err:.3g}"
    assert_bitwise_identical(models[1])


def timeline():
    # The reduce-scatters / all-gathers (any) and node barriers (node) show up on the comm row.
    for path, needles in (("any", ("reduce-scatter bucket", "all-gather parameters")), ("node", ("node barrier",))):
        trace = os.path.join(OUTDIR, f"trace-{path}-{RANK}.json")
        dt.manual_seed(7)
        model = dist.DistributedDataParallel(MLP(np.float32), bucket_cap_mb=CAP, timeline=trace)
        opt = model.trace_optimizer(dist.ShardedOptimizer(model, dt.optim.Adam, lr=0.01, **PATHS[path]))
        train(np.float32, "adam", None, steps=2, model=model, opt=opt)
        model.save_timeline()
        with open(trace) as f:
            names = {e.get("name", "") for e in json.load(f)["traceEvents"]}
        assert "optimizer.step" in names, sorted(names)[:20]
        if N > 1:
            for needle in needles:
                assert any(needle in n for n in names), (needle, sorted(names)[:30])


def errors():
    # A comm hook and a sharded optimizer exclude each other, on every rank.
    dt.manual_seed(7)
    model = dist.DistributedDataParallel(MLP(np.float32))
    model.register_comm_hook(None, dist.fp16_compress_hook)
    try:
        dist.ShardedOptimizer(model, dt.optim.SGD, lr=0.1)
    except RuntimeError as e:
        assert "comm hook" in str(e) and "fp16_compress_hook" in str(e), e
    else:
        raise AssertionError("no error for a comm hook")
    # step() after a backward that only accumulated (no_sync) names the problem.
    model, opt = train(np.float32, "sgd", PATHS["any"], steps=1)
    x, y = data(np.float32)
    with model.no_sync():
        F.cross_entropy(model(dt.tensor(x[0, :B])), dt.tensor(y[0, :B])).backward()
    try:
        opt.step()
    except RuntimeError as e:
        assert "without a synchronised backward" in str(e), e
    else:
        raise AssertionError("no error for step() after no_sync only")
    # A parameter no rank used: named.
    dt.manual_seed(7)
    model = dist.DistributedDataParallel(MLP(np.float32, unused=True), find_unused_parameters=True)
    opt = dist.ShardedOptimizer(model, dt.optim.Adam, lr=0.01)
    F.cross_entropy(model(dt.tensor(x[0, :B])), dt.tensor(y[0, :B])).backward()
    try:
        opt.step()
    except RuntimeError as e:
        assert "unused.weight" in str(e) and "no gradient on any rank" in str(e), e
    else:
        raise AssertionError("no error for a parameter without gradient")
    try:
        dist.ShardedOptimizer(MLP(np.float32), dt.optim.Adam)
    except TypeError as e:
        assert "DistributedDataParallel" in str(e)
    else:
        raise AssertionError("no error for a plain module")


if RESIZE_FROM:
    for p in ("any", "node"):
        check(f"resume_resized_{p}", resume_resized(p))
else:
    for kind in ("sgd", "adam"):
        for dtype in (np.float32, np.float64):
            for path in ("any", "node"):
                check(f"equiv_{kind}_{dtype.__name__}_{path}", equivalence(kind, dtype, path))
    check("equiv_adam_float32_any_accum", equivalence("adam", np.float32, "any", accum=2))
    check("equiv_adam_float32_node_accum", equivalence("adam", np.float32, "node", accum=2))
    check("equiv_adam_float64_hier", equivalence("adam", np.float64, "hier"))
    check("node_equals_any", node_equals_any)
    check("state_bytes_any", state_bytes("any"))
    check("state_bytes_node", state_bytes("node"))
    check("windows", windows)
    check("resume_bitwise_any", resume_bitwise("any"))
    check("resume_bitwise_node", resume_bitwise("node"))
    check("errors", errors)
    check("timeline", timeline)
    check("partially_used", partially_used)
    if N == 2:
        check("save_for_resize", save_for_resize)
check.write(OUTDIR)
