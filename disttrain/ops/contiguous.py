"""contiguous: a C-ordered copy when the array is not C-contiguous already (the gradient passes through)."""
import numpy as np

from ..autograd.function import Function


class Contiguous(Function):
    @staticmethod
    def forward(ctx, a):
        return np.ascontiguousarray(a)

    @staticmethod
    def backward(ctx, g):
        return g


def contiguous(a):
    return Contiguous.apply(a)
