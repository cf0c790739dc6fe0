"""Shape ops: reshape, transpose, indexing."""
import numpy as np

from ..autograd.function import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        try:
            return np.reshape(a, shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape tensor of shape {np.shape(a)} "
                             f"({np.size(a)} elements) into shape {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes):
        try:
            out = np.transpose(a, axes)
        except ValueError:
            raise ValueError(f"transpose: axes {axes} do not match tensor of shape {np.shape(a)}") from None
        ctx.axes = axes
        return out

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return np.transpose(g), None
        return np.transpose(g, np.argsort(ctx.axes)), None


def _is_basic(index):
    """True for ints, slices, None and Ellipsis only: such an index never repeats an element."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) for i in items)


def _is_mask(index):
    return isinstance(index, np.ndarray) and index.dtype == np.bool_


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        a = np.asarray(a)
        try:
            out = a[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor of shape {a.shape}, index {index!r})") from None
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return out

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, ctx.dtype)
        if _is_basic(ctx.index) or _is_mask(ctx.index):
            out[ctx.index] = g            # each selected element appears once
        else:
            np.add.at(out, ctx.index, g)  # fancy indices may repeat: accumulate
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
    elif isinstance(index, list):
        index = np.asarray(index)
    return GetItem.apply(a, index)
