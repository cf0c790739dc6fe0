"""Defects found by the review of the cycle-2 integration, each a test that failed before its fix."""
import os

import numpy as np

from dtrun_helpers import dtrun, write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(REPO, "configs", "digits_mlp.toml")


def test_sharded_sgd_job_resumes(tmp_path):
    """Resuming validates the checkpoint against a plain optimizer built from the sharded one's rule and
    hyperparameters: SGD's required lr must be passed (it raised a TypeError traceback)."""
    args = ["-n", "2", DIGITS, "--run-dir", "r", "--set", "distributed.shard_optimizer=true",
            "--set", "train.max_steps=30", "--set", "checkpoint.interval=10"]
    rc, out, err, _ = dtrun(*args, cwd=tmp_path, timeout=120, env={"DTRUN_TEST_KILL_AT_STEP": "1:15"})
    assert rc != 0 and "SIGKILL" in err, err
    rc, out, err, _ = dtrun(*args, "--resume", cwd=tmp_path, timeout=120)
    assert rc == 0 and "resumed at step 10" in out and "Traceback" not in err, err


def test_non_finite_regression_targets_are_named(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True).astype(np.float32)
    y[5] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = write(tmp_path / "job.toml", "[model]\nname = 'mlp'\nhidden = [8]\n[data]\nsource = 'npz'\npath = 'd.npz'\n"
                "[task]\nname = 'regression'\n[train]\nepochs = 1\nbatch_size = 10\n")
    rc, out, err, _ = dtrun("check", cfg, cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err, err
    assert "d.npz [y_key 'y']: the targets hold non-finite value(s) (NaN/inf) in 1 sample(s), the first at sample 5" \
        in err, err
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["a"] * 100))
    rc, out, err, _ = dtrun("check", cfg, cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err and "the targets have dtype <U1" in err, err


def test_a_task_that_does_not_fit_the_source_is_refused(tmp_path):
    rc, out, err, _ = dtrun("check", os.path.join(REPO, "configs", "char_gpt.toml"), "--set", "task.name=regression",
                            cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err, err
    assert "[task] name" in err and '"regression" does not fit [data] source "text"' in err, err
    rc, out, err, _ = dtrun("check", DIGITS, "--set", "task.name=language_model", cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err and "does not fit [data] source" in err, err


def test_ranks_ending_with_os_exit_0_are_a_success(tmp_path):
    """A rank that skips Python's teardown with os._exit(0) never says 'done': on one host that is no failure."""
    script = write(tmp_path / "quick.py", "import os\nfrom mpi4py import MPI\nMPI.COMM_WORLD.Barrier()\n"
                   "print('bye', MPI.COMM_WORLD.Get_rank(), flush=True)\nMPI.Finalize()\nos._exit(0)\n")
    rc, out, err, _ = dtrun("-n", "2", script, cwd=tmp_path, timeout=60)
    assert rc == 0, err
    assert "[0] bye 0" in out and "[1] bye 1" in out, out


def test_a_non_finite_metric_is_never_the_best_nor_written_as_nan():
    import json
    from disttrain.training.metrics import strict
    from disttrain.training.tasks import Task
    task = Task.__new__(Task)
    task.higher_is_better = False
    assert task.better(0.5, None) and task.better(0.4, 0.5) and not task.better(0.6, 0.5)
    assert not task.better(float("nan"), None) and not task.better(float("inf"), 0.5)
    # what a checkpoint's meta holds of a NaN evaluation: null, so json.dumps(allow_nan=False) works
    assert json.dumps(strict({"step": 5, "val_loss": float("nan")}), allow_nan=False) == '{"step": 5, "val_loss": null}'
