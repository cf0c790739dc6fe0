"""The one place that holds Numba's JIT flags for every kernel.

cache=True: compiled code is kept on disk (NUMBA_CACHE_DIR, set by
`disttrain/__init__`), so only the first run on a machine pays the compile.
fastmath without 'nnan'/'ninf': reassociation and contraction make loops
vectorise, while NaN/inf still propagate so a diverging run stays visible.
nogil: kernels release the GIL, so the communication thread keeps running.
error_model="numpy": a float division by zero gives inf/NaN, as numpy's own
operators do, instead of Python's ZeroDivisionError. The check Python's model
puts before every division stops LLVM from vectorising any loop that divides
(measured: GELU's rational erf loop 13x slower with it).
"""
import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

# numba wants a plain set (a frozenset is rejected at compile time).
jit = numba.njit(cache=True, fastmath=set(FASTMATH), nogil=True, error_model="numpy")


def kernel(fn=None, **overrides):
    """Decorator: ``@kernel`` or ``@kernel(parallel=False, ...)`` with the project's flags."""
    opts = dict(cache=True, fastmath=set(FASTMATH), nogil=True, error_model="numpy")
    opts.update(overrides)
    if fn is None:
        return numba.njit(**opts)
    return numba.njit(**opts)(fn)
