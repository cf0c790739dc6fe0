"""Embedding backward: scatter-add rows of the output gradient into the table gradient."""
from ._jit import kernel


@kernel
def embedding_backward(indices, g, gw):
    """gw[indices[k]] += g[k] for every k (repeated indices accumulate); gw zeroed by the caller.

    indices: 1-D int64; g: (len(indices), dim); gw: (num_embeddings, dim).
    """
    d = g.shape[1]
    for k in range(indices.size):
        row = indices[k]
        for j in range(d):
            gw[row, j] += g[k, j]
