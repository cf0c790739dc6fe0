"""Batch-norm kernels over x viewed as (N, C, M) (M: the spatial size, 1 for (N, C) inputs),
C-contiguous float32/float64. Per-channel sums accumulate in float64. The op (ops/batch_norm.py)
calls them in passes so that a cross-rank reduction can sit between two of them.
"""
from ._jit import kernel


@kernel
def channel_sums(x, out):
    """out[c] = sum of x[:, c, :]."""
    n, c, m = x.shape
    for j in range(c):
        out[j] = 0.0
    for i in range(n):
        for j in range(c):
            s = 0.0
            for k in range(m):
                s += x[i, j, k]
            out[j] += s


@kernel
def centered_square_sums(x, mean, out):
    """out[c] = sum of (x[:, c, :] - mean[c])^2."""
    n, c, m = x.shape
    for j in range(c):
        out[j] = 0.0
    for i in range(n):
        for j in range(c):
            mu = mean[j]
            s = 0.0
            for k in range(m):
                d = x[i, j, k] - mu
                s += d * d
            out[j] += s


@kernel
def normalize(x, mean, invstd, weight, bias, out):
    """out = (x - mean) * invstd * weight + bias, per channel."""
    n, c, m = x.shape
    for i in range(n):
        for j in range(c):
            a = invstd[j] * weight[j]
            b = bias[j] - mean[j] * a
            for k in range(m):
                out[i, j, k] = x[i, j, k] * a + b


@kernel
def grad_sums(g, x, mean, invstd, out):
    """out[0, c] = sum g; out[1, c] = sum g * xhat, xhat = (x - mean) * invstd."""
    n, c, m = x.shape
    for j in range(c):
        out[0, j] = 0.0
        out[1, j] = 0.0
    for i in range(n):
        for j in range(c):
            mu = mean[j]
            s0 = 0.0
            s1 = 0.0
            for k in range(m):
                gv = g[i, j, k]
                s0 += gv
                s1 += gv * (x[i, j, k] - mu)
            out[0, j] += s0
            out[1, j] += s1 * invstd[j]


@kernel
def grad_input(g, x, mean, invstd, weight, mean_g, mean_gxhat, gx):
    """gx = invstd * weight * (g - mean_g - xhat * mean_gxhat), per channel (training statistics)."""
    n, c, m = x.shape
    for i in range(n):
        for j in range(c):
            s = invstd[j] * weight[j]
            mu = mean[j]
            inv = invstd[j]
            a = mean_g[j]
            b = mean_gxhat[j]
            for k in range(m):
                gx[i, j, k] = s * (g[i, j, k] - a - (x[i, j, k] - mu) * inv * b)


__all__ = ["channel_sums", "centered_square_sums", "normalize", "grad_sums", "grad_input"]
