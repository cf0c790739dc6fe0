"""Attention's fused scaled, causally masked softmax (forward); backward is softmax_backward.

Rows are (batch * heads * queries) of length keys, C-contiguous float32/float64. Row r is query
i = r % q_len, which sees keys j <= i (PyTorch's ``is_causal``: the top-left aligned lower
triangle); its other entries are written as 0, so softmax_backward gives them no gradient.
Row sums accumulate in float64.
"""
import math

from ._jit import kernel


@kernel
def causal_softmax_forward(x, scale, q_len, out):
    n, c = x.shape
    for r in range(n):
        last = min(r % q_len, c - 1)
        m = x[r, 0] * scale
        for j in range(1, last + 1):
            v = x[r, j] * scale
            if v > m:
                m = v
        s = 0.0
        for j in range(last + 1):
            e = math.exp(x[r, j] * scale - m)
            out[r, j] = e
            s += e
        inv = 1.0 / s
        for j in range(last + 1):
            out[r, j] = out[r, j] * inv
        for j in range(last + 1, c):
            out[r, j] = 0.0


__all__ = ["causal_softmax_forward"]
