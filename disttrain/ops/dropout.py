"""dropout: zero each element with probability p and scale the rest by 1/(1-p)."""
import numpy as np

from ..autograd.function import Function
from .. import random as _random


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p):
        x = np.asarray(x)
        dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
        if p == 1:
            mask = np.zeros(x.shape, dt)
        else:
            # Drawn from disttrain's seedable generator, in the input's precision.
            draw_dt = dt if dt in (np.float32, np.float64) else np.float64
            keep = _random.generator().random(x.shape, dtype=draw_dt) >= p
            mask = keep.astype(dt) * dt.type(1 / (1 - p))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


def dropout(x, p=0.5, training=True):
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    return Dropout.apply(x, p)
