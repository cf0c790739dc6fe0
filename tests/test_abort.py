"""abort_job always ends the process, even where MPI_Abort returns (MPICH on a host cut off from mpiexec)."""
import os
import subprocess
import sys
import time

SCRIPT = """
import sys, time
from disttrain.distributed import abort

class ReturningAbort:            # what MPICH's MPI_Abort does when the proxy cannot reach mpiexec
    calls = 0
    def abort(self, code):
        ReturningAbort.calls += 1
        print("abort called", ReturningAbort.calls, flush=True)

class BlockingAbort:             # an MPI_Abort that never returns nor ends the process
    def abort(self, code):
        time.sleep(60)

comm = ReturningAbort() if sys.argv[1] == "returns" else BlockingAbort()
abort.abort_job(comm, 7, "test: aborting\\n")
print("still running after abort_job", flush=True)
"""


def _run(mode):
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, DTRUN_CONTROL="1"))
    return p, time.monotonic() - t


def test_abort_job_exits_when_mpi_abort_returns():
    p, secs = _run("returns")
    assert p.returncode == 7, p
    assert p.stdout.count("abort called") == 1 and "still running" not in p.stdout, p.stdout
    assert "test: aborting" in p.stderr
    # dtrun is told this rank is ending the job (a control line, hidden by dtrun)
    assert "\x1edtrun:failed test: aborting" in p.stderr, p.stderr


def test_abort_job_exits_when_mpi_abort_blocks():
    p, secs = _run("blocks")
    assert p.returncode == 7 and "still running" not in p.stdout, p
    assert secs < 15, secs            # ABORT_GRACE (3 s) plus start-up
