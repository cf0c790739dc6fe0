"""Differentiable operations, one family per module.

Each op is a `Function` (forward next to backward) plus a small function that
applies it; `Tensor` methods and `disttrain.nn.functional` call these.
"""
from .arithmetic import add, sub, mul, div, pow, neg, abs, cast
from .elementwise import exp, log, sqrt, tanh, sigmoid, relu
from .reduction import sum, mean, max, min
from .shape import reshape, transpose, getitem
from .matmul import matmul
