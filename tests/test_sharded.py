"""ShardedOptimizer (ZeRO-1): library mode here; multi-rank checks in real `mpiexec -n N` launches
(tests/mpi/shard_checks.py, all checks of one N in one launch; failure paths in shard_fail.py)."""
import functools
import os
import sys

import numpy as np
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn.functional as F
from disttrain.distributed.sharded import slice_bounds

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402


def net(dtype=np.float64):
    dt.manual_seed(3)
    return dt.nn.Sequential(dt.nn.Linear(4, 8, dtype=dtype), dt.nn.ReLU(), dt.nn.Linear(8, 3, dtype=dtype))


def test_slices_are_balanced_aligned_and_cover_the_bucket():
    for n, parts, itemsize in [(1000, 3, 4), (10, 4, 8), (16 * 7 + 3, 2, 4), (0, 3, 4)]:
        b = slice_bounds(n, parts, itemsize)
        assert b[0] == 0 and b[-1] == n and all(x <= y for x, y in zip(b, b[1:]))
        assert all(x * itemsize % 64 == 0 for x in b[:-1]), b
        assert max(np.diff(b)) - min(np.diff(b)) <= 2 * 64 // itemsize, b


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_one_process_is_bitwise_the_plain_optimizer_and_state_dicts_interchange(kind):
    cls, kw = {"sgd": (dt.optim.SGD, dict(lr=0.1, momentum=0.9)), "adam": (dt.optim.Adam, dict(lr=0.01)),
               "adamw": (dt.optim.AdamW, dict(lr=0.01))}[kind]
    plain, wrapped = net(), net()
    ddp = dt.DistributedDataParallel(wrapped, bucket_cap_mb=0.0002)       # several buckets
    opts = [cls(plain.parameters(), **kw), dist.ShardedOptimizer(ddp, cls, **kw)]
    assert not opts[1].node_shared and len(opts[1]._pieces) > 1
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = dt.tensor(rng.standard_normal((6, 4))), dt.tensor(rng.integers(0, 3, 6))
        for m, o in zip((plain, ddp), opts):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    a, b = opts[0].state_dict(), opts[1].state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, v in a["state"][k].items():
            np.testing.assert_array_equal(v, b["state"][k][name], err_msg=f"{k}/{name}")
    fresh = dist.ShardedOptimizer(dt.DistributedDataParallel(net(), bucket_cap_mb=0.0002), cls, **kw)
    fresh.load_state_dict(a)                  # a plain optimizer's state loads into a sharded one
    c = fresh.state_dict()
    for k in a["state"]:
        for name, v in a["state"][k].items():
            np.testing.assert_array_equal(v, c["state"][k][name])


def test_schedules_and_registered_rules_work():
    @dt.optim.register_rule("signsgd_shard_test", defaults={"lr": 0.01}, override=True)
    def signsgd(theta, grad, state, hp):
        theta -= hp["lr"] * np.sign(grad)

    m = net()
    opt = dist.ShardedOptimizer(dt.DistributedDataParallel(m), "signsgd_shard_test", lr=0.5)
    sched = dt.optim.StepLR(opt, step_size=1, gamma=0.5)
    before = [p.data.copy() for p in m.parameters()]
    F.cross_entropy(m(dt.tensor(np.ones((2, 4)))), dt.tensor(np.array([0, 1]))).backward()
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.25
    for p, b in zip(m.parameters(), before):
        np.testing.assert_allclose(np.abs(p.data - b)[p.grad.data != 0], 0.5)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="DistributedDataParallel"):
        dist.ShardedOptimizer(net(), dt.optim.Adam)
    with pytest.raises(ValueError, match="shared_memory"):
        dist.ShardedOptimizer(dt.DistributedDataParallel(net()), dt.optim.Adam, shared_memory="yes")
    with pytest.raises(TypeError, match="Optimizer class"):
        dist.ShardedOptimizer(dt.DistributedDataParallel(net()), 3)
    with pytest.raises(ValueError, match="lr"):
        dist.ShardedOptimizer(dt.DistributedDataParallel(net()), dt.optim.Adam, lr=-1)
    ddp = dt.DistributedDataParallel(net())
    with pytest.raises(ValueError, match="betas"):          # nothing attached to ddp by a failed call
        dist.ShardedOptimizer(ddp, "adam", betas=(1.5, 0.9))
    with pytest.raises(ValueError, match="ranks_per_node"):
        dist.ShardedOptimizer(ddp, "adam", ranks_per_node=0)
    dist.ShardedOptimizer(ddp, dt.optim.Adam)
    with pytest.raises(RuntimeError, match="already has a ShardedOptimizer"):
        dist.ShardedOptimizer(ddp, dt.optim.Adam)


# -- multi-rank ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def checks(n, resize=False):
    args = [os.path.join(checks(2)["out"], "step-00000008.npz")] if resize else []
    return mpirun.run_checks(n, "shard_checks.py", *args, timeout=240)


def assert_ok(n, name, resize=False):
    run = checks(n, resize)
    assert run["rc"] == 0 and len(run["results"]) == n, (
        f"mpiexec -n {n} failed (rc {run['rc']}):\n{run['stdout'][-3000:]}\n{run['stderr'][-3000:]}")
    bad = {r: res.get(name, "not run") for r, res in run["results"].items() if res.get(name) != "ok"}
    assert not bad, f"{name} with {n} ranks: {bad}\n{run['stderr'][-3000:]}"


EQUIV = [f"equiv_{k}_{d}_{p}" for k in ("sgd", "adam") for d in ("float32", "float64") for p in ("any", "node")]
EQUIV += ["equiv_adam_float32_any_accum", "equiv_adam_float32_node_accum", "equiv_adam_float64_hier"]


