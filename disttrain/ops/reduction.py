"""Reductions with numpy semantics: sum, mean, max, min over axes."""
import numpy as np

from ..autograd.function import Function
from ._util import normalize_axis


def _expand(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if not keepdims:
        g = np.expand_dims(g, axes) if axes else g
    return g


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape = a.shape
        ctx.axes = normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims)
        return np.broadcast_to(g, ctx.shape), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape = a.shape
        ctx.axes = normalize_axis(axis, a.ndim)
        ctx.keepdims = keepdims
        return a.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        n = 1
        for ax in ctx.axes:
            n *= ctx.shape[ax]
        g = _expand(g, ctx.shape, ctx.axes, ctx.keepdims) / max(n, 1)
        return np.broadcast_to(g, ctx.shape), None, None


class _Extremum(Function):
    """max/min: the gradient is shared equally among tied extreme elements."""

    reduce = None

    @classmethod
    def _forward(cls, ctx, a, axis, keepdims):
        out = cls.reduce(a, axis=axis, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axes = normalize_axis(axis, a.ndim)
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

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        return Max._forward(ctx, a, axis, keepdims)


class Min(_Extremum):
    reduce = staticmethod(np.min)

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        return Min._forward(ctx, a, axis, keepdims)


def sum(a, axis=None, keepdims=False):
    return Sum.apply(a, axis, keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, axis, keepdims)


def max(a, axis=None, keepdims=False):
    return Max.apply(a, axis, keepdims)


def min(a, axis=None, keepdims=False):
    return Min.apply(a, axis, keepdims)
