"""scaled_dot_product_attention over (..., queries, dim) with PyTorch's definition:

    scores = q @ k^T * scale (scale = 1/sqrt(dim) unless given) + mask
    out = dropout(softmax(scores, axis=-1), p) @ v

``attn_mask`` is boolean (True: the key takes part) or a float mask added to the scores;
``is_causal`` lets query i see keys j <= i. One op: forward keeps the probabilities (and
the dropout mask), backward is the softmax VJP between two batched matrix products. The
causal case runs one fused Numba kernel (scale, mask and softmax in one pass over the
scores); the batched matrix products are BLAS calls through numpy's matmul.
"""
import numpy as np

from ..autograd.function import Function
from .. import random as _random
from ._arrays import contiguous, kernel_dtype, lazy_kernels
from ._util import unbroadcast

A = lazy_kernels("attention")
S = lazy_kernels("softmax")


def _swap(a):
    return np.swapaxes(a, -1, -2)


class ScaledDotProductAttention(Function):
    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal, dropout_p, scale):
        q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
        if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: q, k, v need shape (..., seq, dim), got {q.shape}, "
                             f"{k.shape}, {v.shape}")
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                             "(q and k need the same last dim, k and v the same number of keys)")
        if is_causal and attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1), got {dropout_p!r}")
        dt = kernel_dtype(q)
        scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale)
        try:
            scores = np.matmul(q, _swap(k))
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: batch dims of q {q.shape} and k {k.shape} do not "
                             "broadcast") from None
        lq, lk = scores.shape[-2:]
        ctx.mask_shape = None
        if is_causal:
            rows = contiguous(scores, dt).reshape(-1, lk)
            p = np.empty_like(rows)
            if rows.size:
                A.causal_softmax_forward(rows, scale, lq, p)
        else:
            x = scores * dt.type(scale)
            if attn_mask is not None:
                mask = np.asarray(attn_mask)
                if mask.dtype == np.bool_:
                    x = np.where(mask, x, dt.type(-np.inf))
                else:
                    x = x + mask.astype(dt, copy=False)
                    ctx.mask_shape = mask.shape
                if x.shape != scores.shape:
                    raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} changes the "
                                     f"scores' shape {scores.shape}")
            rows = contiguous(x, dt).reshape(-1, lk)
            p = np.empty_like(rows)
            if rows.size:
                S.softmax_forward(rows, p)     # a fully masked row gives NaN, as in PyTorch
        p = p.reshape(scores.shape)
        drop = None
        if dropout_p > 0:
            keep = _random.generator().random(p.shape, dtype=dt) >= dropout_p
            drop = keep.astype(dt) * dt.type(1 / (1 - dropout_p))
        pd = p if drop is None else p * drop
        try:
            out = np.matmul(pd, v)
        except ValueError:
            raise ValueError(f"scaled_dot_product_attention: batch dims of the scores {scores.shape} and v "
                             f"{v.shape} do not broadcast") from None
        ctx.save_for_backward(q, k, v, p, drop)
        ctx.scale = scale
        return out.astype(dt, copy=False)

    @staticmethod
    def backward(ctx, g):
        q, k, v, p, drop = ctx.saved_tensors
        nq, nk, nv, nm = ctx.needs_input_grad[:4]
        pd = p if drop is None else p * drop
        gv = unbroadcast(np.matmul(_swap(pd), g), v.shape) if nv else None
        gp = np.matmul(g, _swap(v))
        if drop is not None:
            gp = gp * drop
        lk = p.shape[-1]
        y = contiguous(p, p.dtype).reshape(-1, lk)
        gs = np.empty_like(y)
        if y.size:
            S.softmax_backward(contiguous(gp, p.dtype).reshape(-1, lk), y, gs)
        gs = gs.reshape(p.shape)                  # d loss / d (scaled, masked scores)
        gmask = unbroadcast(gs, ctx.mask_shape) if (nm and ctx.mask_shape is not None) else None
        gs = gs * p.dtype.type(ctx.scale)         # d loss / d (q @ k^T)
        gq = unbroadcast(np.matmul(gs, k), q.shape) if nq else None
        gk = unbroadcast(np.matmul(_swap(gs), q), k.shape) if nk else None
        return gq, gk, gv, gmask, None, None, None


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, scale=None):
    return ScaledDotProductAttention.apply(q, k, v, attn_mask, bool(is_causal), float(dropout_p), scale)
