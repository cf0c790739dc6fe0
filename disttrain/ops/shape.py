"""Shape ops: reshape, transpose, indexing."""
import numpy as np

from ..autograd.function import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape tensor of shape {a.shape} "
                             f"({a.size} elements) into shape {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return np.transpose(g), None
        return np.transpose(g, np.argsort(ctx.axes)), None


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, ctx.dtype)
        # add.at accumulates repeated indices (fancy indexing may repeat).
        np.add.at(out, ctx.index, g)
        return out, None


def reshape(a, shape):
    return Reshape.apply(a, shape)


def transpose(a, axes=None):
    return Transpose.apply(a, axes)


def getitem(a, index):
    if hasattr(index, "data") and not isinstance(index, (np.ndarray, tuple)):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(getattr(i, "data", i) for i in index)
    return GetItem.apply(a, index)
