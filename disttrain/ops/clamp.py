"""clamp: limit values to [min, max]; the gradient passes where the value was inside the range."""
import numpy as np

from ..autograd.function import Function


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, low, high):
        if low is None and high is None:
            raise ValueError("clamp: at least one of min and max must be given")
        out = np.clip(a, low, high)
        if np.ndim(out) == 0 or out.dtype != np.asarray(a).dtype:
            out = np.asarray(out, dtype=np.asarray(a).dtype)
        keep = np.ones(np.shape(a), bool)
        if low is not None:
            keep &= a >= low
        if high is not None:
            keep &= a <= high
        ctx.save_for_backward(keep)
        return out

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return np.where(keep, g, np.zeros((), g.dtype)), None, None


def clamp(a, low=None, high=None):
    return Clamp.apply(a, low, high)
