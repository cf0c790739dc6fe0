"""DistributedDataParallel and collectives in library mode (single-process group, no mpiexec).

Multi-rank behaviour is tested with real mpiexec launches in test_distributed.py.
"""
import numpy as np
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F
from disttrain.distributed import buckets, comm_hooks, progress, threads


class Net(dt.nn.Module):
    def __init__(self, unused=False, dtype=np.float64):
        super().__init__()
        self.fc1 = dt.nn.Linear(4, 8, dtype=dtype)
        self.fc2 = dt.nn.Linear(8, 3, dtype=dtype)
        if unused:
            self.extra = dt.nn.Linear(2, 2, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def batch(seed=0, n=6, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return dt.tensor(rng.standard_normal((n, 4)).astype(dtype)), dt.tensor(rng.integers(0, 3, n))


def fresh(unused=False, dtype=np.float64):
    dt.manual_seed(3)
    return Net(unused, dtype)


def test_library_mode_group():
    g = dist.init()
    assert g.backend == "single" and (dist.get_rank(), dist.get_world_size()) == (0, 1)
    assert dist.is_initialized() and dist.get_local_rank() == 0 and dist.init() is g


def test_ddp_single_process_is_bitwise_plain_training():
    plain, wrapped = fresh(), fresh()
    ddp = dt.DistributedDataParallel(wrapped)
    opts = [dt.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (plain, ddp)]
    for s in range(4):
        x, y = batch(s)
        for m, opt in zip((plain, ddp), opts):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    for (n, p), q in zip(plain.named_parameters(), wrapped.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=n)


def test_ddp_delegates_to_the_module():
    m = fresh()
    ddp = dist.DistributedDataParallel(m)
    assert ddp.module is m and ddp.fc1 is m.fc1
    assert [id(p) for p in ddp.parameters()] == [id(p) for p in m.parameters()]
    sd, msd = ddp.state_dict(), m.state_dict()
    assert list(sd) == list(msd) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for k in sd:
        np.testing.assert_array_equal(sd[k], msd[k])
    ddp.eval()
    assert not m.training and not m.fc1.training
    ddp.train()
    assert m.training
    x, _ = batch()
    np.testing.assert_array_equal(ddp(x).data, m(x).data)
    np.testing.assert_array_equal(ddp.forward(x).data, m(x).data)


def test_grads_become_bucket_views_and_accumulate_without_zero_grad():
    m = fresh()
    ddp = dist.DistributedDataParallel(m)
    x, y = batch()
    F.cross_entropy(ddp(x), y).backward()
    first = {n: p.grad.data.copy() for n, p in m.named_parameters()}
    bufs = [b.buffer for b in ddp._buckets_list]
    for p in m.parameters():
        assert any(np.shares_memory(p._grad, b) for b in bufs)
    F.cross_entropy(ddp(x), y).backward()          # no zero_grad: the engine adds into the bucket
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.data, 2 * first[n], rtol=1e-12)


def test_no_sync_accumulates_and_next_backward_syncs_the_sum():
    ref, m = fresh(), fresh()
    ddp = dist.DistributedDataParallel(m)
    (x1, y1), (x2, y2) = batch(1), batch(2)
    with ddp.no_sync():
        F.cross_entropy(ddp(x1), y1).backward()
    F.cross_entropy(ddp(x2), y2).backward()
    F.cross_entropy(ref(x1), y1).backward()
    F.cross_entropy(ref(x2), y2).backward()
    for (n, p), q in zip(ref.named_parameters(), m.parameters()):
        np.testing.assert_allclose(q.grad.data, p.grad.data, rtol=1e-12, err_msg=n)


def test_unused_parameter_without_flag_is_named():
    ddp = dist.DistributedDataParallel(fresh(unused=True))
    x, y = batch()
    with pytest.raises(RuntimeError, match=r"extra\.weight, extra\.bias.*find_unused_parameters=True"):
        F.cross_entropy(ddp(x), y).backward()


def test_find_unused_parameters_leaves_unused_grads_none():
    m = fresh(unused=True)
    ddp = dist.DistributedDataParallel(m, find_unused_parameters=True)
    x, y = batch()
    for _ in range(2):
        F.cross_entropy(ddp(x), y).backward()
    assert m.extra.weight.grad is None and m.fc1.weight.grad is not None


def test_bucket_plan_reverse_order_first_cap_and_dtype_split():
    shapes = [(10,), (10,), (10,), (10,)]        # 80 bytes each in float64
    f8 = [np.dtype(np.float64)] * 4
    assert buckets.plan([3, 2, 1, 0], shapes, f8, cap_bytes=160, first_cap_bytes=80) == [[3], [2, 1], [0]]
    assert buckets.plan([3, 2, 1, 0], shapes, f8, cap_bytes=10**6, first_cap_bytes=10**6) == [[3, 2, 1, 0]]
    mixed = [np.dtype(np.float64), np.dtype(np.float32)] * 2
    assert buckets.plan([3, 2, 1, 0], shapes, mixed, 10**6, 10**6) == [[3, 1], [2, 0]]


def test_buckets_rebuilt_in_ready_order():
    m = fresh()
    ddp = dist.DistributedDataParallel(m, bucket_cap_mb=1e-5, first_bucket_cap_mb=1e-5)
    assert ddp.bucket_layout == [["fc2.bias"], ["fc2.weight"], ["fc1.bias"], ["fc1.weight"]]
    x, y = batch()
    F.cross_entropy(ddp(x), y).backward()
    ready = [names[0] for names in ddp.bucket_layout]
    assert sorted(ready) == sorted(n for n, _ in m.named_parameters())
    g = {n: p.grad.data.copy() for n, p in m.named_parameters()}   # copied over to the new buckets
    for n, p in m.named_parameters():
        assert any(np.shares_memory(p._grad, b.buffer) for b in ddp._buckets_list), n
        np.testing.assert_array_equal(p.grad.data, g[n])


def test_bf16_rounding_and_compress_hooks():
    vals = np.array([1.0, 1.00390625, 1.005859375, -3.5, 0.0, np.inf], np.float32)
    back = comm_hooks.from_bf16_bits(comm_hooks.to_bf16_bits(vals))
    np.testing.assert_array_equal(back, [1.0, 1.0, 1.0078125, -3.5, 0.0, np.inf])  # ties to even
    assert np.isnan(comm_hooks.from_bf16_bits(comm_hooks.to_bf16_bits(np.array([np.nan], np.float32))))[0]
    for hook, rtol in ((dist.fp16_compress_hook, 1e-3), (dist.bf16_compress_hook, 1e-2)):
        ref, m = fresh(dtype=np.float32), fresh(dtype=np.float32)
        ddp = dist.DistributedDataParallel(m)
        ddp.register_comm_hook(None, hook)
        x, y = batch(dtype=np.float32)
        F.cross_entropy(ddp(x), y).backward()
        F.cross_entropy(ref(x), y).backward()
        for p, q in zip(ref.parameters(), m.parameters()):
            np.testing.assert_allclose(q.grad.data, p.grad.data, rtol=rtol, atol=rtol * 1e-2)


def test_16bit_sum_ops_add_in_16_bits_rounding_to_nearest_even():
    bf = comm_hooks.to_bf16_bits
    a = bf(np.array([1.0, 1.0, 1.0078125, -2.0, 3.0e38], np.float32))
    b = bf(np.array([2.0 ** -8 * 1.5, 2.0 ** -8, 2.0 ** -8, 2.0, 3.0e38], np.float32))
    got = comm_hooks.from_bf16_bits(comm_hooks.bf16_sum_bits(a, b))
    # 1 + 1.5*2^-8 rounds up; 1 + 2^-8 and 1.0078125 + 2^-8 are ties -> even; overflow -> inf
    np.testing.assert_array_equal(got, [1.0078125, 1.0, 1.015625, 0.0, np.inf])
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float16)
    s16 = comm_hooks.fp16_sum_bits(x[0].view(np.uint16), x[1].view(np.uint16)).view(np.float16)
    np.testing.assert_array_equal(s16, x[0] + x[1])


