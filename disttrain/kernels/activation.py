"""Elementwise activation kernels over flat contiguous arrays.

Each kernel reads its inputs once and writes one output (no temporaries):
the backward kernels fuse the local derivative with the product by the
incoming gradient. Callers pass 1-D C-contiguous float32/float64 arrays of
equal length (ops reshape with ``reshape(-1)``), so each kernel compiles at
most two variants. Arithmetic stays in the input dtype.
"""
import math


from ._jit import kernel
from .vecmath import erf32, exp_neg

_SQRT_HALF = 0.7071067811865476          # 1/sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327       # 1/sqrt(2*pi)
_SQRT_2_OVER_PI = 0.7978845608028654     # sqrt(2/pi)
_GELU_C = 0.044715


@kernel
def relu_forward(x, out):
    """out = max(x, 0); ``v <= 0`` is false for NaN, so NaN passes through (as in PyTorch)."""
    for i in range(x.size):
        v = x[i]
        out[i] = 0 if v <= 0 else v


@kernel
def relu_backward(g, out, gin):
    """gin = g where out > 0 else 0 (the derivative at 0 is taken as 0)."""
    for i in range(g.size):
        gin[i] = g[i] if out[i] > 0 else 0


@kernel
def sigmoid_forward(x, out):
    # exp of a non-positive argument only: no overflow for large |x|.
    for i in range(x.size):
        v = x[i]
        if v >= 0:
            out[i] = 1 / (1 + math.exp(-v))
        else:
            e = math.exp(v)
            out[i] = e / (1 + e)


@kernel
def sigmoid_backward(g, out, gin):
    for i in range(g.size):
        y = out[i]
        gin[i] = g[i] * y * (1 - y)


@kernel
def tanh_backward(g, out, gin):
    for i in range(g.size):
        y = out[i]
        gin[i] = g[i] * (1 - y * y)


@kernel
def gelu_forward(x, out, approximate_tanh):
    """Exact GELU x*Phi(x) = x/2 (1 + erf(x/sqrt 2)), or its tanh approximation."""
    one = x.dtype.type(1)
    half = x.dtype.type(0.5)
    if approximate_tanh:
        k = x.dtype.type(_SQRT_2_OVER_PI)
        c = x.dtype.type(_GELU_C)
        for i in range(x.size):
            v = x[i]
            out[i] = half * v * (one + math.tanh(k * (v + c * v * v * v)))
    elif x.itemsize == 4:
        s = x.dtype.type(_SQRT_HALF)
        for i in range(x.size):
            v = x[i]
            out[i] = half * v * (one + erf32(v * s))
    else:
        s = x.dtype.type(_SQRT_HALF)
        for i in range(x.size):
            v = x[i]
            out[i] = half * v * (one + math.erf(v * s))


@kernel
def gelu_backward(g, x, gin, approximate_tanh):
    one = x.dtype.type(1)
    half = x.dtype.type(0.5)
    if approximate_tanh:
        k = x.dtype.type(_SQRT_2_OVER_PI)
        c = x.dtype.type(_GELU_C)
        c3 = x.dtype.type(3 * _GELU_C)
        for i in range(x.size):
            v = x[i]
            t = math.tanh(k * (v + c * v * v * v))
            d = half * (one + t) + half * v * (one - t * t) * k * (one + c3 * v * v)
            gin[i] = g[i] * d
    else:
        s = x.dtype.type(_SQRT_HALF)
        p = x.dtype.type(_INV_SQRT_2PI)
        f32 = x.itemsize == 4
        for i in range(x.size):
            v = x[i]
            # d/dx [x Phi(x)] = Phi(x) + x phi(x)
            if f32:
                d = half * (one + erf32(v * s)) + v * p * exp_neg(half * v * v)
            else:
                d = half * (one + math.erf(v * s)) + v * p * math.exp(-half * v * v)
            gin[i] = g[i] * d


__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_backward",
           "gelu_forward", "gelu_backward"]
