"""batch_norm over axis 1 (channels) of (N, C, ...), as in PyTorch, with an optional
cross-rank reduction of its statistics (what SyncBatchNorm passes in).

Training: per-channel mean and biased variance over N and the spatial axes (the normalisation),
and, when running buffers are given, running = (1 - momentum) * running + momentum * stat with the
unbiased variance (PyTorch's update). Statistics are float64, computed in two passes (sum, then the
centred sum of squares) by Numba kernels (disttrain/kernels/batch_norm.py), so a rank-wise
reduction is two small allreduces of C values each.

``reduce(buf)`` sums a float64 array over the ranks in place. With it, forward uses the global
count, mean and variance, and backward reduces the two sums its input gradient needs
(sum(dy), sum(dy * xhat)), so N ranks with batch B compute what one process with batch N*B
computes; the weight and bias gradients stay this rank's own (DDP averages them).
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, lazy_kernels

K = lazy_kernels("batch_norm")


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, reduce):
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"batch_norm: expected input (N, C, ...) with at least 2 dimensions, got shape {x.shape}")
        c = x.shape[1]
        for name, a in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
            if a is not None and np.shape(a) != (c,):
                raise ValueError(f"batch_norm: {name} has shape {np.shape(a)} but the input (shape {x.shape}) has "
                                 f"{c} channels")
        dt = kernel_dtype(x)
        x3 = contiguous(x, dt).reshape(x.shape[0], c, -1)
        if training:
            buf = np.empty(c + 1)
            K.channel_sums(x3, buf[:c])
            buf[c] = x.size // c if c else 0
            if reduce is not None:
                reduce(buf)
            n = buf[c]
            if n <= 1:
                raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                                 f"shape {x.shape}" + (" (summed over the ranks)" if reduce is not None else ""))
            mean = buf[:c] / n
            sq = np.empty(c)
            K.centered_square_sums(x3, mean, sq)
            if reduce is not None:
                reduce(sq)
            var = sq / n
            if running_mean is not None:
                running_mean *= (1 - momentum)
                running_mean += (momentum * mean).astype(running_mean.dtype)
            if running_var is not None:
                running_var *= (1 - momentum)
                running_var += (momentum * var * n / (n - 1)).astype(running_var.dtype)
        else:
            n = None
            mean = np.asarray(running_mean, np.float64)
            var = np.asarray(running_var, np.float64)
        invstd = 1.0 / np.sqrt(var + eps)
        w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
        b = np.zeros(c) if bias is None else np.asarray(bias, np.float64)
        out = np.empty_like(x3)
        K.normalize(x3, mean, invstd, w, b, out)
        ctx.save_for_backward(x3, mean, invstd, w)
        ctx.info = (training, n, reduce, x.shape, None if weight is None else np.asarray(weight).dtype)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x3, mean, invstd, w = ctx.saved_tensors
        training, n, reduce, shape, wdt = ctx.info
        g3 = contiguous(g, x3.dtype).reshape(x3.shape)
        sums = np.empty((2, x3.shape[1]))
        K.grad_sums(g3, x3, mean, invstd, sums)
        gb, gw = sums[0].copy(), sums[1].copy()       # this rank's own: DDP averages them
        gx = None
        if ctx.needs_input_grad[0]:
            if training:
                if reduce is not None:
                    reduce(sums)                      # the whole batch's sums, over every rank
                mean_g, mean_gxhat = sums[0] / n, sums[1] / n
            else:
                mean_g = mean_gxhat = np.zeros(x3.shape[1])
            gx = np.empty_like(x3)
            K.grad_input(g3, x3, mean, invstd, w, mean_g, mean_gxhat, gx)
            gx = gx.reshape(shape)
        nw, nb = ctx.needs_input_grad[1:3]
        return (gx, gw.astype(wdt) if nw else None, gb.astype(wdt) if nb else None,
                None, None, None, None, None, None)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5, reduce=None):
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
    rm = None if running_mean is None else _buffer_array(running_mean)
    rv = None if running_var is None else _buffer_array(running_var)
    return BatchNorm.apply(x, weight, bias, rm, rv, bool(training), float(momentum), float(eps), reduce)


def _buffer_array(b):
    """The numpy array of a buffer (updated in place), never a copy."""
    return b.data if hasattr(b, "data") and isinstance(b.data, np.ndarray) else b
