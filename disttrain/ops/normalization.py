"""layer_norm over the trailing ``normalized_shape`` dimensions, as in PyTorch.

The input is viewed as (rows, features); kernels in
disttrain/kernels/normalization.py keep per-row mean and 1/std (float64) from
forward so backward needs no second reduction pass over the statistics.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, lazy_kernels

K = lazy_kernels("normalization")


def normalized_shape_tuple(normalized_shape):
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, bias, eps):
        x = np.asarray(x)
        ns = normalized_shape_tuple(normalized_shape)
        k = len(ns)
        if k == 0 or x.ndim < k or x.shape[x.ndim - k:] != ns:
            raise ValueError(f"layer_norm: normalized_shape {ns} does not match the trailing dimensions "
                             f"of input shape {x.shape}")
        for name, p in (("weight", weight), ("bias", bias)):
            if p is not None and np.shape(p) != ns:
                raise ValueError(f"layer_norm: {name} of shape {np.shape(p)} does not match "
                                 f"normalized_shape {ns}")
        d = int(np.prod(ns))
        dt = kernel_dtype(x)
        x2 = contiguous(x, dt).reshape(-1, d)
        w = np.ones(d, dt) if weight is None else contiguous(weight, dt).reshape(d)
        b = np.zeros(d, dt) if bias is None else contiguous(bias, dt).reshape(d)
        rows = x2.shape[0]
        out = np.empty_like(x2)
        mean = np.empty(rows, np.float64)
        rstd = np.empty(rows, np.float64)
        if x2.size:
            K.layer_norm_forward(x2, w, b, float(eps), out, mean, rstd)
        ctx.save_for_backward(x2, w, mean, rstd)
        ctx.shapes = (x.shape, ns)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x2, w, mean, rstd = ctx.saved_tensors
        x_shape, ns = ctx.shapes
        d = x2.shape[1]
        gx = np.empty_like(x2)
        gw = np.zeros(d, np.float64)
        gb = np.zeros(d, np.float64)
        if x2.size:
            K.layer_norm_backward(contiguous(g, x2.dtype).reshape(x2.shape), x2, w, mean, rstd, gx, gw, gb)
        nw, nb = ctx.needs_input_grad[2:4]
        return (gx.reshape(x_shape), None,
                gw.astype(x2.dtype).reshape(ns) if nw else None,
                gb.astype(x2.dtype).reshape(ns) if nb else None, None)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return LayerNorm.apply(x, normalized_shape, weight, bias, eps)
