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
    monkeypatch.setattr(progress, "_cores", lambda: 2)
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
