"""Argument plumbing shared by the ops that call Numba kernels.

Kernels are compiled for C-contiguous float32/float64 arrays only (two
variants each, see disttrain/kernels); these helpers bring arrays into that
form (copying only when needed) and parse PyTorch-style size arguments.
"""
import numpy as np

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kernel_dtype(*arrays):
    """The common float dtype the kernels will run in (float32 stays float32)."""
    if len(arrays) == 1:           # one float32/float64 array, the usual case: no result_type call
        dt = getattr(arrays[0], "dtype", None)
        if dt is not None and dt in KERNEL_DTYPES:
            return dt
    dt = np.result_type(*arrays)
    if dt not in KERNEL_DTYPES:
        dt = np.dtype(np.float64) if dt.itemsize > 4 or not np.issubdtype(dt, np.floating) \
            else np.dtype(np.float32)
    return dt


def contiguous(a, dtype):
    """``a`` as a C-contiguous array of ``dtype``; no copy when it already is one."""
    return np.ascontiguousarray(a, dtype=dtype)


def flat(a, dtype):
    """``a`` as a 1-D C-contiguous array of ``dtype`` (a view when possible)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def memory_order(a):
    """'F' for an F-ordered array (e.g. linear's feature-major output), else 'C'."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def flat_in(a, dtype, order):
    """``a`` as a 1-D array of ``dtype`` walking its elements in ``order`` ('C' or 'F').

    A view when ``a`` already is ``dtype`` and contiguous in that order, else a
    copy. Elementwise kernels over several arrays flatten all of them in one
    order (the layout of the array that fixes the output), so an F-ordered
    activation and its F-ordered gradient meet without a copy.
    """
    return np.asarray(a, dtype=dtype).ravel(order)


def pair(value, name, op, minimum=0):
    """An int or a pair of ints as ``(h, w)``; raises naming the op on anything else."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        v = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in value)):
        v = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if v[0] < minimum or v[1] < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return v


def normalize_axis(axis, ndim, op, shape):
    """One axis as a non-negative int, or a clear error naming the op and the shape."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {tuple(shape)}")
    return int(axis) % ndim


def pad_hw(x, ph, pw, value, dtype):
    """NCHW (or planes, H, W) ``x`` as a C-contiguous ``dtype`` array padded by (ph, pw) with ``value``.

    The kernels know no padding; padding once here keeps their inner loops free of bounds tests.
    """
    if ph == 0 and pw == 0:
        return contiguous(x, dtype)
    h, w = x.shape[-2:]
    out = np.full(x.shape[:-2] + (h + 2 * ph, w + 2 * pw), value, dtype)
    out[..., ph:ph + h, pw:pw + w] = x
    return out


def crop_hw(g, ph, pw):
    """The inverse of pad_hw for a gradient: the interior view."""
    if ph == 0 and pw == 0:
        return g
    return g[..., ph:g.shape[-2] - ph, pw:g.shape[-1] - pw]


class _LazyKernels:
    """A kernels module imported on first attribute access, then cached attribute by attribute."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        value = getattr(importlib.import_module(f"disttrain.kernels.{self._name}"), attr)
        setattr(self, attr, value)
        return value


def lazy_kernels(name):
    """``disttrain.kernels.<name>``, imported when an op first runs a kernel.

    ``import disttrain`` stays free of numba (a second or so at start-up); the
    kernels compile (or load from NUMBA_CACHE_DIR) on their first call anyway.
    """
    return _LazyKernels(name)
