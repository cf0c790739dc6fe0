"""Multi-rank tests: real `mpiexec -n N` launches (N = 1..4; 3 and 4 oversubscribe 2 cores).

All checks of one N run in ONE launch (tests/mpi/dist_checks.py) to keep the
time down; each test below asserts on that launch's per-rank results. The
failure-path tests each need a job of their own, since the job must end.
"""
import functools
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402

NS = [1, 2, 3, 4]


@functools.lru_cache(maxsize=None)
def checks(n):
    return mpirun.run_checks(n, "dist_checks.py", timeout=240)


def assert_ok(n, name):
    mpirun.assert_check_ok(checks(n), n, name)


@pytest.mark.parametrize("n", NS)
def test_collectives(n):
    assert_ok(n, "collectives")


EQUIV = [f"ddp_{kind}_{dtype}{variant}" for kind in ("sgd", "adam") for dtype in ("float32", "float64")
         for variant in ("", "_no_sync", "_many_buckets")]


@pytest.mark.parametrize("name", EQUIV)
@pytest.mark.parametrize("n", NS)
def test_ddp_matches_single_process_and_ranks_agree_bitwise(n, name):
    # 10 steps of DDP on N x 4 samples == 10 single-process steps on the global batch
    # (rel. diff <= 1e-5 float32, <= 1e-10 float64); parameters bitwise equal on all ranks.
    assert_ok(n, name)


@pytest.mark.parametrize("mode", ["hooks_sleep", "hooks_spin", "thread_spin"])
@pytest.mark.parametrize("n", [2, 3])
def test_ddp_other_progress_and_wait_modes(n, mode):
    # default: communication thread, wait "adaptive" (N <= cores) or "sleep" (N > cores)
    assert_ok(n, f"ddp_progress_{mode}")


@pytest.mark.parametrize("n", NS)
def test_ddp_find_unused_parameters(n):
    assert_ok(n, "ddp_find_unused")


@pytest.mark.parametrize("n", [2, 4])
def test_ddp_parameter_used_on_one_rank_gets_the_average(n):
    assert_ok(n, "ddp_partially_used")


@pytest.mark.parametrize("n", NS)
def test_ddp_unused_parameter_without_flag_names_it(n):
    assert_ok(n, "ddp_unused_error")


@pytest.mark.parametrize("n", [2, 3])
def test_ddp_unused_on_one_rank_raises_there_and_leaves_collectives_matched(n):
    assert_ok(n, "ddp_unused_on_one_rank_error")


@pytest.mark.parametrize("n", [2, 3])
def test_ddp_mismatched_models_fail_on_every_rank(n):
    assert_ok(n, "ddp_mismatch_error")
    # mpiexec may glue the ranks' lines together: search, don't split
    ranks = re.findall(r"MISMATCH rank=(\d+) DistributedDataParallel: rank \1: the model differs", checks(n)["stdout"])
    assert sorted(map(int, ranks)) == list(range(n))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ddp_fp16_bf16_comm_hooks(n):
    # DDP with each hook ~= single process, ranks bitwise equal, thread and hooks progress
    assert_ok(n, "ddp_comm_hooks")


@pytest.mark.parametrize("n", NS)
def test_16bit_allreduce_sums_in_16_bits(n):
    # fp16 (native and user op) and bf16 (user op) allreduce == numpy's 16-bit adds, bit for bit
    assert_ok(n, "comm_hooks_exact")


@pytest.mark.parametrize("n", [2, 3])
def test_stall_detector_names_the_late_rank(n):
    assert_ok(n, "stall_detector")
    assert f"ranks that have not joined it: [{n - 1}]" in checks(n)["stdout"]


@pytest.mark.parametrize("n", [1, 2])
def test_timeline_is_chrome_trace_json(n):
    assert_ok(n, "timeline")
    for r in range(n):
        with open(os.path.join(checks(n)["out"], f"trace-{r}.json")) as f:
            trace = json.load(f)
        assert {e["ph"] for e in trace["traceEvents"]} == {"M", "X"}


@pytest.mark.parametrize("n", [2, 3])
def test_ddp_broadcasts_rank0_buffers_before_forward(n):
    assert_ok(n, "ddp_broadcast_buffers")


@pytest.mark.parametrize("n", [3, 4])
def test_distributed_sampler_shards(n):
    assert_ok(n, "sampler")


@pytest.mark.parametrize("n", [2, 4])
def test_blas_threads_limited_per_rank(n):
    assert_ok(n, "thread_limits")


def _assert_job_ended(rc, out, err, secs, *needles):
    assert rc != 0, f"job exited 0:\n{out}\n{err}"
    assert secs < 30, f"job took {secs:.1f} s to end"
    for s in needles:
        assert s in err + out, f"{s!r} not in output:\n{out}\n{err}"


def test_raising_rank_aborts_the_whole_job():
    rc, out, err, secs = mpirun.run(2, "fail_cases.py", "raise", timeout=60)
    _assert_job_ended(rc, out, err, secs, "rank 1 of 2: uncaught exception",
                      "ValueError: deliberate failure in the training loop")


def test_sys_exit_nonzero_aborts_the_whole_job():
    rc, out, err, secs = mpirun.run(3, "fail_cases.py", "exit", timeout=60)
    _assert_job_ended(rc, out, err, secs, "rank 1 of 3: exited with sys.exit(3)")
    assert rc == 3


def test_uncaught_model_mismatch_ends_the_job():
    rc, out, err, secs = mpirun.run(2, "fail_cases.py", "mismatch", timeout=60)
    _assert_job_ended(rc, out, err, secs, "ModelMismatchError", "(8, 3)", "(9, 3)")


def test_stall_abort_ends_the_job_and_names_the_late_rank():
    rc, out, err, secs = mpirun.run(3, "fail_cases.py", "stall", timeout=60)
    _assert_job_ended(rc, out, err, secs, "ranks that have not joined it: [2]", "aborting the job (stall_abort=True)")
