"""expand and repeat: a tensor copied along dimensions; backward sums the copies back."""
import numpy as np

from ..autograd.function import Function
from ._util import unbroadcast


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        a = np.asarray(a)
        try:
            out = np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"expand: tensor of shape {a.shape} cannot be expanded to {tuple(shape)} "
                             "(only dimensions of size 1 can grow)") from None
        ctx.shape = a.shape
        return out

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shape), None


class Repeat(Function):
    @staticmethod
    def forward(ctx, a, reps):
        a = np.asarray(a)
        if len(reps) < a.ndim:
            raise ValueError(f"repeat: {len(reps)} repeat counts given for a tensor of shape {a.shape}; "
                             f"need at least {a.ndim}")
        ctx.in_shape = a.shape
        ctx.shape = (1,) * (len(reps) - a.ndim) + a.shape
        ctx.reps = tuple(reps)
        return np.tile(a, reps)

    @staticmethod
    def backward(ctx, g):
        # Split every axis into (repeat, original) and sum over the repeats.
        split = []
        for r, n in zip(ctx.reps, ctx.shape):
            split += [r, n]
        g = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(ctx.in_shape), None


def expand(a, shape):
    return Expand.apply(a, tuple(shape))


def repeat(a, reps):
    return Repeat.apply(a, tuple(reps))
