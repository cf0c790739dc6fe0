"""im2col / col2im for 2-D convolution over a small group of images; the GEMMs go to BLAS.

Layout: ``cols`` is (B, C*kh*kw, oh*ow), one matrix per image, with row
``(c*kh + i)*kw + j`` and column ``y*ow + x`` holding
input[c, y*sh + i - ph, x*sw + j - pw] (zero outside the input). The op
runs the batch through a buffer of this shape sized to stay in the cache
(one image for large layers, a few for small ones): im2col, then the GEMM
``weight2d @ cols`` writes the output directly in NCHW order,
``weight2d.T @ grad`` gives the columns' gradient and col2im folds that
back. Measured (conv 32->64 3x3 on 26x26, batch 64, 1 thread): the whole
batch's columns at once (42 MB) made every pass a trip to memory and ran
the forward 3x slower than one image at a time.

Padding is handled by the loops themselves, with no per-pixel test: for
each kernel tap (i, j) the range of output columns that reads inside the
input is computed once, the rest of the row is zero (im2col) or skipped
(col2im). So the op never builds a padded copy of the input.
Inputs are C-contiguous float32/float64.
"""
from ._jit import kernel


@kernel
def _tap(c, i, j, kh, kw, pw, sw, w, ow):
    """Kernel tap (c, i, j): its row r of the columns, the output columns [lo, hi) whose input
    column xo*sw + j - pw lies inside the input (width w), and that input column x0 for xo = lo."""
    lo = 0
    off = pw - j                       # xo*sw >= off
    if off > 0:
        lo = (off + sw - 1) // sw
    hi = (w - 1 + pw - j) // sw + 1 if w - 1 + pw - j >= 0 else 0
    if hi > ow:
        hi = ow
    if hi < lo:
        hi = lo
    return (c * kh + i) * kw + j, lo, hi, lo * sw + j - pw


@kernel
def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    """cols (B, C*kh*kw, oh*ow) <- the patches of the images x (B, C, H, W)."""
    for b in range(x.shape[0]):
        _im2col_one(x[b], kh, kw, sh, sw, ph, pw, oh, ow, cols[b])


@kernel
def col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, gx):
    """Adjoint of im2col: gx (B, C, H, W) = the column entries of cols (B, C*kh*kw, oh*ow) summed at
    their input pixels. gx is overwritten (zeroed plane by plane while in the cache, then accumulated into).
    """
    for b in range(gx.shape[0]):
        _col2im_one(cols[b], kh, kw, sh, sw, ph, pw, oh, ow, gx[b])


@kernel
def _im2col_one(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    c_, h, w = x.shape
    if ph == 0 and pw == 0 and sw == 1:           # the common case, without the range bookkeeping
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for y in range(oh):
                        src = x[c, y * sh + i, j:j + ow]
                        dst = cols[r, y * ow:(y + 1) * ow]
                        for k in range(ow):
                            dst[k] = src[k]
        return
    for c in range(c_):
        for i in range(kh):
            for j in range(kw):
                r, lo, hi, x0 = _tap(c, i, j, kh, kw, pw, sw, w, ow)
                for y in range(oh):
                    yy = y * sh + i - ph
                    # row slices, not 2-D indexing: numba then sees unit-stride loops (measured ~8x faster)
                    dst = cols[r, y * ow:(y + 1) * ow]
                    if yy < 0 or yy >= h:
                        dst[:] = 0
                        continue
                    dst[:lo] = 0
                    dst[hi:] = 0
                    if sw == 1:
                        src = x[c, yy, x0:x0 + hi - lo]
                        out = dst[lo:hi]
                        for k in range(hi - lo):
                            out[k] = src[k]
                    else:
                        src = x[c, yy]
                        for xo in range(lo, hi):
                            dst[xo] = src[xo * sw + j - pw]


@kernel
def _col2im_one(cols, kh, kw, sh, sw, ph, pw, oh, ow, gx):
    c_, h, w = gx.shape
    for c in range(c_):
        gx[c] = 0
        for i in range(kh):
            for j in range(kw):
                r, lo, hi, x0 = _tap(c, i, j, kh, kw, pw, sw, w, ow)
                for y in range(oh):
                    yy = y * sh + i - ph
                    if yy < 0 or yy >= h:
                        continue
                    src = cols[r, y * ow + lo:y * ow + hi]
                    if sw == 1:
                        dst = gx[c, yy, x0:x0 + hi - lo]
                        for k in range(hi - lo):
                            dst[k] += src[k]
                    else:
                        dst = gx[c, yy]
                        for k in range(hi - lo):
                            dst[x0 + k * sw] += src[k]


@kernel
def bias_add(out, bias):
    """out (B, O, P) += bias[o] in place: a group of images' outputs."""
    n_, o_, p_ = out.shape
    for n in range(n_):
        for o in range(o_):
            b = bias[o]
            row = out[n, o]
            for p in range(p_):
                row[p] += b
