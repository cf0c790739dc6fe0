"""Activations: relu, gelu, softmax, log_softmax (forward next to backward).

The backward passes are fused Numba kernels (disttrain/kernels/activation.py,
kernels/softmax.py): one pass over the data, no temporaries. Elementwise ops
keep their input's layout, C or F (linear hands out F-ordered activations,
see ops/linear.py): kernels walk all arrays in that one memory order, so no
copy is made. Softmax-type ops
move the reduced axis last and run row-wise; when it already is last and the
input is contiguous, nothing is copied.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import KERNEL_DTYPES, contiguous, flat_in, memory_order, kernel_dtype, normalize_axis, lazy_kernels

K = lazy_kernels("activation")
S = lazy_kernels("softmax")


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        a = np.asarray(a)
        dt = a.dtype
        if dt not in KERNEL_DTYPES:
            out = np.maximum(a, 0)
        else:   # the kernel: 1.4-2.4x faster than np.maximum (measured at LeNet and MLP sizes)
            order = memory_order(a)
            out = np.empty(a.shape, dt, order=order)
            K.relu_forward(flat_in(a, dt, order), out.ravel(order))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        dt = out.dtype
        if dt not in KERNEL_DTYPES:
            return g * (out > 0)
        order = memory_order(out)
        gin = np.empty(out.shape, dt, order=order)
        K.relu_backward(flat_in(g, dt, order), flat_in(out, dt, order), gin.ravel(order))
        return gin


class GELU(Function):
    """x * Phi(x) with the exact erf form, or PyTorch's tanh approximation."""

    @staticmethod
    def forward(ctx, a, approximate):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        a = np.asarray(a)
        dt = kernel_dtype(a)
        order = memory_order(a)
        x = flat_in(a, dt, order)
        out = np.empty(a.shape, dt, order=order)
        K.gelu_forward(x, out.ravel(order), approximate == "tanh")
        ctx.save_for_backward(x)
        ctx.layout = (a.shape, order)
        ctx.tanh = approximate == "tanh"
        return out

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        shape, order = ctx.layout
        gin = np.empty(shape, x.dtype, order=order)
        K.gelu_backward(flat_in(g, x.dtype, order), x, gin.ravel(order), ctx.tanh)
        return gin, None


def _rows(a, axis, op):
    """(2-D contiguous rows with ``axis`` last, shape with axis last, axis)."""
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1)
        if axis not in (0, -1):
            normalize_axis(axis, 0, op, ())
        axis = 0
    ax = normalize_axis(axis, a.ndim, op, a.shape)
    moved = np.moveaxis(a, ax, -1) if ax != a.ndim - 1 else a
    dt = kernel_dtype(a)
    return contiguous(moved, dt).reshape(-1, a.shape[ax]), moved.shape, ax


def _unrows(rows, moved_shape, ax, shape):
    out = rows.reshape(moved_shape)
    if ax != out.ndim - 1:
        out = np.moveaxis(out, -1, ax)
    return out.reshape(shape)


class _RowWise(Function):
    """softmax-like op along one axis: subclasses name their two kernels in kernels/softmax.py."""

    fwd = bwd = ""
    name = ""

    # classmethods: Function.apply calls cls.forward / the engine calls fn.backward,
    # so each subclass gets both by naming its kernels.
    @classmethod
    def forward(cls, ctx, a, axis):
        shape = np.shape(a)
        x, moved_shape, ax = _rows(a, axis, cls.name)
        out = np.empty_like(x)
        if x.size:
            getattr(S, cls.fwd)(x, out)
        ctx.save_for_backward(out)
        ctx.layout = (moved_shape, ax, shape)
        return _unrows(out, *ctx.layout)

    @classmethod
    def backward(cls, ctx, g):
        (y,) = ctx.saved_tensors
        moved_shape, ax, shape = ctx.layout
        g = np.asarray(g).reshape(moved_shape if len(shape) == 0 else shape)
        if len(shape) and ax != len(shape) - 1:
            g = np.moveaxis(g, ax, -1)
        g2 = contiguous(g, y.dtype).reshape(y.shape)
        gin = np.empty_like(y)
        if y.size:
            getattr(S, cls.bwd)(g2, y, gin)
        return _unrows(gin, moved_shape, ax, shape), None


class Softmax(_RowWise):
    fwd, bwd = "softmax_forward", "softmax_backward"
    name = "softmax"


class LogSoftmax(_RowWise):
    fwd, bwd = "log_softmax_forward", "log_softmax_backward"
    name = "log_softmax"


def relu(a):
    return ReLU.apply(a)


def gelu(a, approximate="none"):
    return GELU.apply(a, approximate)


def softmax(a, axis=-1):
    return Softmax.apply(a, axis)


def log_softmax(a, axis=-1):
    return LogSoftmax.apply(a, axis)
