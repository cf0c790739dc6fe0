"""Top-level tensor functions with PyTorch's names: ``dt.cat``, ``dt.topk``, ``dt.tril``, ``dt.exp(x)``, ...

Most are the Tensor method of the same name (``dt.max(x, 1)`` is ``x.max(1)``,
with the same dim/axis rules); the others are built here from disttrain ops,
so all of them differentiate.
"""
import numpy as np

from . import ops as _ops
from . import random as _random
from .autograd.tensor import Tensor, ValuesIndices, maximum, minimum
from .autograd.tensor import _dim


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _method(name):
    def fn(input, *args, **kwargs):
        return getattr(_t(input), name)(*args, **kwargs)
    fn.__name__ = name
    fn.__doc__ = f"``dt.{name}(input, ...)`` is ``input.{name}(...)``."
    return fn


_METHODS = ("sum", "mean", "max", "min", "argmax", "argmin", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
            "abs", "pow", "matmul", "reshape", "transpose", "permute", "unsqueeze", "squeeze", "split", "chunk",
            "clamp", "clip", "masked_fill", "softmax", "log_softmax", "numel", "t", "eq", "ne", "lt", "le", "gt",
            "ge", "clone")
for _name in _METHODS:
    globals()[_name] = _method(_name)


def cat(tensors, dim=0, *, axis=None):
    return _ops.concatenate(list(tensors), dim if axis is None else axis)


concat = concatenate = cat


def stack(tensors, dim=0, *, axis=None):
    return _ops.stack(list(tensors), dim if axis is None else axis)


def flatten(input, start_dim=0, end_dim=-1):
    return _t(input).flatten(start_dim, end_dim)


def where(condition, input=None, other=None):
    """``input`` where ``condition`` else ``other`` (Python numbers take the other operand's dtype);
    ``where(condition)`` alone gives the indices of the True elements, one tensor per dimension."""
    cond = np.asarray(getattr(condition, "data", condition))
    if input is None and other is None:
        return tuple(Tensor(i) for i in np.nonzero(cond))
    if isinstance(input, Tensor) and not isinstance(other, Tensor):
        other = np.asarray(other, dtype=input.dtype)
    elif isinstance(other, Tensor) and not isinstance(input, Tensor):
        input = np.asarray(input, dtype=other.dtype)
    return _ops.where(cond, input, other)


def _triangle(input, diagonal, keep, op):
    t = _t(input)
    if t.ndim < 2:
        raise ValueError(f"{op}: input must have at least 2 dimensions, got shape {t.shape}")
    n, m = t.shape[-2:]
    mask = keep(np.ones((n, m), bool), diagonal)
    return _ops.where(mask, t, np.zeros((), t.dtype))


def tril(input, diagonal=0):
    """The lower triangle (on and below ``diagonal``) of the last two dimensions; zeros elsewhere."""
    return _triangle(input, diagonal, np.tril, "tril")


def triu(input, diagonal=0):
    return _triangle(input, diagonal, np.triu, "triu")


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) elements along ``dim``: ``(values, indices)``, best first."""
    t = _t(input)
    d = _dim(dim, t.ndim, "topk", t.shape)
    n = t.shape[d] if t.ndim else 1
    if not 0 <= int(k) <= n:
        raise ValueError(f"topk: k={k} is out of range for dimension {d} of size {n} (shape {t.shape})")
    key = -t.data if largest else t.data
    idx = np.take(np.argsort(key, axis=d, kind="stable"), np.arange(int(k)), axis=d)
    return ValuesIndices(_ops.gather(t, d, idx), Tensor(idx))


def multinomial(input, num_samples, replacement=False, generator=None):
    """Sample ``num_samples`` indices per row of the non-negative weights ``input`` (1-D or 2-D)."""
    p = np.asarray(getattr(input, "data", input), dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {p.shape}")
    rows = p.reshape(-1, p.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all() or (rows.sum(axis=1) <= 0).any():
        raise ValueError("multinomial: weights must be finite, non-negative and have a positive sum in every row")
    if not replacement and num_samples > (rows > 0).sum(axis=1).min():
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from rows with "
                         f"fewer non-zero weights")
    g = generator or _random.generator()
    out = np.stack([g.choice(rows.shape[1], size=int(num_samples), replace=replacement, p=r / r.sum())
                    for r in rows]).astype(np.int64)
    return Tensor(out.reshape(p.shape[:-1] + (int(num_samples),)))


def is_tensor(obj):
    return isinstance(obj, Tensor)


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False):
    return bool(np.allclose(np.asarray(input), np.asarray(other), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other):
    a, b = np.asarray(input), np.asarray(other)
    return a.shape == b.shape and bool((a == b).all())


__all__ = list(_METHODS) + ["cat", "concat", "concatenate", "stack", "flatten", "where", "tril", "triu", "topk",
                            "multinomial", "maximum", "minimum", "is_tensor", "allclose", "equal", "ValuesIndices"]
