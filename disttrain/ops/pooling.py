"""max_pool2d and avg_pool2d over NCHW (kernels in disttrain/kernels/pooling.py).

The input is padded here (-inf for max, 0 for average) so the kernels have
no bounds tests; gradients are cropped back.

Arguments follow PyTorch: stride defaults to kernel_size, padding is at most
half the kernel (so no window lies entirely in the padding), no ceil mode.
avg_pool2d counts padded zeros in the divisor (count_include_pad=True).
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, pair, pad_hw, crop_hw, lazy_kernels

K = lazy_kernels("pooling")
from .conv import conv_output_size


def _geometry(x, kernel_size, stride, padding, op):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    kh, kw = pair(kernel_size, "kernel_size", op, minimum=1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", op, minimum=1)
    ph, pw = pair(padding, "padding", op)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"{op}: padding {padding!r} must be at most half of kernel_size {kernel_size!r}")
    oh = conv_output_size(x.shape[2], kh, sh, ph, op, "height")
    ow = conv_output_size(x.shape[3], kw, sw, pw, op, "width")
    return kh, kw, sh, sw, ph, pw, oh, ow


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        x = np.asarray(x)
        kh, kw, sh, sw, ph, pw, oh, ow = _geometry(x, kernel_size, stride, padding, "max_pool2d")
        dt = kernel_dtype(x)
        n, c = x.shape[:2]
        xp = pad_hw(x, ph, pw, -np.inf, dt)
        out = np.empty((n * c, oh, ow), dt)
        argmax = np.empty((n * c, oh, ow), np.int32)
        planes = xp.reshape((n * c,) + xp.shape[2:])
        if kh == kw == sh == sw == 2:
            K.max_pool2x2_forward(planes, out, argmax)
        else:
            K.max_pool2d_forward(planes, kh, kw, sh, sw, out, argmax)
        ctx.save_for_backward(argmax)
        ctx.x_shape = x.shape
        ctx.padded = xp.shape[2:], ph, pw
        return out.reshape(n, c, oh, ow)

    @staticmethod
    def backward(ctx, g):
        (argmax,) = ctx.saved_tensors
        n, c = ctx.x_shape[:2]
        (hp, wp), ph, pw = ctx.padded
        dt = kernel_dtype(g)
        gx = np.empty((n * c, hp * wp), dt)              # the kernel zeroes each plane in the cache
        K.max_pool2d_backward(contiguous(g, dt).reshape(argmax.shape), argmax, gx)
        return crop_hw(gx.reshape(n, c, hp, wp), ph, pw), None, None, None


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        x = np.asarray(x)
        geo = _geometry(x, kernel_size, stride, padding, "avg_pool2d")
        kh, kw, sh, sw, ph, pw, oh, ow = geo
        dt = kernel_dtype(x)
        n, c = x.shape[:2]
        xp = pad_hw(x, ph, pw, 0, dt)
        out = np.empty((n * c, oh, ow), dt)
        K.avg_pool2d_forward(xp.reshape((n * c,) + xp.shape[2:]), kh, kw, sh, sw, out)
        ctx.geometry = geo
        ctx.x_shape = x.shape
        return out.reshape(n, c, oh, ow)

    @staticmethod
    def backward(ctx, g):
        kh, kw, sh, sw, ph, pw, oh, ow = ctx.geometry
        n, c, h, w = ctx.x_shape
        dt = kernel_dtype(g)
        gx = np.empty((n * c, h + 2 * ph, w + 2 * pw), dt)
        K.avg_pool2d_backward(contiguous(g, dt).reshape(n * c, oh, ow), kh, kw, sh, sw, gx)
        return crop_hw(gx.reshape(n, c, h + 2 * ph, w + 2 * pw), ph, pw), None, None, None


def max_pool2d(x, kernel_size, stride=None, padding=0):
    return MaxPool2d.apply(x, kernel_size, stride, padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    return AvgPool2d.apply(x, kernel_size, stride, padding)
