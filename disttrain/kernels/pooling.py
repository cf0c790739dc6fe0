"""2-D max and average pooling over (planes, H, W) = NCHW with N*C folded, forward and backward.

The kernels know no padding: the op pads with -inf (max) or 0 (average;
PyTorch's count_include_pad=True, divisor kh*kw) and crops the gradient, so
the inner loops test nothing per pixel. The 2x2 window with stride 2 -- by
far the most common -- has its own unrolled kernel (about 4x faster; a
separate kernel so that each compiles only when used). Max pooling
records, per output, the flat index (y*W + x) of the winning pixel in its
(padded) plane, so backward is a scatter-add (windows overlap when
stride < kernel). NaN wins a window and stays, as in PyTorch.
"""
from ._jit import kernel


@kernel
def max_pool2d_forward(x, kh, kw, sh, sw, out, argmax):
    planes, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in range(planes):
        for y in range(oh):
            for xo in range(ow):
                r0 = y * sh
                c0 = xo * sw
                best = x[p, r0, c0]
                k = r0 * w + c0
                for i in range(kh):
                    for j in range(kw):
                        v = x[p, r0 + i, c0 + j]
                        # 'not v <= best' is v > best or v is NaN; 'best == best' keeps a NaN once found
                        if not v <= best and best == best:
                            best = v
                            k = (r0 + i) * w + c0 + j
                out[p, y, xo] = best
                argmax[p, y, xo] = k


@kernel
def max_pool2x2_forward(x, out, argmax):
    """max_pool2d_forward for a 2x2 window with stride 2, unrolled (about 4x faster)."""
    planes, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in range(planes):
        for y in range(oh):
            r0 = 2 * y
            for xo in range(ow):
                c0 = 2 * xo
                best = x[p, r0, c0]
                k = r0 * w + c0
                v = x[p, r0, c0 + 1]
                if not v <= best and best == best:
                    best = v
                    k = r0 * w + c0 + 1
                v = x[p, r0 + 1, c0]
                if not v <= best and best == best:
                    best = v
                    k = (r0 + 1) * w + c0
                v = x[p, r0 + 1, c0 + 1]
                if not v <= best and best == best:
                    best = v
                    k = (r0 + 1) * w + c0 + 1
                out[p, y, xo] = best
                argmax[p, y, xo] = k


@kernel
def max_pool2d_backward(g, argmax, gx):
    """gx (planes, H*W) = g scattered onto each window's winning pixel, 0 elsewhere.

    gx is overwritten: each plane is zeroed here, just before its scatter, while it
    is in the cache (a separate np.zeros pass measured as costly as the scatter).
    """
    planes, oh, ow = g.shape
    for p in range(planes):
        gx[p] = 0
        for y in range(oh):
            for xo in range(ow):
                gx[p, argmax[p, y, xo]] += g[p, y, xo]


@kernel
def avg_pool2d_forward(x, kh, kw, sh, sw, out):
    planes, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    inv = 1.0 / (kh * kw)
    for p in range(planes):
        for y in range(oh):
            for xo in range(ow):
                s = 0.0
                for i in range(kh):
                    for j in range(kw):
                        s += x[p, y * sh + i, xo * sw + j]
                out[p, y, xo] = s * inv


@kernel
def avg_pool2d_backward(g, kh, kw, sh, sw, gx):
    """gx (planes, H, W) = the sum of g / (kh*kw) over the windows covering each pixel (overwritten)."""
    planes, h, w = gx.shape
    oh, ow = g.shape[1], g.shape[2]
    inv = 1.0 / (kh * kw)
    for p in range(planes):
        gx[p] = 0
        for y in range(oh):
            for xo in range(ow):
                v = g[p, y, xo] * inv
                for i in range(kh):
                    for j in range(kw):
                        gx[p, y * sh + i, xo * sw + j] += v
