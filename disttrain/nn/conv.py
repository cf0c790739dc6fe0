"""Conv2d and 2-D pooling (NCHW layout, weights (out, in, kh, kw) as in PyTorch)."""

import numpy as np

from . import functional as F
from . import init
from .linear import _check_positive
from .module import Module
from .parameter import Parameter


def _pair(value, name, layer, allow_zero=False):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    low = 0 if allow_zero else 1
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low
                                 for v in pair):
        raise ValueError(f"{layer}: {name} must be an int >= {low} or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, dtype=np.float32):
        super().__init__()
        _check_positive("Conv2d", in_channels=in_channels, out_channels=out_channels)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.padding = _padding(padding, self.kernel_size, self.stride)
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels) + self.kernel_size, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


def _padding(padding, kernel_size, stride):
    """An int/pair, or PyTorch's "valid" (none) and "same" (output size = input size; stride 1, odd kernels)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError(f"Conv2d: padding='same' with an even kernel size {kernel_size} needs uneven padding, "
                             "which disttrain's conv2d does not do; use an odd kernel size or explicit padding")
        return tuple(k // 2 for k in kernel_size)
    return _pair(padding, "padding", "Conv2d", allow_zero=True)


class _Pool2d(Module):
    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", name)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", name)
        self.padding = _pair(padding, "padding", name, allow_zero=True)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, stride=self.stride, padding=self.padding)
