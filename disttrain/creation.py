"""Tensor factories with PyTorch's names and signatures: ``zeros(2, 3)``, ``arange(0, t, dtype=dt.long)``.

Every factory takes ``dtype=``, ``device=`` (the CPU only) and ``requires_grad=``.
Floating results default to float32, integer ones to int64, as in PyTorch.
Random ones draw from disttrain's generator (``dt.manual_seed``): seeded and
reproducible, but not the same numbers as PyTorch's generator.
"""
import numbers

import numpy as np

from .autograd.device import as_device
from .autograd.tensor import Tensor
from . import random as _random

_F32 = np.dtype(np.float32)


def _make(array, dtype, device, requires_grad, default=None):
    if device is not None:
        as_device(device)
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    elif default is not None:
        array = array.astype(default, copy=False)
    return Tensor(array, requires_grad=requires_grad)


def _size(size, op):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for n in size:
        if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)) or n < 0:
            raise ValueError(f"{op}: sizes must be non-negative ints, got {size!r}")
    return tuple(int(n) for n in size)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_size(size, "zeros"), dtype or _F32), None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_size(size, "ones"), dtype or _F32), None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.empty(_size(size, "empty"), dtype or _F32), None, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    fill = getattr(fill_value, "data", fill_value)
    if dtype is None:
        dtype = np.bool_ if isinstance(fill, bool) else np.int64 if isinstance(fill, numbers.Integral) else _F32
    return _make(np.full(_size((size,) if isinstance(size, int) else (tuple(size),), "full"), fill, dtype),
                 None, device, requires_grad)


def _like(t, fill, dtype, device, requires_grad):
    a = np.asarray(getattr(t, "data", t))
    return _make(np.full(a.shape, fill, dtype or a.dtype), None, device, requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 0, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 1, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(input, fill_value, dtype, device, requires_grad)


def empty_like(input, dtype=None, device=None, requires_grad=False):
    return _like(input, 0, dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """``arange(end)`` or ``arange(start, end, step)``: int64 for integer arguments, else float32."""
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, (numbers.Integral, np.integer)) for v in (start, end, step))
    if step == 0:
        raise ValueError("arange: step must not be zero")
    return _make(np.arange(start, end, step), dtype, device, requires_grad, np.int64 if ints else _F32)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _make(np.linspace(start, end, int(steps)), dtype, device, requires_grad, _F32)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _make(np.eye(n, m), dtype, device, requires_grad, _F32)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    g = generator or _random.generator()
    return _make(g.standard_normal(_size(size, "randn")), dtype, device, requires_grad, _F32)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    g = generator or _random.generator()
    return _make(g.random(_size(size, "rand")), dtype, device, requires_grad, _F32)


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad=False, generator=None):
    """``randint(high, size)`` or ``randint(low, high, size)``: integers in [low, high)."""
    if size is None:                      # randint(high, size)
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: missing the size argument, e.g. randint(0, 10, (3,))")
    g = generator or _random.generator()
    return _make(g.integers(low, high, size=_size((tuple(size),), "randint")), dtype, device, requires_grad,
                 np.int64)


def randperm(n, dtype=None, device=None, requires_grad=False, generator=None):
    g = generator or _random.generator()
    return _make(g.permutation(int(n)), dtype, device, requires_grad, np.int64)


def randn_like(input, dtype=None, device=None, requires_grad=False):
    a = np.asarray(getattr(input, "data", input))
    return randn(*a.shape, dtype=dtype or a.dtype, device=device, requires_grad=requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    a = np.asarray(getattr(input, "data", input))
    return rand(*a.shape, dtype=dtype or a.dtype, device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """A Tensor sharing memory with ``data`` where possible (a Tensor is returned as is)."""
    if isinstance(data, Tensor) and (dtype is None or np.dtype(dtype) == data.dtype):
        return data
    return _make(np.asarray(getattr(data, "data", data)), dtype, device, False)


__all__ = ["zeros", "ones", "empty", "full", "zeros_like", "ones_like", "full_like", "empty_like", "arange",
           "linspace", "eye", "randn", "rand", "randint", "randperm", "randn_like", "rand_like", "as_tensor"]
