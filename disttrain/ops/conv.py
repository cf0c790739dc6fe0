"""conv2d over NCHW with weight (out_channels, in_channels, kh, kw), as in PyTorch.

im2col (a Numba kernel, disttrain/kernels/conv.py) turns each sample into a
(C*kh*kw, oh*ow) matrix; then the forward and both gradients are batched
BLAS GEMMs that read and write NCHW directly (no reordering copies), and
col2im scatters the columns' gradient back onto the input. The columns are
kept from forward for the weight gradient.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, pair, lazy_kernels

K = lazy_kernels("conv")


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
        w2 = contiguous(weight, dt).reshape(o, c * kh * kw)
        out = np.empty((n, o, oh * ow), dt)
        cols = _Columns(xc, kh, kw, sh, sw, ph, pw, oh, ow)
        b = None if bias is None else contiguous(bias, dt)
        for i in range(n):                                 # one image at a time: cols stays in the cache
            oi = out[i]
            np.matmul(w2, cols.of(i), out=oi)              # (O, oh*ow): NCHW
            if b is not None:                              # while this image's output is in the cache
                K.bias_add(oi, b)
        ctx.save_for_backward(xc, w2)
        ctx.geometry = (weight.shape, sh, sw, ph, pw, oh, ow)
        return out.reshape(n, o, oh, ow)

    @staticmethod
    def backward(ctx, g):
        xc, w2 = ctx.saved_tensors
        w_shape, sh, sw, ph, pw, oh, ow = ctx.geometry
        nx, nw, nb = ctx.needs_input_grad[:3]
        n, o = g.shape[0], g.shape[1]
        kh, kw = w_shape[2], w_shape[3]
        dt = w2.dtype
        g3 = contiguous(g, dt).reshape(n, o, oh * ow)
        # One pass over the images, each through one cache-resident buffer: its columns are rebuilt
        # from x (not kept from forward: the whole batch's columns would be a trip to memory each
        # way), the weight gradient accumulates cols @ g^T (this orientation measured 1.2-1.4x
        # faster than g @ cols^T), then the same buffer takes w^T @ g, folded back by col2im.
        cols = _Columns(xc, kh, kw, sh, sw, ph, pw, oh, ow)
        gwt = np.empty(w2.shape[::-1], dt) if nw else None
        part = np.empty(w2.shape[::-1], dt) if nw and n > 1 else None
        gx = np.empty(xc.shape, dt) if nx else None
        gcols = cols.buf if nx and cols.buf is not None else np.empty((w2.shape[1], oh * ow), dt)
        w2t = w2.T
        for i in range(n):
            gi = g3[i]
            if nw:
                np.matmul(cols.of(i), gi.T, out=part if i else gwt)
                if i:
                    gwt += part
            if nx:
                np.matmul(w2t, gi, out=gcols)
                K.col2im(gcols, kh, kw, sh, sw, ph, pw, oh, ow, gx[i])
        gw = np.ascontiguousarray(gwt.T).reshape(w_shape) if nw else None
        gb = g3.sum(axis=(0, 2)) if nb else None
        return gx, gw, gb, None, None


class _Columns:
    """The im2col matrix of image i of x, in one reused buffer (or a view of x for a plain 1x1 conv)."""

    def __init__(self, x, kh, kw, sh, sw, ph, pw, oh, ow):
        self.x = x
        self.args = (kh, kw, sh, sw, ph, pw, oh, ow)
        c = x.shape[1]
        self.direct = kh == kw == sh == sw == 1 and ph == pw == 0
        self.buf = None if self.direct else np.empty((c * kh * kw, oh * ow), x.dtype)

    def of(self, i):
        xi = self.x[i]
        if self.direct:
            return xi.reshape(xi.shape[0], -1)
        K.im2col(xi, *self.args, self.buf)
        return self.buf


def conv2d(x, weight, bias=None, stride=1, padding=0):
    return Conv2d.apply(x, weight, bias, stride, padding)
