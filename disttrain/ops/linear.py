"""linear: y = x @ weight.T + bias, weight (out_features, in_features) as in PyTorch.

One BLAS GEMM per product: the transposed weight is a strided view that BLAS
reads directly, the bias is added in place, and leading batch dimensions are
folded into the rows so that every gradient is again a single GEMM.
"""
import numpy as np

from ..autograd.function import Function


class Linear(Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x = np.asarray(x)
        if weight.ndim != 2:
            raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
        out_f, in_f = weight.shape
        if x.ndim == 0 or x.shape[-1] != in_f:
            raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
                             f"(expected last dimension {in_f})")
        if bias is not None and np.shape(bias) != (out_f,):
            raise ValueError(f"linear: bias of shape {np.shape(bias)} does not match weight of shape "
                             f"{weight.shape} (expected ({out_f},))")
        x2 = x if x.ndim == 2 else x.reshape(-1, in_f)
        out = x2 @ weight.T
        if bias is not None:
            if out.dtype == np.result_type(out, bias):
                out += bias
            else:
                out = out + bias
        ctx.save_for_backward(x2, weight)
        ctx.x_shape = x.shape
        return out if x.ndim == 2 else out.reshape(x.shape[:-1] + (out_f,))

    @staticmethod
    def backward(ctx, g):
        x2, weight = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad
        g2 = g if g.ndim == 2 else g.reshape(-1, weight.shape[0])
        gx = (g2 @ weight).reshape(ctx.x_shape) if nx else None
        gw = g2.T @ x2 if nw else None
        gb = g2.sum(axis=0) if nb else None
        return gx, gw, gb


def linear(x, weight, bias=None):
    return Linear.apply(x, weight, bias)
