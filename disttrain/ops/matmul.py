"""Matrix product (BLAS through numpy) with numpy's 1-D and batch-broadcast rules.

Backward treats every case as the batched 2-D one: a 1-D left operand is a
(1, k) row, a 1-D right operand a (k, 1) column, the gradient gets those
unit axes back, and broadcast batch axes are summed away (unbroadcast).
"""
import numpy as np

from ..autograd.function import Function
from ._util import unbroadcast


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        a = np.asarray(a)
        b = np.asarray(b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({ka} != {kb})")
        try:
            out = a @ b
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of shapes {a.shape} and {b.shape} do not broadcast") \
                from None
        ctx.save_for_backward(a, b)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:
            return (g @ b.T if na else None), (a.T @ g if nb else None)
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if na else None), (g * a if nb else None)
        A = a[None, :] if a.ndim == 1 else a
        B = b[:, None] if b.ndim == 1 else b
        G = g
        if a.ndim == 1:
            G = np.expand_dims(G, -2)
        if b.ndim == 1:
            G = np.expand_dims(G, -1)
        ga = gb = None
        if na:
            ga = unbroadcast(G @ np.swapaxes(B, -1, -2), A.shape).reshape(a.shape)
        if nb:
            gb = unbroadcast(np.swapaxes(A, -1, -2) @ G, B.shape).reshape(b.shape)
        return ga, gb


def matmul(a, b):
    return MatMul.apply(a, b)
