"""bfloat16 sums on uint16 bit patterns: the reduction MPI calls for bf16 allreduces (wire16.py).

One pass per block of a few thousand elements (decode to float32, add, round to nearest even,
encode) instead of numpy's dozen whole-array passes and temporaries: MPI runs the op inside its
own progress loop, once per received segment, so its speed is the bf16 allreduce's speed on a
fast link.
"""
import numpy as np

from ._jit import kernel

_BLOCK = 2048


@kernel
def bf16_add_into(a, b):
    """b[i] = bfloat16(a[i] + b[i]) for uint16 bit patterns, rounded to nearest even; NaN stays NaN,
    overflow gives inf (bit for bit what `wire16.bf16_sum_bits` computes)."""
    n = b.size
    ua = np.empty(_BLOCK, np.uint32)
    ub = np.empty(_BLOCK, np.uint32)
    fa = ua.view(np.float32)
    fb = ub.view(np.float32)
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        for i in range(m):
            ua[i] = np.uint32(a[start + i]) << np.uint32(16)
            ub[i] = np.uint32(b[start + i]) << np.uint32(16)
        for i in range(m):
            fa[i] = fa[i] + fb[i]
        for i in range(m):
            u = ua[i]
            if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):       # NaN: keep it quiet, not inf
                r = u | np.uint32(0x00400000)
            else:
                r = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
            b[start + i] = np.uint16(r >> np.uint32(16))
