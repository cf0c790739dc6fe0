"""where(cond, x, y): elementwise choice with broadcasting; cond gets no gradient."""
import numpy as np

from ..autograd.function import Function
from ._util import unbroadcast, shape_of


class Where(Function):
    @staticmethod
    def forward(ctx, cond, x, y):
        cond = np.asarray(cond)
        if cond.dtype != np.bool_:
            raise TypeError(f"where: condition must be boolean, got dtype {cond.dtype}")
        try:
            out = np.where(cond, x, y)
        except ValueError:
            raise ValueError(f"where: shapes {cond.shape}, {shape_of(x)} and {shape_of(y)} do not broadcast") \
                from None
        ctx.save_for_backward(cond)
        ctx.shapes = (shape_of(x), shape_of(y))
        return out

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sx, sy = ctx.shapes
        _, nx, ny = ctx.needs_input_grad
        zero = np.zeros((), g.dtype)
        return (None,
                unbroadcast(np.where(cond, g, zero), sx) if nx else None,
                unbroadcast(np.where(cond, zero, g), sy) if ny else None)


def where(cond, x, y):
    return Where.apply(cond, x, y)
