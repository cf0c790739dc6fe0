"""conv2d over NCHW with weight (out_channels, in_channels, kh, kw), as in PyTorch.

im2col (a Numba kernel, disttrain/kernels/conv.py) turns each sample into a
(C*kh*kw, oh*ow) matrix; then the forward and both gradients are batched
BLAS GEMMs that read and write NCHW directly (no reordering copies), and
col2im scatters the columns' gradient back onto the input. The columns are
kept from forward for the weight gradient.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, pair, pad_hw, crop_hw, lazy_kernels

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
        xc = pad_hw(x, ph, pw, 0, dt)
        w2 = contiguous(weight, dt).reshape(o, c * kh * kw)
        cols = np.empty((n, c * kh * kw, oh * ow), dt)
        K.im2col(xc, kh, kw, sh, sw, oh, ow, cols)
        out = np.matmul(w2, cols)                          # (N, O, oh*ow): NCHW
        if bias is not None:
            out += contiguous(bias, dt)[:, None]
        ctx.save_for_backward(cols, w2)
        ctx.geometry = (x.shape, weight.shape, sh, sw, ph, pw, oh, ow)
        return out.reshape(n, o, oh, ow)

    @staticmethod
    def backward(ctx, g):
        cols, w2 = ctx.saved_tensors
        x_shape, w_shape, sh, sw, ph, pw, oh, ow = ctx.geometry
        nx, nw, nb = ctx.needs_input_grad[:3]
        n, o = g.shape[0], g.shape[1]
        g3 = contiguous(g, w2.dtype).reshape(n, o, oh * ow)
        # sum over samples of per-sample products (cache-resident); this operand order measured
        # up to 2x faster than g3 @ cols^T for few output channels
        gw = np.matmul(cols, g3.transpose(0, 2, 1)).sum(axis=0).T.reshape(w_shape) if nw else None
        gb = g3.sum(axis=(0, 2)) if nb else None
        gx = None
        if nx:
            gcols = np.matmul(w2.T, g3)                    # (N, C*kh*kw, oh*ow)
            n_, c, h, w = x_shape
            gx = np.zeros((n_, c, h + 2 * ph, w + 2 * pw), w2.dtype)
            K.col2im(gcols, w_shape[2], w_shape[3], sh, sw, oh, ow, gx)
            gx = crop_hw(gx, ph, pw)
        return gx, gw, gb, None, None


def conv2d(x, weight, bias=None, stride=1, padding=0):
    return Conv2d.apply(x, weight, bias, stride, padding)
