"""glibc's allocator settings for training loops: keep freed array memory for reuse instead of
handing it back to the kernel every step.

Why: a training step allocates and frees the same large arrays (activations, im2col columns,
gradients) every iteration. With glibc's defaults, arrays above its mmap threshold get fresh pages
from the kernel and the heap is trimmed when its top is free, so each step pays page faults (zeroed
pages) again. Measured on this project's 2-core VM, one thread, a fresh process per workload:
LeNet step (bench C) 11.2 -> 3.8 ms, MNIST CNN step (bench L) 37.6 -> 29.8 ms (PyTorch in the same
process also gained: 61.5 -> 49.0 ms), the MLP (A) unchanged. PyTorch users get the same effect by
preloading jemalloc/tcmalloc; disttrain sets it for them.

What: ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (glibc's maximum; larger arrays are still mmapped) and
``mallopt(M_TRIM_THRESHOLD, 256 MiB)`` (the heap keeps up to that much free memory for reuse). Both
together: setting either alone switches off glibc's dynamic threshold, and the trim threshold alone
measured slower than the defaults (every array above 128 KiB mmapped again). The cost: up to 256 MiB
of freed memory stays with the process.

When: once, at ``import disttrain``, on Linux with glibc only, and never when the user has tuned the
allocator already (any ``MALLOC_*_`` variable or a ``glibc.malloc`` tunable in ``GLIBC_TUNABLES``) or
set ``DISTTRAIN_MALLOC=default``.
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

applied = False          # whether tune() changed the allocator (for tests and diagnostics)


def _user_tuned(env):
    if env.get("DISTTRAIN_MALLOC", "").strip().lower() in ("default", "0", "off", "no"):
        return True
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return True
    return "glibc.malloc" in env.get("GLIBC_TUNABLES", "")


def tune(env=None):
    """Apply the settings above if they apply here; returns True when they were applied."""
    global applied
    env = os.environ if env is None else env
    if applied or not sys.platform.startswith("linux") or _user_tuned(env):
        return applied
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):      # musl and others: no such knobs
            return False
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    applied = ok
    return applied