@pytest.mark.parametrize("name", EQUIV)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_sharded_equals_ddp_and_one_process_ranks_bitwise_run_to_run(n, name):
    # 20 steps: vs plain DDP within 1e-6 (float32) / 1e-12 (float64) relative, vs one process on the
    # global batch within DDP's own bounds; parameters bitwise equal on every rank and run to run.
    # any: reduce-scatter + all-gather; node: shared-memory windows; hier: nodes of N//2 ranks.
    assert_ok(n, name)


# (ranks, check): what each check of shard_checks.py asserts
PROPERTIES = (
    # node-shared path == any-topology path (1e-6 / 1e-12; bitwise at 2 ranks)
    [(n, "node_equals_any") for n in (2, 3, 4)]
    # this rank's optimizer state bytes <= 1/N (+ alignment) and one copy's ranks hold it all
    + [(n, f"state_bytes_{p}") for n in (2, 4) for p in ("any", "node")]
    # the parameter window: one copy per node, every rank's parameters are views into it
    + [(n, "windows") for n in (2, 4)]
    # 10 steps, consolidate, checkpoint, fresh objects, load, 10 steps == 20 steps, bit for bit
    + [(n, f"resume_bitwise_{p}") for n in (2, 3) for p in ("any", "node")]
    # comm hook + sharded, step() after no_sync only, a parameter no rank used, a bare module
    + [(n, "errors") for n in (2, 3)]
    # the timeline shows reduce-scatter / all-gather / node barriers and the optimizer step
    + [(n, "timeline") for n in (1, 2)]
    # a layer used on rank 0 only (find_unused_parameters=True) updates as under plain DDP
    + [(n, "partially_used") for n in (2, 3)]
)


@pytest.mark.parametrize("n,name", PROPERTIES)
def test_sharded_property(n, name):
    assert_ok(n, name)


@pytest.mark.parametrize("path", ["any", "node"])
@pytest.mark.parametrize("m", [1, 3, 4])
def test_checkpoint_from_2_ranks_resumes_on_m_ranks(m, path):
    assert_ok(2, "save_for_resize")
    assert_ok(m, f"resume_resized_{path}", resize=True)


@pytest.mark.parametrize("mode,path,n", [("raise", "node", 2), ("kill", "node", 3), ("raise", "any", 2)])
def test_a_rank_dying_mid_step_ends_the_job(mode, path, n):
    rc, out, err, secs = mpirun.run(n, "shard_fail.py", mode, path, timeout=60)
    assert rc != 0, f"job exited 0:\n{out}\n{err}"
    assert secs < 30, f"job took {secs:.1f} s to end"
    assert "still running" not in out
    if mode == "raise":
        assert f"rank {n - 1} of {n}: uncaught exception" in err + out and "deliberate failure" in err + out


def test_config_job_sharded_resumes_bitwise_and_matches_plain_ddp(tmp_path):
    """[distributed] shard_optimizer = true (node-shared path: 2 ranks on this machine) through dtrun:
    checkpoints hold the consolidated state, an interrupted run resumes bit for bit."""
    from dtrun_helpers import dtrun, write
    from disttrain.training import checkpoint as ckpt
    from test_job import RESUME_JOB, _reproducible
    cfg = write(tmp_path / "job.toml", RESUME_JOB)
    shard = ["--set", "distributed.shard_optimizer=true"]
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "plain", cwd=tmp_path, timeout=240)
    assert rc == 0, err
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "full", *shard, cwd=tmp_path, timeout=240)
    assert rc == 0, err
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "cut", *shard, cwd=tmp_path, timeout=240,
                            env={"DTRUN_TEST_KILL_AT_STEP": "1:10"})
    # Which rank dtrun names is the launcher's business (tested in test_job.py): on a heavily loaded
    # machine its 5 ms death watch can see both ranks gone at once and fall back to Hydra's banner.
    assert rc != 0 and "failed: killed by SIGKILL" in err, err
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "cut", "--resume", *shard, cwd=tmp_path, timeout=240)
    assert rc == 0 and "resumed at step" in out, err
    full, cut = _reproducible(tmp_path / "full"), _reproducible(tmp_path / "cut")
    assert len(full) > 10 and full == cut
    (a, sa, _), (b, sb, _), (p, sp, _) = (ckpt.read(ckpt.latest(tmp_path / d / "checkpoints"))
                                          for d in ("full", "cut", "plain"))
    assert a.keys() == b.keys() == p.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for k in a:
        np.testing.assert_allclose(a[k], p[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # the consolidated optimizer state has the plain optimizer's layout
    assert sa["state"].keys() == sp["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i]["exp_avg"].shape == sp["state"][i]["exp_avg"].shape
    rc, out, err, _ = dtrun("check", cfg, *shard, "--set", "distributed.comm_hook=fp16", cwd=tmp_path, timeout=60)
    assert rc != 0 and "[distributed] comm_hook" in err and "shard_optimizer" in err and "Traceback" not in err


def test_nan_on_one_rank_stops_every_rank_of_a_sharded_job(tmp_path):
    """With the sharded optimizer each rank holds only its own (unreduced) gradients, so a NaN on rank 1
    alone must still stop rank 0 too (the verdict is agreed by one tiny allreduce), before any update."""
    from dtrun_helpers import dtrun
    cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "digits_mlp.toml")
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "r", "--set", "distributed.shard_optimizer=true",
                            "--set", "train.epochs=1", cwd=tmp_path, timeout=120, env={"DTRUN_TEST_NAN_LOSS_AT": "1:3"})
    assert rc != 0 and "Traceback" not in err, err
    assert "training diverged at step 3: the gradient norm is nan" in err, err
    ckpts = tmp_path / "r" / "checkpoints"
    assert not ckpts.exists() or not os.listdir(ckpts)        # nothing was checkpointed after the NaN