def test_compress_hooks_reduce_in_place_in_the_bucket_dtype():
    m = fresh(dtype=np.float32)
    ddp = dist.DistributedDataParallel(m)
    for hook, fmt in ((dist.fp16_compress_hook, np.float16), (dist.bf16_compress_hook, None)):
        buf = np.array([0.1, -3.0, 1e-3], np.float32)
        gb = comm_hooks.GradBucket(0, buf, [], [], ddp.group, "test", True)
        want = buf.astype(fmt).astype(np.float32) if fmt else comm_hooks.from_bf16_bits(comm_hooks.to_bf16_bits(buf))
        out = hook(None, gb).wait()
        assert out is buf and out.dtype == np.float32
        np.testing.assert_array_equal(out, want)     # one process: just the 16-bit round trip


def test_bad_ddp_arguments():
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dist.DistributedDataParallel(fresh(), bucket_cap_mb=0)
    with pytest.raises(TypeError, match="callable"):
        dist.DistributedDataParallel(fresh()).register_comm_hook(None, 3)


def test_single_process_collectives_and_errors():
    x = np.arange(6.0).reshape(2, 3)
    assert dist.all_reduce(x, "avg") is x
    np.testing.assert_array_equal(dist.all_gather(x), x[None])
    np.testing.assert_array_equal(dist.reduce_scatter(x), x)
    t = dt.tensor(np.ones(3))
    assert dist.broadcast(t) is t
    assert dist.iall_reduce(x).wait() is x
    with pytest.raises(ValueError, match=r"shape \(3, 2\) must be C-contiguous"):
        dist.all_reduce(x.T)
    with pytest.raises(ValueError, match="unknown reduction op 'prod'"):
        dist.all_reduce(x, "prod")
    with pytest.raises(ValueError, match="src 1"):
        dist.broadcast(x, src=1)
    with pytest.raises(TypeError, match="'avg' needs a floating"):
        dist.all_reduce(np.arange(3), "avg")


