"""Matrix product (BLAS through numpy), with batch broadcasting."""
import numpy as np

from ..autograd.function import Function
from ._util import unbroadcast


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if na else None), (g * a if nb else None)
        if na:
            if b.ndim == 1:
                ga = np.multiply.outer(g, b)
            else:
                ga = g @ np.swapaxes(b, -1, -2) if a.ndim > 1 else b @ g
            ga = unbroadcast(ga, a.shape)
        if nb:
            if a.ndim == 1:
                gb = np.multiply.outer(a, g)
            elif b.ndim == 1:
                gb = np.swapaxes(a, -1, -2) @ g
                gb = gb.reshape(-1, b.shape[0]).sum(0) if gb.ndim > 1 else gb
            else:
                gb = np.swapaxes(a, -1, -2) @ g
            gb = unbroadcast(gb, b.shape)
        return ga, gb


def matmul(a, b):
    return MatMul.apply(a, b)
