"""batch_norm over axis 1 (channels) of (N, C, ...), as in PyTorch, with an optional
cross-rank reduction of its statistics (what SyncBatchNorm passes in).

Training: per-channel mean and biased variance over N and the spatial axes (the normalisation),
and, when running buffers are given, running = (1 - momentum) * running + momentum * stat with the
unbiased variance (PyTorch's update). Statistics are computed in float64, in two passes (sum, then
the centred sum of squares), so a rank-wise reduction is two small allreduces of C values each.

``reduce(buf)`` sums a float64 array over the ranks in place. With it, forward uses the global
count, mean and variance, and backward reduces the two sums its input gradient needs
(sum(dy), sum(dy * xhat)), so N ranks with batch B compute what one process with batch N*B
computes; the weight and bias gradients stay this rank's own (DDP averages them).
"""
import numpy as np

from ..autograd.function import Function


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bcast(v, ndim):
    """(C,) -> (1, C, 1, ...) for broadcasting against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


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
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        axes = _axes(x)
        x64 = x.astype(np.float64, copy=False)
        if training:
            buf = np.empty(c + 1)
            buf[:c] = x64.sum(axis=axes)
            buf[c] = x.size // c if c else 0
            if reduce is not None:
                reduce(buf)
            n = buf[c]
            if n <= 1:
                raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                                 f"shape {x.shape}" + (" (summed over the ranks)" if reduce is not None else ""))
            mean = buf[:c] / n
            xc = x64 - _bcast(mean, x.ndim)
            sq = np.square(xc).sum(axis=axes)
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
            xc = x64 - _bcast(mean, x.ndim)
        invstd = 1.0 / np.sqrt(var + eps)
        xhat = xc * _bcast(invstd, x.ndim)
        out = xhat
        if weight is not None:
            out = out * _bcast(np.asarray(weight, np.float64), x.ndim)
        if bias is not None:
            out = out + _bcast(np.asarray(bias, np.float64), x.ndim)
        ctx.save_for_backward(xhat, invstd, None if weight is None else np.asarray(weight))
        ctx.info = (training, n, reduce, dt)
        return out.astype(dt, copy=False)

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved_tensors
        training, n, reduce, dt = ctx.info
        axes = _axes(xhat)
        nd = xhat.ndim
        g64 = np.asarray(g, np.float64)
        sums = np.empty((2, xhat.shape[1]))
        sums[0] = g64.sum(axis=axes)                     # d bias (this rank's)
        sums[1] = (g64 * xhat).sum(axis=axes)            # d weight (this rank's)
        gb, gw = sums[0].copy(), sums[1].copy()
        w = np.ones(xhat.shape[1]) if weight is None else np.asarray(weight, np.float64)
        gx = None
        if ctx.needs_input_grad[0]:
            scale = _bcast(invstd * w, nd)
            if training:
                if reduce is not None:
                    reduce(sums)                         # the whole batch's sums, over every rank
                gx = scale * (g64 - _bcast(sums[0] / n, nd) - xhat * _bcast(sums[1] / n, nd))
            else:
                gx = g64 * scale
            gx = gx.astype(dt, copy=False)
        nw, nb = ctx.needs_input_grad[1:3]
        wdt = dt if weight is None else weight.dtype
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
