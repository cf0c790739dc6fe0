"""The distributed layer's doors in one process: backend and comm-hook registries, GradBucket views,
Work.then, the comm-hook config keys, PowerSGD's state and math (multi-rank: tests/test_powersgd.py)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F
from disttrain.distributed import comm_hooks, progress
from disttrain.distributed.communicator import DONE, SingleProcessCommunicator
from disttrain.distributed.powersgd import PowerSGDState, _orthogonalize, powerSGD_hook
from disttrain.training.config import ConfigError, dump_toml, load_config
from dtrun_helpers import write

BASE = '[model]\nname = "mlp"\n'


def test_backend_registry_in_a_fresh_process():
    code = textwrap.dedent("""
        import disttrain.distributed as dist
        from disttrain.distributed.communicator import SingleProcessCommunicator
        try:
            dist.init(backend="carrier-pigeon")
        except ValueError as e:
            print("ERR", e)
        class Loop(SingleProcessCommunicator):
            backend = "loop"
        dist.register_backend("loop", Loop)
        g = dist.init(backend="loop")
        print("BACKEND", dist.get_backend(), g.size, sorted(dist.registered_backends()))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "DISTTRAIN_BACKEND"):
        env.pop(v, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "ERR dist.init: unknown backend 'carrier-pigeon'; registered backends: mpi, single" in out.stdout
    assert "BACKEND loop 1 ['loop', 'mpi', 'single']" in out.stdout


def test_single_communicator_checks_wire_dtype():
    comm = SingleProcessCommunicator()
    assert comm.iallreduce(np.zeros(3, np.uint16), "sum", wire_dtype="bf16") is DONE
    with pytest.raises(ValueError, match="unknown wire_dtype 'fp8'"):
        comm.iallreduce(np.zeros(3, np.uint16), "sum", wire_dtype="fp8")
    with pytest.raises(ValueError, match="16-bit bit patterns"):
        comm.iallreduce(np.zeros(3, np.float32), "sum", wire_dtype="bf16")


class _Mlp(dt.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = dt.nn.Linear(6, 5)
        self.fc2 = dt.nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def test_grad_bucket_gradients_are_named_views_of_the_buffer():
    dt.manual_seed(0)
    m = _Mlp()
    ddp = dist.DistributedDataParallel(m)
    seen = []

    def hook(state, bucket):
        grads = bucket.gradients()
        flat = bucket.buffer()
        assert len(grads) == len(bucket.names) == len(bucket.offsets()) == len(bucket.shapes())
        for g, off, shape in zip(grads, bucket.offsets(), bucket.shapes()):
            assert g.shape == shape and np.shares_memory(g, flat)
            np.testing.assert_array_equal(g.reshape(-1), flat[off:off + g.size])
        seen.append((list(bucket.names), [g.copy() for g in grads]))
        grads[0][...] += 1.0          # writing a view writes the bucket
        return comm_hooks.allreduce_hook(None, bucket)

    ddp.register_comm_hook(None, hook)
    x = dt.tensor(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    F.cross_entropy(ddp(x), dt.tensor(np.array([0, 1, 2, 0]))).backward()
    params = dict(m.named_parameters())
    assert sorted(n for names, _ in seen for n in names) == sorted(params)
    for names, grads in seen:
        for name, g in zip(names, grads):
            assert g.shape == params[name].data.shape
        np.testing.assert_array_equal(params[names[0]].grad.data, grads[0] + 1.0)


class _Req:
    def __init__(self, log, name):
        self.log, self.name, self.n = log, name, 2

    def Test(self):
        self.n -= 1
        if self.n <= 0 and self.name not in self.log:
            self.log.append(self.name)
        return self.n <= 0

    def Wait(self):
        self.n = 0
        return self.Test()


@pytest.mark.parametrize("threaded", [False, True])
def test_work_then_keeps_its_place_in_the_order(threaded):
    eng = progress.ProgressEngine(SingleProcessCommunicator(), threaded, "adaptive", None)
    try:
        started, done = [], []

        def start(name):
            def f(*_):
                started.append(name)
                return _Req(done, name)
            return f

        w1 = eng.submit("first", start("first"), lambda: 41)
        w2 = w1.then(lambda r: start(f"then({r})")(), lambda: "second")
        w3 = eng.submit("third", start("third"), lambda: 3)     # submitted later: starts after w2
        assert started == ["first"] and not w2._done           # nothing after w2 starts before w1 completes
        assert w3.wait() == 3 and w2.wait() == "second" and w1.wait() == 41
        assert started == ["first", "then(41)", "third"] and done == started
        assert w1.seq < w2.seq < w3.seq

        def broken():
            raise RuntimeError("link down")
        bad = eng.submit("bad", broken)
        after = bad.then(start("never"))
        with pytest.raises(RuntimeError, match="link down"):
            after.wait()
        assert "never" not in started
        assert eng.submit("later", start("later"), lambda: "ok").wait() == "ok"
    finally:
        eng.close()


def test_comm_hook_registry_and_config_keys(tmp_path):
    assert {"allreduce", "fp16", "bf16", "powersgd"} <= set(dist.registered_comm_hooks())
    state, hook = dist.create_comm_hook("powersgd", matrix_approximation_rank=3)
    assert hook is powerSGD_hook and state.matrix_approximation_rank == 3 and state.start_powerSGD_iter == 10
    assert dist.create_comm_hook("bf16") == (None, dist.bf16_compress_hook)
    with pytest.raises(TypeError, match="takes no argument"):
        dist.create_comm_hook("fp16", rank=2)
    path = write(tmp_path / "j.toml", BASE)
    cfg = load_config(path, ["distributed.comm_hook=powersgd",
                             "distributed.comm_hook_args.matrix_approximation_rank=4"])
    args = cfg.distributed.comm_hook_args
    assert cfg.distributed.comm_hook == "powersgd" and args["matrix_approximation_rank"] == 4
    assert args["start_powerSGD_iter"] == 10 and args["warm_start"] is True     # defaults filled in
    again = load_config(write(tmp_path / "resolved.toml", dump_toml(cfg)))
    assert again.as_dict() == cfg.as_dict()
    table = BASE + '[distributed]\ncomm_hook = "powersgd"\n[distributed.comm_hook_args]\nmin_compression_rate = 1\n'
    assert load_config(write(tmp_path / "t.toml", table)).distributed.comm_hook_args["min_compression_rate"] == 1.0
    # a hook registered by user code is a config choice, with its own parameters
    dist.register_comm_hook("test_scaled", lambda factor: (factor, comm_hooks.allreduce_hook),
                            params=(comm_hooks.HookParam("factor", "float", 1.0, "x", low=0.0),))
    cfg = load_config(path, ["distributed.comm_hook=test_scaled", "distributed.comm_hook_args.factor=2"])
    assert cfg.distributed.comm_hook_args == {"factor": 2.0}


@pytest.mark.parametrize("overrides, expected", [
    (["distributed.comm_hook=powersgd", "distributed.comm_hook_args.matrix_aproximation_rank=4"],
     "[distributed.comm_hook_args] matrix_aproximation_rank: unknown parameter of comm hook \"powersgd\""),
    (["distributed.comm_hook=powersgd", "distributed.comm_hook_args.matrix_approximation_rank=0"],
     "[distributed.comm_hook_args] matrix_approximation_rank: must be >= 1, got 0."),
    (["distributed.comm_hook=powersgd", "distributed.comm_hook_args.start_powerSGD_iter=1"],
     "start_powerSGD_iter: must be >= 2"),
    (["distributed.comm_hook=powersgd", "distributed.comm_hook_args.warm_start=3"],
     "warm_start: must be true or false, got an integer 3."),
    (["distributed.comm_hook=fp16", "distributed.comm_hook_args.rank=2"], "it takes no parameters"),
    (["distributed.comm_hook=powerSGD"], "Did you mean 'powersgd'?"),
    (["distributed.comm_hook_args=3"], "[distributed] comm_hook_args: must be a table"),
])
def test_comm_hook_config_errors(tmp_path, overrides, expected):
    path = write(tmp_path / "j.toml", BASE)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert expected in msg and msg.endswith("Nothing was started.") and "\n" not in msg, msg
    if "aproximation" in expected:
        assert msg.startswith("--set distributed.comm_hook_args.matrix_aproximation_rank=4")
        assert "Did you mean 'matrix_approximation_rank'?" in msg


def test_gram_schmidt_orthonormal_and_zero_columns_stay_finite():
    a = np.random.default_rng(1).standard_normal((7, 3))
    _orthogonalize(a, 0.0)
    np.testing.assert_allclose(a.T @ a, np.eye(3), atol=1e-12)
    z = np.zeros((4, 2))
    _orthogonalize(z, 1e-8)
    assert np.isfinite(z).all() and not z.any()


def _bucket(grads, names, group):
    sizes = [g.size for g in grads]
    flat = np.concatenate([g.reshape(-1) for g in grads])
    views, off = [], 0
    for g, n in zip(grads, sizes):
        views.append(flat[off:off + n].reshape(g.shape))
        off += n
    return comm_hooks.GradBucket(0, flat, [None] * len(grads), names, group, "test", True, views=views)


def test_powersgd_single_process_plan_exactness_and_state_round_trip():
    group = dist.default_group()
    rng = np.random.default_rng(2)
    shapes = {"conv.weight": (4, 2, 3, 3), "fc.weight": (9, 5), "fc.bias": (9,)}
    # epsilon 0: exact Gram-Schmidt (the default 1e-8 shifts a short column's norm by eps/|col|)
    state = PowerSGDState(matrix_approximation_rank=9, min_compression_rate=0.1, start_powerSGD_iter=2,
                          orthogonalization_epsilon=0.0)
    state.iter = 2
    # the plan: a vector never compressed; conv weights viewed as (out, in*kh*kw)
    assert state.plan((9,)) == (False, (9, 1), 1)
    assert state.plan((4, 2, 3, 3)) == (True, (4, 18), 4)
    grads = [rng.standard_normal(s) for s in shapes.values()]
    b = _bucket(grads, list(shapes), group)
    out = powerSGD_hook(state, b).wait()
    assert out is b.buffer()
    for g, v in zip(grads, b.gradients()):          # full rank: exact (one process: the gradient itself)
        np.testing.assert_allclose(v, g, rtol=1e-9, atol=1e-12)
    assert state.iter == 3 and set(state.errors) == set(state.qs) == {"conv.weight", "fc.weight"}
    sd = state.state_dict()
    other = PowerSGDState(matrix_approximation_rank=9, min_compression_rate=0.1, start_powerSGD_iter=2)
    other.load_state_dict(sd, shapes=shapes)
    assert other.iter == 3 and all(np.array_equal(other.qs[k], state.qs[k]) for k in state.qs)
    bad = dict(sd, **{"q/fc.weight": np.zeros((5, 2))})
    with pytest.raises(ValueError, match=r"q/fc.weight is \(5, 2\); parameter fc.weight \(9, 5\)"):
        other.load_state_dict(bad, shapes=shapes)
    with pytest.raises(ValueError, match="names no parameter"):
        other.load_state_dict(dict(sd, **{"error/ghost": np.zeros((2, 2))}), shapes=shapes)
    with pytest.raises(ValueError, match="'iter' must be an integer"):
        other.load_state_dict({"iter": np.array(1.5)})
    assert other.iter == 3          # a refused state changes nothing
    with pytest.raises(ValueError, match="start_powerSGD_iter must be >= 2"):
        PowerSGDState(start_powerSGD_iter=1)
    PowerSGDState(start_powerSGD_iter=0, use_error_feedback=False, warm_start=False)


def test_powersgd_before_start_iter_is_a_plain_allreduce_and_counts_steps():
    group = dist.default_group()
    state = PowerSGDState(start_powerSGD_iter=3)
    g = np.arange(20.0).reshape(4, 5)
    for step in range(3):
        b = _bucket([g.copy()], ["w"], group)
        powerSGD_hook(state, b).wait()
        np.testing.assert_array_equal(b.gradients()[0], g)
        assert state.iter == step + 1 and not state.errors
    b = _bucket([g.copy()], ["w"], group)
    powerSGD_hook(state, b).wait()                  # rank 1 of a rank-2 matrix: compressed, with an error
    assert state.iter == 4 and "w" in state.errors
    np.testing.assert_allclose(b.gradients()[0] + state.errors["w"], g, rtol=1e-12)   # one rank: share = g


def test_bf16_kernel_matches_the_numpy_reference_bit_for_bit():
    # the Numba kernel MPI calls for bf16 allreduces == wire16.bf16_sum_bits (decode, add, round even)
    from disttrain.distributed.wire16 import bf16_sum_bits, to_bf16_bits
    from disttrain.kernels.bits16 import bf16_add_into
    rng = np.random.default_rng(3)
    scale = rng.choice(np.array([1e-38, 1e-3, 1.0, 1e30, 3e38], np.float32), size=(2, 5003))
    with np.errstate(over="ignore"):
        x = rng.standard_normal((2, 5003)).astype(np.float32) * scale
    x[:, :6] = [[np.nan, np.inf, -np.inf, 1.0, 3e38, 1.0], [1.0, 1.0, np.inf, 2.0 ** -8, 3e38, -1.0]]
    a, b = to_bf16_bits(x[0]), to_bf16_bits(x[1])
    with np.errstate(invalid="ignore", over="ignore"):
        want = bf16_sum_bits(a, b)
    got = b.copy()
    bf16_add_into(a, got)
    np.testing.assert_array_equal(got, want)
    first = (got[:3].astype(np.uint32) << 16).view(np.float32)
    assert np.isnan(first[0]) and first[1] == np.inf and np.isnan(first[2])     # NaN + 1, inf + 1, inf - inf
