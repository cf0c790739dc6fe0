"""Unary math functions: exp, log, sqrt, tanh, sigmoid.

Each saves what its derivative needs (mostly the output, so nothing is
recomputed). tanh/sigmoid use fused Numba kernels for float32/float64: one
pass, no temporaries; other dtypes fall back to numpy.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import KERNEL_DTYPES, flat, lazy_kernels

K = lazy_kernels("activation")


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


def _fused_backward(kernel, g, out):
    """kernel(g, out, gin) over flat arrays when dtypes allow, else None."""
    dt = out.dtype
    if dt not in KERNEL_DTYPES:
        return None
    gin = np.empty(out.shape, dt)
    kernel(flat(g, dt), flat(out, dt), gin.reshape(-1))
    return gin


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        gin = _fused_backward(K.tanh_backward, g, out)
        return g * (1 - out * out) if gin is None else gin


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        a = np.asarray(a)
        if a.dtype in KERNEL_DTYPES:
            out = np.empty(a.shape, a.dtype)
            K.sigmoid_forward(flat(a, a.dtype), out.reshape(-1))
        else:
            # exp of a non-positive argument only: no overflow for large |a|.
            e = np.exp(-np.abs(a))
            out = np.where(a >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        gin = _fused_backward(K.sigmoid_backward, g, out)
        return g * out * (1 - out) if gin is None else gin


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def sqrt(a):
    return Sqrt.apply(a)


def tanh(a):
    return Tanh.apply(a)


def sigmoid(a):
    return Sigmoid.apply(a)
