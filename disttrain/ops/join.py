"""concatenate and stack: many inputs, one output; backward hands each input its slice."""
import numpy as np

from ..autograd.function import Function
from ._arrays import normalize_axis


def _check(arrays, op):
    if not arrays:
        raise ValueError(f"{op}: needs at least one tensor")
    return [np.asarray(a) for a in arrays]


class Concatenate(Function):
    @staticmethod
    def forward(ctx, axis, *arrays):
        arrays = _check(arrays, "concatenate")
        first = arrays[0]
        if first.ndim == 0:
            raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
        ax = normalize_axis(axis, first.ndim, "concatenate", first.shape)
        for k, a in enumerate(arrays):
            if a.ndim != first.ndim or a.shape[:ax] + a.shape[ax + 1:] != first.shape[:ax] + first.shape[ax + 1:]:
                raise ValueError(f"concatenate: tensor {k} has shape {a.shape}, which does not match "
                                 f"tensor 0 of shape {first.shape} outside axis {axis}")
        ctx.axis = ax
        ctx.bounds = np.cumsum([a.shape[ax] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=ax)

    @staticmethod
    def backward(ctx, g):
        return (None, *np.split(g, ctx.bounds, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, axis, *arrays):
        arrays = _check(arrays, "stack")
        first = arrays[0]
        for k, a in enumerate(arrays):
            if a.shape != first.shape:
                raise ValueError(f"stack: tensor {k} has shape {a.shape}, tensor 0 has shape {first.shape}; "
                                 "all must be equal")
        ax = normalize_axis(axis, first.ndim + 1, "stack", first.shape)
        ctx.axis = ax
        return np.stack(arrays, axis=ax)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.axis
        return (None, *(g[lead + (i,)] for i in range(g.shape[ctx.axis])))


def concatenate(tensors, axis=0):
    return Concatenate.apply(axis, *tensors)


def stack(tensors, axis=0):
    return Stack.apply(axis, *tensors)
