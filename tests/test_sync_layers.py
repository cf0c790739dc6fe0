"""SyncBatchNorm and gradient clipping across real ranks (`mpiexec -n N`, one launch per N)."""
import functools
import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402

CHECKS = ["syncbn_1d", "syncbn_3d_input", "syncbn_2d", "syncbn_in_ddp", "clip_under_ddp"]


@functools.lru_cache(maxsize=None)
def launch(n):
    out = tempfile.mkdtemp(prefix=f"disttrain-models{n}-")
    rc, stdout, stderr, _ = mpirun.run(n, "model_checks.py", out, timeout=180)
    results = {}
    for r in range(n):
        path = os.path.join(out, f"results-{r}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[r] = json.load(f)
    return rc, stdout, stderr, results


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("name", CHECKS)
def test_sync_layers(n, name):
    rc, stdout, stderr, results = launch(n)
    assert rc == 0 and len(results) == n, f"mpiexec -n {n} failed (rc {rc}):\n{stdout[-2000:]}\n{stderr[-3000:]}"
    bad = {r: res.get(name, "not run") for r, res in results.items() if res.get(name) != "ok"}
    assert not bad, f"{name} on {n} ranks: {bad}\n{stderr[-3000:]}"
