"""im2col / col2im for 2-D convolution; the GEMMs themselves go to BLAS.

Layout: ``cols`` is (N, C*kh*kw, oh*ow), one matrix per sample, with row
``(c*kh + i)*kw + j`` and column ``y*ow + x`` holding
input[n, c, y*sh + i, x*sw + j]. Then the batched GEMM ``weight2d @ cols``
gives the output directly in NCHW order, ``weight2d.T @ grad`` gives the
columns' gradient, and the per-sample matrices stay small enough to be
cache-resident while BLAS works on them.

The kernels know no padding: the op pads the input (and crops the input
gradient) instead, which keeps the inner loops free of bounds tests -- they
vectorise, and measured 3-5x faster than a padding-aware loop. The unit
stride case has its own inner loop for the same reason.
Inputs are C-contiguous float32/float64.
"""
from ._jit import kernel


@kernel
def im2col(x, kh, kw, sh, sw, oh, ow, cols):
    n_, c_, h, w = x.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for y in range(oh):
                        yy = y * sh + i
                        col0 = y * ow
                        if sw == 1:
                            for xo in range(ow):
                                cols[n, r, col0 + xo] = x[n, c, yy, xo + j]
                        else:
                            for xo in range(ow):
                                cols[n, r, col0 + xo] = x[n, c, yy, xo * sw + j]


@kernel
def col2im(cols, kh, kw, sh, sw, oh, ow, gx):
    """Adjoint of im2col: gx (zeroed by the caller) += each column entry at its input pixel."""
    n_, c_, h, w = gx.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for y in range(oh):
                        yy = y * sh + i
                        col0 = y * ow
                        if sw == 1:
                            for xo in range(ow):
                                gx[n, c, yy, xo + j] += cols[n, r, col0 + xo]
                        else:
                            for xo in range(ow):
                                gx[n, c, yy, xo * sw + j] += cols[n, r, col0 + xo]
