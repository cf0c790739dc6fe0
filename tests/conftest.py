import os
import tempfile

# Before numba is imported anywhere: a cache shared by every test process
# (multi-rank tests included), so kernels compile once per machine.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "disttrain-test-numba-cache"))
