"""Layer normalisation over the last axis of a 2-D (rows, features) array.

Forward keeps per-row mean and 1/std for backward. Backward, with
xhat = (x - mean) * rstd and gh = g * weight:
    gx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
and the parameter gradients gw = sum_rows(g * xhat), gb = sum_rows(g).
Statistics accumulate in float64; arrays keep their dtype.
"""
import math

from ._jit import kernel


@kernel
def layer_norm_forward(x, weight, bias, eps, out, mean, rstd):
    n, d = x.shape
    for i in range(n):
        s = 0.0
        for j in range(d):
            s += x[i, j]
        mu = s / d
        v = 0.0
        for j in range(d):
            t = x[i, j] - mu
            v += t * t
        r = 1.0 / math.sqrt(v / d + eps)
        mean[i] = mu
        rstd[i] = r
        for j in range(d):
            out[i, j] = (x[i, j] - mu) * r * weight[j] + bias[j]


@kernel
def layer_norm_backward(g, x, weight, mean, rstd, gx, gw, gb):
    """Writes gx; accumulates into gw and gb (zeroed by the caller)."""
    n, d = x.shape
    for i in range(n):
        mu = mean[i]
        r = rstd[i]
        a = 0.0      # sum(gh)
        b = 0.0      # sum(gh * xhat)
        for j in range(d):
            xh = (x[i, j] - mu) * r
            gh = g[i, j] * weight[j]
            a += gh
            b += gh * xh
            gw[j] += g[i, j] * xh
            gb[j] += g[i, j]
        a /= d
        b /= d
        for j in range(d):
            xh = (x[i, j] - mu) * r
            gx[i, j] = r * (g[i, j] * weight[j] - a - xh * b)
