"""In-place initialisers matching torch.nn.init, drawing from disttrain's seedable generator.

Samples are drawn in float64 and cast to the tensor's dtype, so one seed gives
the same values (up to rounding) whatever the parameter dtype.
"""
import math

import numpy as np

from .. import random as _random


def _target(tensor):
    return tensor.data if hasattr(tensor, "data") and not isinstance(tensor, np.ndarray) else tensor


def _fill(tensor, values):
    arr = _target(tensor)
    arr[...] = values.astype(arr.dtype, copy=False)
    return tensor


def _rng(generator):
    return _random.generator() if generator is None else generator


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) as torch computes them: dims 1 and 0 times the receptive field."""
    shape = _target(tensor).shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a tensor of at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    return _fill(tensor, _rng(generator).uniform(a, b, size=_target(tensor).shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    return _fill(tensor, _rng(generator).normal(mean, std, size=_target(tensor).shape))


def constant_(tensor, value):
    _target(tensor)[...] = value
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan); torch's default Linear/Conv init uses a=sqrt(5)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        return tensor
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def default_weight_and_bias_(weight, bias=None):
    """PyTorch's default for Linear and Conv layers: kaiming_uniform(a=sqrt(5)) for the
    weight (= U(+-1/sqrt(fan_in))) and U(+-1/sqrt(fan_in)) for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in)
        uniform_(bias, -bound, bound)
