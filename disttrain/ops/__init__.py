"""Differentiable operations, one family per module.

Each op is a `Function` (forward next to backward) plus a small function that
applies it; `Tensor` methods and `disttrain.nn.functional` call these. Hot
loops live in Numba kernels (disttrain/kernels), which know nothing of autograd.
"""
from .arithmetic import add, sub, mul, div, pow, neg, abs, cast
from .elementwise import exp, log, sqrt, tanh, sigmoid
from .activation import relu, gelu, softmax, log_softmax, masked_softmax
from .reduction import sum, mean, max, min
from .shape import reshape, transpose, getitem
from .matmul import matmul
from .linear import linear
from .conv import conv2d
from .pooling import max_pool2d, avg_pool2d
from .normalization import layer_norm
from .batch_norm import batch_norm
from .attention import scaled_dot_product_attention
from .embedding import embedding
from .loss import cross_entropy, mse_loss
from .join import concatenate, stack
from .select import where
from .dropout import dropout
from .gather import gather
from .broadcast import expand, repeat
from .clamp import clamp
from .contiguous import contiguous
