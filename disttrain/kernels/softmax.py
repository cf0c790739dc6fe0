"""Row-wise softmax, log-softmax and cross-entropy kernels, forward and backward.

All work on 2-D C-contiguous (rows, classes) float32/float64 arrays: the ops
move the reduced axis last; the scaled/masked/causal kernels (attention
scores) work on 3-D (slices, queries, keys) arrays. Numerically stable: the row maximum is taken out
before exponentiating, so exp never overflows. Row sums accumulate in
float64 and results are stored in the input dtype.
"""
import math


from ._jit import kernel
from .vecmath import exp_neg


@kernel
def softmax_forward(x, out):
    n, c = x.shape
    for i in range(n):
        m = x[i, 0]
        for j in range(1, c):
            if x[i, j] > m:
                m = x[i, j]
        s = 0.0
        for j in range(c):
            e = math.exp(x[i, j] - m)
            out[i, j] = e
            s += e
        inv = 1.0 / s
        for j in range(c):
            out[i, j] = out[i, j] * inv


@kernel
def softmax_backward(g, y, gin):
    """gin = y * (g - sum(g * y)) per row (y = softmax output)."""
    n, c = g.shape
    for i in range(n):
        s = 0.0
        for j in range(c):
            s += g[i, j] * y[i, j]
        for j in range(c):
            gin[i, j] = y[i, j] * (g[i, j] - s)


@kernel
def log_softmax_forward(x, out):
    n, c = x.shape
    for i in range(n):
        m = x[i, 0]
        for j in range(1, c):
            if x[i, j] > m:
                m = x[i, j]
        s = 0.0
        for j in range(c):
            s += math.exp(x[i, j] - m)
        lse = m + math.log(s)
        for j in range(c):
            out[i, j] = x[i, j] - lse


@kernel
def log_softmax_backward(g, y, gin):
    """gin = g - exp(y) * sum(g) per row (y = log-softmax output)."""
    n, c = g.shape
    for i in range(n):
        s = 0.0
        for j in range(c):
            s += g[i, j]
        for j in range(c):
            gin[i, j] = g[i, j] - math.exp(y[i, j]) * s


@kernel
def cross_entropy_forward(logits, labels, losses, lse):
    """losses[i] = logsumexp(logits[i]) - logits[i, labels[i]]; keeps lse for backward.

    Returns the index of the first row whose label is outside [0, classes), or -1.
    """
    n, c = logits.shape
    for i in range(n):
        k = labels[i]
        if k < 0 or k >= c:
            return i
        m = logits[i, 0]
        for j in range(1, c):
            if logits[i, j] > m:
                m = logits[i, j]
        s = 0.0
        for j in range(c):
            s += math.exp(logits[i, j] - m)
        v = m + math.log(s)
        lse[i] = v
        losses[i] = v - logits[i, k]
    return -1


@kernel
def cross_entropy_backward(logits, labels, lse, row_scale, gin):
    """gin[i] = (softmax(logits[i]) - onehot(labels[i])) * row_scale[i]."""
    n, c = logits.shape
    for i in range(n):
        v = lse[i]
        w = row_scale[i]
        for j in range(c):
            gin[i, j] = math.exp(logits[i, j] - v) * w
        gin[i, labels[i]] -= w


@kernel
def _softmax_row(v, n, scale, o):
    """o[:n] = softmax(scale * v[:n]) (scale > 0) and o[n:] = 0 (the keys a causal row never sees).

    v may be o itself.
    """
    m = v[0]
    for j in range(1, n):
        if v[j] > m:
            m = v[j]
    s = 0.0
    if o.itemsize == 4:              # float32: a polynomial exp, so this loop vectorises
        for j in range(n):
            e = exp_neg(scale * (m - v[j]))
            o[j] = e
            s += e
    else:
        for j in range(n):
            e = math.exp(scale * (v[j] - m))
            o[j] = e
            s += e
    inv = 1.0 / s
    for j in range(n):
        o[j] = o[j] * inv
    for j in range(n, o.shape[0]):
        o[j] = 0


@kernel
def _keys(i, tk, causal):
    """How many keys query i sees: all, or (causal) keys 0..i."""
    if causal and i + 1 < tk:
        return i + 1
    return tk


@kernel
def scaled_softmax_forward(x, scale, causal, out):
    """softmax(scale * x) over the last axis of x (R, Tq, Tk), optionally causal (key j <= query i).

    In a causal row the keys after the query are never read and get probability 0.
    """
    r_, tq, tk = x.shape
    for r in range(r_):
        for i in range(tq):
            _softmax_row(x[r, i], _keys(i, tk, causal), scale, out[r, i])


@kernel
def masked_softmax_forward(x, mask, scale, causal, out):
    """scaled_softmax_forward of scale * x + mask.

    ``mask`` is an additive (M, Tq, Tk) array with M == 1 (shared by every
    slice) or M == R; an entry of -inf drops that key. A row whose keys are
    all dropped is NaN, as in PyTorch. Each row is built and normalised in
    place in ``out`` while it is in the cache.
    """
    r_, tq, tk = x.shape
    m_ = mask.shape[0]
    for r in range(r_):
        mr = 0 if m_ == 1 else r
        for i in range(tq):
            n = _keys(i, tk, causal)
            row = x[r, i]
            mrow = mask[mr, i]
            o = out[r, i]
            for j in range(n):
                o[j] = scale * row[j] + mrow[j]
            _softmax_row(o, n, 1.0, o)


@kernel
def scaled_softmax_backward(g, y, scale, causal, gin):
    """Backward of (masked/scaled/causal) softmax rows: gin = scale * y * (g - sum(g * y)).

    (R, Tq, Tk) arrays; in a causal row the keys after the query are 0 and skipped.
    """
    r_, tq, tk = g.shape
    for r in range(r_):
        for i in range(tq):
            n = _keys(i, tk, causal)
            gr = g[r, i]
            yr = y[r, i]
            o = gin[r, i]
            s = 0.0
            for j in range(n):
                s += gr[j] * yr[j]
            for j in range(n):
                o[j] = scale * yr[j] * (gr[j] - s)
            for j in range(n, tk):
                o[j] = 0


__all__ = ["softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "cross_entropy_forward", "cross_entropy_backward",
           "scaled_softmax_forward", "masked_softmax_forward", "scaled_softmax_backward"]
