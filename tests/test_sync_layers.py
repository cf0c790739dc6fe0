"""SyncBatchNorm and gradient clipping across real ranks (`mpiexec -n N`, one launch per N)."""
import functools
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402

CHECKS = ["syncbn_1d", "syncbn_3d_input", "syncbn_2d", "syncbn_in_ddp", "clip_under_ddp"]


@functools.lru_cache(maxsize=None)
def launch(n):
    return mpirun.run_checks(n, "model_checks.py", timeout=180)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", CHECKS)
def test_sync_layers(n, name):
    mpirun.assert_check_ok(launch(n), n, name)
