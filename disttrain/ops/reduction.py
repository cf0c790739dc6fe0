"""Reductions with numpy semantics: sum, mean, max, min over axes."""
import numpy as np

from ..autograd.function import Function
from ._util import normalize_axes


def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if keepdims or not axes or g.ndim == len(shape):
        return g
    return g.reshape([1 if i in axes else n for i, n in enumerate(shape)])


def _spread(g, shape):
    """``g`` broadcast to ``shape`` as a fresh writeable array: a leaf can take
    it as its .grad without a copy (np.broadcast_to would give a read-only
    view and costs more than this for small arrays)."""
    out = np.empty(shape, g.dtype)
    out[...] = g
    return out


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.axis = axis
        ctx.keepdims = keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        shape = ctx.inputs[0].data.shape
        if ctx.axis is not None:
            g = _expand(g, shape, normalize_axes(ctx.axis, len(shape)), ctx.keepdims)
        out = np.empty(shape, g.dtype)      # _spread inline (the backward of every loss.sum())
        out[...] = g
        return out, None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.axis = axis
        ctx.keepdims = keepdims
        return a.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        shape = ctx.inputs[0].data.shape
        axes = normalize_axes(ctx.axis, len(shape))
        n = 1
        for ax in axes:
            n *= shape[ax]
        # (this module's max() is the op: no builtin max here)
        g = _expand(g, shape, axes, ctx.keepdims) / (n or 1)
        return _spread(g, shape), None, None


class _Extremum(Function):
    """max/min: the gradient is shared equally among tied extreme elements."""

    reduce = None

    @classmethod
    def forward(cls, ctx, a, axis, keepdims):      # Function.apply calls cls.forward
        out = cls.reduce(a, axis=axis, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axes = normalize_axes(axis, a.ndim)
        ctx.keepdims = keepdims
        return out if keepdims else np.squeeze(out, axis=ctx.axes) if ctx.axes else out.reshape(out.shape)

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        g = _expand(g, a.shape, ctx.axes, ctx.keepdims)
        mask = (a == out)
        count = mask.sum(axis=ctx.axes, keepdims=True)
        return (mask * (g / count)).astype(a.dtype, copy=False), None, None


class Max(_Extremum):
    reduce = staticmethod(np.max)


class Min(_Extremum):
    reduce = staticmethod(np.min)


def sum(a, axis=None, keepdims=False):
    return Sum.apply(a, axis, keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, axis, keepdims)


def max(a, axis=None, keepdims=False):
    return Max.apply(a, axis, keepdims)


def min(a, axis=None, keepdims=False):
    return Min.apply(a, axis, keepdims)
