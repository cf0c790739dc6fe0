"""Per-rank thread limits for BLAS and Numba.

Measured here: 2 ranks with 2 BLAS threads each made a 512x512 matmul 4.3x
slower than 1 thread each. Each rank gets ``cores // ranks on this machine``
threads unless the user's environment sets the count.

The environment variables only work before the library loads; by
``dist.init()`` numpy (and its OpenBLAS) is loaded already, so the BLAS count
is set at run time through the library's own ``*_set_num_threads`` symbol,
found among the shared objects mapped into this process. That takes ~30
lines of ctypes instead of a new dependency (threadpoolctl). Numba's pool is
limited with ``numba.set_num_threads`` if numba is loaded, else by setting
``NUMBA_NUM_THREADS`` before it loads.
"""
import ctypes
import os
import sys

_BLAS_USER_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads", "MKL_Set_Num_Threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads", "MKL_Get_Max_Threads")


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _blas_libraries():
    """Paths of the BLAS shared objects loaded in this process (Linux: /proc/self/maps)."""
    import numpy  # noqa: F401  (make sure numpy's BLAS is the one mapped)
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    path = parts[-1]
                    name = os.path.basename(path).lower()
                    if ("openblas" in name or "libmkl_rt" in name) and path not in paths:
                        paths.append(path)
    except OSError:
        pass
    return paths


def _call(names, *args):
    out = []
    for path in _blas_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            fn = getattr(lib, name, None)
            if fn is not None:
                out.append(fn(*args))
                break
    return out


def set_blas_threads(n):
    """Set the thread count of every loaded OpenBLAS/MKL; returns how many libraries were set."""
    return len(_call(_SETTERS, ctypes.c_int(int(n))))


def get_blas_threads():
    """Thread counts of the loaded BLAS libraries (empty if none was found)."""
    return _call(_GETTERS)


def set_numba_threads(n):
    if "numba" in sys.modules:
        import numba
        n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(n)
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(int(n))
    return n


def limit_threads(local_size):
    """Give each of the ``local_size`` ranks on this machine its share of the cores.

    Returns ``{"blas": n or None, "numba": n or None}`` (None: left to the user's setting).
    """
    n = max(1, cores() // max(1, local_size))
    out = {"blas": None, "numba": None}
    if not any(v in os.environ for v in _BLAS_USER_VARS):
        set_blas_threads(n)
        out["blas"] = n
    if "NUMBA_NUM_THREADS" not in os.environ:
        out["numba"] = set_numba_threads(n)
    return out