def test_wait_mode_resolution(monkeypatch):
    monkeypatch.setattr(progress, "cores", lambda: 2)
    monkeypatch.delenv("DISTTRAIN_WAIT_MODE", raising=False)
    assert progress.resolve_wait_mode(None, local_size=2, threaded=False) == "spin"
    assert progress.resolve_wait_mode(None, local_size=4, threaded=False) == "sleep"
    assert progress.resolve_wait_mode(None, local_size=2, threaded=True) == "adaptive"
    assert progress.resolve_wait_mode(None, local_size=3, threaded=True) == "sleep"
    assert progress.resolve_wait_mode("spin", local_size=4, threaded=True) == "spin"
    monkeypatch.setenv("DISTTRAIN_WAIT_MODE", "sleep")
    assert progress.resolve_wait_mode(None, local_size=1, threaded=False) == "sleep"
    with pytest.raises(ValueError, match="wait mode 'busy'"):
        progress.resolve_wait_mode("busy", 1, False)


def test_blas_thread_count_set_at_run_time():
    before = threads.get_blas_threads()
    assert before, "numpy's OpenBLAS was not found among the loaded libraries"
    try:
        threads.set_blas_threads(1)
        assert threads.get_blas_threads() == [1] * len(before)
    finally:
        threads.set_blas_threads(before[0])


def test_bucket_plan_solo_parameters_and_completion_order():
    # 800-byte parameters (index 1, 3) get buckets of their own; the small ones
    # share one that stays open past them and launches when its last one is ready.
    shapes = [(10,), (100,), (10,), (100,), (10,)]
    f8 = [np.dtype(np.float64)] * 5
    assert buckets.plan([4, 3, 2, 1, 0], shapes, f8, 10**6, 10**6, solo_bytes=800) == [[3], [1], [4, 2, 0]]
    assert buckets.plan([4, 3, 2, 1, 0], shapes, f8, 160, 160, solo_bytes=800) == [[3], [4, 2], [1], [0]]
    built = buckets.build([[3], [4, 2, 0]], shapes, f8, solo_bytes=800)
    assert [b.solo for b in built] == [True, False] and built[0].nbytes == 800


class _Request:
    """A fake MPI request that completes on its n-th Test()."""

    def __init__(self, n, log=None, name=None):
        self.n, self.log, self.name = n, log, name

    def Test(self):
        self.n -= 1
        if self.n <= 0 and self.log is not None and self.name not in self.log:
            self.log.append(self.name)
        return self.n <= 0

    def Wait(self):
        self.n = 0
        return None


