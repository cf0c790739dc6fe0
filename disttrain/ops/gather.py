"""gather: values picked along one axis by an index array (torch.gather / np.take_along_axis).

The op behind ``max(dim)``/``min(dim)``/``topk`` values and ``nll_loss``: the
gradient goes to exactly the picked elements (accumulating where an index
repeats), as PyTorch's does.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import normalize_axis


class Gather(Function):
    @staticmethod
    def forward(ctx, a, axis, index):
        a = np.asarray(a)
        index = np.asarray(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"gather: index must be an integer array, got dtype {index.dtype}")
        if index.ndim != a.ndim:
            raise ValueError(f"gather: index of shape {index.shape} must have as many dimensions as "
                             f"the input of shape {a.shape}")
        ax = normalize_axis(axis, a.ndim, "gather", a.shape)
        n = a.shape[ax]
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"gather: index out of range for dimension {ax} of size {n} "
                             f"(index values {index.min()}..{index.max()}, input shape {a.shape})")
        ctx.axis, ctx.index, ctx.shape, ctx.dtype = ax, index, a.shape, a.dtype
        return np.take_along_axis(a, index, axis=ax)

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, ctx.dtype)
        idx = np.indices(ctx.index.shape, sparse=True)
        full = list(idx)
        full[ctx.axis] = ctx.index
        np.add.at(out, tuple(full), g)
        return out, None, None


def gather(a, axis, index):
    return Gather.apply(a, axis, index)
