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
from ._util import unbroadcast
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


class MaskedSoftmax(Function):
    """softmax(scale * scores + mask) over the last axis of attention scores (..., queries, keys), fused.

    ``mask``: None, an additive float array/Tensor (-inf drops a key; it gets a
    gradient when it requires one) or a boolean array where True keeps a key (as
    PyTorch's scaled_dot_product_attention reads a boolean attn_mask); it
    broadcasts against the scores. ``causal``: query i sees keys j <= i
    (top-left aligned, as PyTorch's is_causal). ``scale`` (> 0) multiplies the
    scores inside the kernel, saving attention's separate pass over them. One
    kernel pass forward and one backward (kernels/softmax.py); the causal rows
    skip the masked half instead of exponentiating -inf. A row with every key
    masked is NaN, as in PyTorch.
    """

    @staticmethod
    def forward(ctx, x, mask, causal, scale):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"masked_softmax: scores must be at least 2-D (..., queries, keys), got shape {x.shape}")
        if not (isinstance(scale, (int, float, np.floating, np.integer)) and not isinstance(scale, bool)
                and 0 < scale < np.inf):
            raise ValueError(f"masked_softmax: scale must be a positive finite number, got {scale!r}")
        dt = kernel_dtype(x)
        tq, tk = x.shape[-2:]
        x3 = contiguous(x, dt).reshape(-1, tq, tk)
        out = np.empty_like(x3)
        m3 = mask_shape = None
        if mask is not None:
            mask = np.asarray(mask)
            mask_shape = mask.shape
            if mask.dtype == np.bool_:
                mask = np.where(mask, dt.type(0), dt.type(-np.inf))
                mask_shape = None                         # a boolean mask has no gradient
            try:
                if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
                    raise ValueError
            except ValueError:
                raise ValueError(f"masked_softmax: mask of shape {np.shape(mask)} does not broadcast to the "
                                 f"scores' shape {x.shape}") from None
            if all(d == 1 for d in mask.shape[:-2]):       # one (Tq, Tk) mask shared by every slice
                m3 = contiguous(np.broadcast_to(mask.reshape(mask.shape[-2:] if mask.ndim >= 2 else mask.shape),
                                                (tq, tk)), dt).reshape(1, tq, tk)
            else:
                m3 = contiguous(np.broadcast_to(mask, x.shape), dt).reshape(-1, tq, tk)
        scale, causal = float(scale), bool(causal)
        if x3.size:
            if m3 is not None:
                S.masked_softmax_forward(x3, m3, scale, causal, out)
            else:
                S.scaled_softmax_forward(x3, scale, causal, out)
        ctx.save_for_backward(out)
        ctx.meta = (x.shape, mask_shape, causal, scale)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        x_shape, mask_shape, causal, scale = ctx.meta
        g3 = contiguous(g, y.dtype).reshape(y.shape)
        gin = np.empty_like(y)
        if y.size:       # masked keys have y == 0, so they get 0
            S.scaled_softmax_backward(g3, y, scale, causal, gin)
        gx = gin.reshape(x_shape)
        gm = None
        if mask_shape is not None and ctx.needs_input_grad[1]:
            # d/dmask = d/d(scale * x): the input gradient without the scale
            gm = unbroadcast(gx if scale == 1.0 else gx * (1.0 / scale), mask_shape)
        return gx, gm, None, None


def masked_softmax(x, mask=None, causal=False, scale=1.0):
    """softmax(scale * x + mask) over the last axis of attention scores; ``causal`` masks later keys."""
    return MaskedSoftmax.apply(x, mask, causal, scale)


def relu(a):
    return ReLU.apply(a)


def gelu(a, approximate="none"):
    return GELU.apply(a, approximate)


def softmax(a, axis=-1):
    return Softmax.apply(a, axis)


def log_softmax(a, axis=-1):
    return LogSoftmax.apply(a, axis)
