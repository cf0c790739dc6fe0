"""embedding: rows of a (num_embeddings, dim) table picked by integer indices."""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, lazy_kernels

K = lazy_kernels("embedding")


class Embedding(Function):
    @staticmethod
    def forward(ctx, indices, weight):
        idx = np.asarray(indices)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
        if weight.ndim != 2:
            raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got shape {weight.shape}")
        v = weight.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= v):
            bad = idx.min() if idx.min() < 0 else idx.max()
            raise ValueError(f"embedding: index {int(bad)} is out of range for {v} embeddings "
                             f"(weight shape {weight.shape})")
        flat_idx = contiguous(idx, np.int64).reshape(-1)
        ctx.save_for_backward(flat_idx)
        ctx.weight_shape = weight.shape
        return np.take(weight, flat_idx, axis=0).reshape(idx.shape + (weight.shape[1],))

    @staticmethod
    def backward(ctx, g):
        (flat_idx,) = ctx.saved_tensors
        v, d = ctx.weight_shape
        dt = kernel_dtype(g)
        gw = np.zeros((v, d), dt)
        K.embedding_backward(flat_idx, contiguous(g, dt).reshape(-1, d), gw)
        return None, gw


def embedding(indices, weight):
    return Embedding.apply(indices, weight)
