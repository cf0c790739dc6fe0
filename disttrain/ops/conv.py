"""conv2d over NCHW with weight (out_channels, in_channels, kh, kw), as in PyTorch.

im2col (a Numba kernel, disttrain/kernels/conv.py) turns each sample into a
(C*kh*kw, oh*ow) matrix; then the forward and both gradients are batched
BLAS GEMMs that read and write NCHW directly (no reordering copies), and
col2im scatters the columns' gradient back onto the input. The columns are
kept from forward for the weight gradient.

3x3 stride-1 convolutions with enough channels (use_winograd) take the
Winograd F(2x2, 3x3) path instead (disttrain/kernels/winograd.py; the why and
the numbers are at WINOGRAD below).
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, pair, lazy_kernels

K = lazy_kernels("conv")
KW = lazy_kernels("winograd")


def conv_output_size(size, k, s, p, op, what):
    out = (size + 2 * p - k) // s + 1
    if out < 1:
        raise ValueError(f"{op}: kernel size {k} with padding {p} is larger than the input {what} {size}")
    return out


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        x = np.asarray(x)
        sh, sw = pair(stride, "stride", "conv2d", minimum=1)
        ph, pw = pair(padding, "padding", "conv2d")
        if x.ndim != 4:
            raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x.shape}")
        if weight.ndim != 4:
            raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), "
                             f"got shape {weight.shape}")
        n, c, h, w = x.shape
        o, cw, kh, kw = weight.shape
        if c != cw:
            raise ValueError(f"conv2d: input has {c} channels (shape {x.shape}) but weight expects {cw} "
                             f"(weight shape {weight.shape})")
        if bias is not None and np.shape(bias) != (o,):
            raise ValueError(f"conv2d: bias of shape {np.shape(bias)} does not match {o} output channels "
                             f"(weight shape {weight.shape})")
        oh = conv_output_size(h, kh, sh, ph, "conv2d", "height")
        ow = conv_output_size(w, kw, sw, pw, "conv2d", "width")
        dt = kernel_dtype(x, weight) if bias is None else kernel_dtype(x, weight, bias)
        xc = contiguous(x, dt)
        if use_winograd(c, o, kh, kw, sh, sw):
            return _winograd_forward(ctx, xc, contiguous(weight, dt),
                                     None if bias is None else contiguous(bias, dt), ph, pw, oh, ow)
        ctx.winograd = None
        w2 = contiguous(weight, dt).reshape(o, c * kh * kw)
        out = np.empty((n, o, oh * ow), dt)
        cols = _Columns(xc, kh, kw, sh, sw, ph, pw, oh, ow)
        bc = None if bias is None else contiguous(bias, dt)
        for i, j in cols.groups():                         # a cache-sized group of images at a time
            oi = out[i:j]
            np.matmul(w2, cols.of(i, j), out=oi)           # (B, O, oh*ow): NCHW
            if bc is not None:                             # while this output is in the cache
                K.bias_add(oi, bc)
        cols.x = None                                      # backward gets x (or the kept columns) itself
        ctx.save_for_backward(xc, w2)
        ctx.cols = cols
        ctx.geometry = (weight.shape, sh, sw, ph, pw, oh, ow)
        return out.reshape(n, o, oh, ow)

    @staticmethod
    def backward(ctx, g):
        if ctx.winograd is not None:
            return _winograd_backward(ctx, g)
        xc, w2 = ctx.saved_tensors
        w_shape, sh, sw, ph, pw, oh, ow = ctx.geometry
        nx, nw, nb = ctx.needs_input_grad[:3]
        n, o = g.shape[0], g.shape[1]
        kh, kw = w_shape[2], w_shape[3]
        dt = w2.dtype
        g3 = contiguous(g, dt).reshape(n, o, oh * ow)
        # One pass over the groups of images, each through one cache-resident buffer: the columns are
        # rebuilt from x (not kept from forward: the whole batch's columns would be a trip to memory
        # each way), the weight gradient accumulates cols @ g^T (this orientation measured 1.2-1.4x
        # faster than g @ cols^T), then the same buffer takes w^T @ g, folded back by col2im.
        cols = ctx.cols
        cols.x = xc
        gwt = np.zeros(w2.shape[::-1], dt) if nw else None
        part = np.empty((cols.group,) + w2.shape[::-1], dt) if nw else None
        gx = np.empty(xc.shape, dt) if nx else None
        gcols = cols.buf if nx and cols.buf is not None and not cols.kept else \
            np.empty((cols.group, w2.shape[1], oh * ow), dt)
        w2t = w2.T
        for i, j in cols.groups():
            gi = g3[i:j]
            if nw:
                pj = part[:j - i]
                np.matmul(cols.of(i, j), gi.transpose(0, 2, 1), out=pj)
                gwt += pj[0] if j - i == 1 else pj.sum(axis=0)
            if nx:
                gc = gcols[:j - i]
                np.matmul(w2t, gi, out=gc)
                K.col2im(gc, kh, kw, sh, sw, ph, pw, oh, ow, gx[i:j])
        gw = np.ascontiguousarray(gwt.T).reshape(w_shape) if nw else None
        gb = g3.sum(axis=(0, 2)) if nb else None
        return gx, gw, gb, None, None


# The per-shape choice. Up to KEEP_BYTES of columns for the whole batch (LeNet-sized layers), one
# im2col of the batch, one batched GEMM, and the columns are kept for backward: per-image calls
# would cost more than their arithmetic (measured 1.45x slower for LeNet's convolutions one image at
# a time). Larger layers run in groups of at most COLS_BYTES of columns through one reused,
# cache-resident buffer -- one image for conv 32->64 on 26x26 (663 KB) -- rebuilt in backward.
KEEP_BYTES = 4 * 1024 * 1024
COLS_BYTES = 512 * 1024


class _Columns:
    """im2col matrices of groups of images of x: the whole batch kept, one reused group buffer, or views
    of x for a plain 1x1 convolution (see KEEP_BYTES)."""

    def __init__(self, x, kh, kw, sh, sw, ph, pw, oh, ow):
        self.x = x
        self.args = (kh, kw, sh, sw, ph, pw, oh, ow)
        n, c = x.shape[:2]
        per_image = c * kh * kw * oh * ow * x.itemsize
        self.direct = kh == kw == sh == sw == 1 and ph == pw == 0
        self.kept = not self.direct and n * per_image <= KEEP_BYTES
        self.group = n if self.kept else max(1, min(n, COLS_BYTES // max(per_image, 1)))
        self.filled = False
        self.buf = None if self.direct else np.empty((self.group, c * kh * kw, oh * ow), x.dtype)

    def groups(self):
        n, b = self.x.shape[0], max(self.group, 1)          # an empty batch: no groups
        return [(i, min(i + b, n)) for i in range(0, n, b)]

    def of(self, i, j):
        xi = self.x[i:j]
        if self.direct:
            return xi.reshape(j - i, xi.shape[1], -1)
        if self.kept:                       # the whole batch (one group), built once
            if not self.filled:
                K.im2col(xi, *self.args, self.buf)
                self.filled = True
            return self.buf
        cols = self.buf[:j - i]
        K.im2col(xi, *self.args, cols)
        return cols


# ---- Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray 2015) ---------------------
#
# Why: the im2col path's three GEMMs alone cost ~22.5 of its ~31 ms on conv 32->64 26x26 batch 64
# (180 GFLOP/s sgemm), about PyTorch's whole time, so no im2col variant can beat it. Winograd
# F(2x2, 3x3) computes each 2x2 output tile from a 4x4 input tile with 16 multiplies per (in, out)
# channel pair instead of 36: the GEMM part shrinks 2.25x. The GEMMs are 16 independent
# (O x C) @ (C x T) products over the tiles T, one batched np.matmul per block, for the forward
# (M = U V), the weight gradient (dU = dM V^T) and the input gradient (dV = U^T dM) alike.
# Cost: the transforms (disttrain/kernels/winograd.py), adds only: B^T d B of every input tile
# (writes 4x the input's size), A^T m A of every product tile (reads 4x the output's size), and
# their adjoints in backward; the input one runs twice (V recomputed for dU). Measured (profile,
# fwd+bwd, batch 64, ms), conv 32->64 26x26: GEMMs 3.7 fwd + 7.2 bwd, input transform 2.9 +
# 2.8 (recomputed, transposed), its adjoint 3.1, output transform 2.3, its adjoint 1.9: ~24 in
# all against im2col's ~31-36 in the same run; conv 64->128 14x14: GEMMs 3.3 + 6.6, transforms
# 2.3 + 1.9 + 2.2 + 1.2 + 1.3: ~19 against ~30. The transforms are bound by their short rows
# of tiles (6-12 per row; see disttrain/kernels/winograd.py), not by arithmetic. The weight
# transforms (U = G W G^T, dW = G^T dU G) are ~0.1 ms. Since then (vertical pass first, so
# the long loop runs over all tiles, and indices LLVM can prove non-negative) the five kernels
# alone, per batch, best of many calls, old -> new: conv 32->64 26x26 input 2.5 -> 1.1,
# transposed 2.2 -> 1.75, its adjoint 2.6 -> 1.5, output 1.7 -> 1.05, its adjoint 1.2 -> 1.0
# (10.2 -> 6.4 ms); conv 64->128 14x14 7.2 -> 5.3 ms.
# Accuracy: G's entries (1, 1/2) and B's, A's (0, +-1) are exact in binary, so the only error is
# the sums' rounding: max relative error against a float64 im2col reference, output / dX / dW,
# float32 2e-7 / 3e-7 / 4.4e-7 (im2col in float32: 5.7e-7 / 2.2e-7 / 3.2e-7) on 32->64 26x26,
# float64 <= 1.2e-15.
#
# Blocks: the batch runs in blocks of images whose V (16, C, T) and M (16, O, T) fit in
# WINOGRAD_BLOCK_BYTES (the L2 cache), through reused buffers. Backward recomputes V per block, as
# V^T (16, T, C) so that dU = dM @ V^T is a plain row-major GEMM (through a transposed view it ran
# 1.5-1.8x slower). Keeping the whole batch's V (4x the input's size) from forward measured no
# faster (+-0.5 ms), nor did larger blocks for backward (2-8 MB).

WINOGRAD = "auto"           # True: every 3x3 stride-1 conv; False: never (the tests force both ways)
WINOGRAD_MIN_CHANNELS = 8
WINOGRAD_BLOCK_BYTES = 1024 * 1024

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def use_winograd(c, o, kh, kw, sh, sw):
    """Whether conv2d takes the Winograd path for this shape (else im2col)."""
    if not (kh == kw == 3 and sh == sw == 1) or WINOGRAD is False:
        return False
    if WINOGRAD is True:
        return True
    # The transforms pay only once both channel counts give the GEMMs enough work. Measured fwd+bwd,
    # batch 64, Winograd / im2col time: 3->16 on 32x32 1.16 (and conv 1->32, no input gradient, is
    # already 0.4x PyTorch by im2col); 8->16 on 28x28 0.72, 16->8 0.75, 16->16 on 8x8 0.94,
    # 32->32 on 8x8 0.70, 64->64 on 6x6 0.51, 128->128 on 8x8 0.61, 32->64 on 26x26 ~0.8.
    return c >= WINOGRAD_MIN_CHANNELS and o >= WINOGRAD_MIN_CHANNELS


def _tiles(oh, ow):
    return (oh + 1) // 2, (ow + 1) // 2


def _block_images(n, c, o, p, itemsize):
    return max(1, min(n, WINOGRAD_BLOCK_BYTES // (16 * (c + o) * p * itemsize)))


def _weight_transform(wc):
    """U (16, O, C): G W G^T per (o, c), row-major over the 4x4 positions. As two tensordots (one
    GEMM each): np.einsum with three operands took ~3 ms here and a broadcast matmul ~1.4 ms
    (one tiny product per (o, c)); these take a few hundredths."""
    o, c = wc.shape[:2]
    g_ = _G.astype(wc.dtype)
    t = np.tensordot(g_, wc, axes=([1], [2]))             # (4, O, C, 3): G along kh
    u = np.tensordot(t, g_, axes=([3], [1]))              # (4, O, C, 4): G along kw
    return np.ascontiguousarray(u.transpose(0, 3, 1, 2)).reshape(16, o, c)


def _weight_transform_adjoint(du, w_shape):
    """dW (O, C, 3, 3) = G^T dU G per (o, c): the adjoint of _weight_transform."""
    o, c = w_shape[:2]
    g_ = _G.astype(du.dtype)
    t = np.tensordot(g_, du.reshape(4, 4, o, c), axes=([0], [0]))   # (3, 4, O, C): [k, j, o, c]
    d = np.tensordot(t, g_, axes=([1], [0]))                         # (3, O, C, 3): [k, o, c, l]
    return np.ascontiguousarray(d.transpose(1, 2, 0, 3))


def _winograd_forward(ctx, xc, wc, bc, ph, pw, oh, ow):
    n, c = xc.shape[:2]
    o = wc.shape[0]
    dt = xc.dtype
    th, tw = _tiles(oh, ow)
    p = th * tw
    u = _weight_transform(wc)
    nb = _block_images(n, c, o, p, dt.itemsize)
    v = np.empty((16, c, nb * p), dt)
    m = np.empty((16, o, nb * p), dt)
    out = np.empty((n, o, oh, ow), dt)
    bias = bc if bc is not None else np.zeros(o, dt)
    for i in range(0, n, nb):
        j = min(n, i + nb)
        t = (j - i) * p
        KW.input_transform(xc[i:j], ph, pw, th, tw, v)
        np.matmul(u, v[:, :, :t], out=m[:, :, :t])       # M_xi = U_xi @ V_xi, 16 GEMMs
        KW.output_transform(m, bias, th, tw, out[i:j])
    ctx.save_for_backward(xc, u)
    ctx.winograd = (wc.shape, ph, pw, oh, ow)
    return out


def _winograd_backward(ctx, g):
    xc, u = ctx.saved_tensors
    w_shape, ph, pw, oh, ow = ctx.winograd
    nx, nw, nbias = ctx.needs_input_grad[:3]
    n, c = xc.shape[:2]
    o = w_shape[0]
    dt = xc.dtype
    th, tw = _tiles(oh, ow)
    p = th * tw
    gc = contiguous(g, dt)
    nb = _block_images(n, c, o, p, dt.itemsize)
    v = np.empty((16, c, nb * p), dt) if nx else None
    vt = np.empty((16, nb * p, c), dt) if nw else None
    dm = np.empty((16, o, nb * p), dt)
    du = np.zeros((16, o, c), dt) if nw else None
    part = np.empty((16, o, c), dt) if nw else None
    gx = np.empty(xc.shape, dt) if nx else None
    ut = u.transpose(0, 2, 1)
    for i in range(0, n, nb):
        j = min(n, i + nb)
        t = (j - i) * p
        KW.output_transform_adjoint(gc[i:j], th, tw, dm)
        if nw:                                          # dU_xi += dM_xi @ V_xi^T, V recomputed
            KW.input_transform_t(xc[i:j], ph, pw, th, tw, vt)
            np.matmul(dm[:, :, :t], vt[:, :t], out=part)
            du += part
        if nx:                                          # dV_xi = U_xi^T @ dM_xi, folded onto dX
            np.matmul(ut, dm[:, :, :t], out=v[:, :, :t])
            KW.input_transform_adjoint(v, ph, pw, th, tw, gx[i:j])
    gw = _weight_transform_adjoint(du, w_shape) if nw else None
    gb = gc.sum(axis=(0, 2, 3)) if nbias else None
    return gx, gw, gb, None, None


def conv2d(x, weight, bias=None, stride=1, padding=0):
    return Conv2d.apply(x, weight, bias, stride, padding)