@pytest.mark.parametrize("threaded", [False, True])
def test_progress_engine_starts_in_order_and_waiter_drives(threaded):
    import time
    from disttrain.distributed.communicator import SingleProcessCommunicator
    eng = progress.ProgressEngine(SingleProcessCommunicator(), threaded, "adaptive", None)
    try:
        started, completed = [], []

        def slow_start():                       # e.g. a compression hook encoding its bucket
            time.sleep(0.05)
            started.append("encoded")
            return _Request(3, completed, "encoded")

        def start(name, n):
            def f():
                started.append(name)
                return _Request(n, completed, name)
            return f

        w1 = eng.submit("a", slow_start, lambda: "r1", start_in_thread=True)
        w2 = eng.submit("b", start("plain", 5), lambda: "r2")     # must queue behind w1's start
        assert (w2.wait(), w1.wait()) == ("r2", "r1")
        assert started == ["encoded", "plain"]
        assert completed == ["encoded", "plain"] and w1.seq < w2.seq
        # Started in the caller and completed by the waiter: no thread involved.
        w3 = eng.submit("c", start("direct", 4), lambda: 3)
        assert started[-1] == "direct" and not w3._done
        assert w3.wait() == 3 and eng.current_seq() == 3
        # progress(): the thread (if any) completes it while the caller does something else.
        w4 = eng.submit("d", start("background", 2), lambda: 4)
        eng.progress()
        if threaded:
            deadline = time.time() + 5
            while not w4._done and time.time() < deadline:
                time.sleep(0.001)
            assert w4._done and w4.result == 4
        assert w4.wait() == 4
        # A failing start is reported by wait(), and later work still runs.
        w5 = eng.submit("e", lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            w5.wait()
        assert eng.submit("f", start("after", 1), lambda: 6).wait() == 6
    finally:
        eng.close()


def test_large_gradient_is_reduced_where_it_lies(monkeypatch):
    from disttrain.distributed import ddp as ddp_mod
    monkeypatch.setattr(ddp_mod, "SOLO_BYTES", 200)   # fc1.weight (256 bytes) gets a solo bucket
    x, y = batch()
    ref = fresh()
    F.cross_entropy(ref(x), y).backward()
    m = fresh()
    seen = {}
    m.fc1.weight.register_post_accumulate_grad_hook(lambda p: seen.setdefault("g", p._grad))
    ddp = dist.DistributedDataParallel(m)
    assert [b.solo for b in ddp._buckets_list].count(True) == 1
    opt = dt.optim.SGD(m.parameters(), lr=0.0)
    for step in range(3):
        seen.clear()
        opt.zero_grad(set_to_none=step != 2)
        F.cross_entropy(ddp(x), y).backward()
        g = m.fc1.weight._grad
        assert g is seen["g"]             # backward's own array, not a copy in a bucket
        b, _ = ddp._where[ddp._names.index("fc1.weight")]
        assert b.solo and np.shares_memory(b.buffer, g)
        for n, p in m.named_parameters():
            np.testing.assert_allclose(p.grad.data, dict(ref.named_parameters())[n].grad.data, rtol=1e-12)
    # no_sync accumulates into the same array; the next synced backward adds one more batch.
    with ddp.no_sync():
        F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(ddp(x), y).backward()
    np.testing.assert_allclose(m.fc1.weight.grad.data, 3 * ref.fc1.weight.grad.data, rtol=1e-12)


def test_backward_that_raises_midway_does_not_break_the_next_step():
    class Boom(dt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            raise ValueError("bad batch")

    model, ref = fresh(), fresh()
    ddp = dist.DistributedDataParallel(model)
    x, y = batch()
    # fc2's gradients become ready (DDP's pass begins) before Boom.backward raises.
    with pytest.raises(ValueError, match="bad batch"):
        F.cross_entropy(model.fc2(Boom.apply(model.fc1(x)).relu()), y).backward()
    model.zero_grad()
    F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(ref(x), y).backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy(), err_msg=name)


@pytest.mark.parametrize("axis", [np.int64(1), (np.int64(0), 1)])
def test_reductions_accept_numpy_integer_axes(axis):
    x = dt.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for op in ("sum", "mean", "max", "min"):
        x.grad = None
        getattr(x, op)(axis=axis).sum().backward()
        assert x.grad.shape == (2, 3)


def test_progress_engine_after_close_starts_in_the_caller():
    # At exit the thread is gone: a submission meant for it must still start and finish.
    from disttrain.distributed.communicator import SingleProcessCommunicator
    eng = progress.ProgressEngine(SingleProcessCommunicator(), True, "sleep", None)
    eng.close()
    ran = []
    w = eng.submit("late", lambda: ran.append("started"), lambda: "result", start_in_thread=True)
    assert w.wait() == "result" and ran == ["started"]
