"""Losses: cross_entropy (fused log-softmax + NLL) and mse_loss.

cross_entropy never materialises the softmax in forward: the kernel keeps
each row's log-sum-exp (N floats), and backward writes
(softmax - onehot) * scale in one pass from the logits and that.
"""
import numpy as np

from ..autograd.function import Function
from ._arrays import contiguous, kernel_dtype, lazy_kernels

S = lazy_kernels("softmax")
from ._util import unbroadcast, shape_of

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, op):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(losses, reduction, dtype):
    if reduction == "none":
        return losses.astype(dtype, copy=False)
    total = losses.sum()
    if reduction == "mean":
        total = total / losses.size if losses.size else np.nan
    return np.asarray(total, dtype=dtype)


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, logits, labels, reduction):
        _check_reduction(reduction, "cross_entropy")
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        if logits.ndim == 1 and labels.ndim == 0:      # one sample: (C,) with a scalar label
            x2, lab = logits.reshape(1, -1), labels.reshape(1)
        elif logits.ndim == 2 and labels.ndim == 1 and labels.shape[0] == logits.shape[0]:
            x2, lab = logits, labels
        else:
            raise ValueError(
                f"cross_entropy: expected logits (N, C) with integer labels (N,), got logits of shape "
                f"{logits.shape} and labels of shape {labels.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise TypeError(f"cross_entropy: labels must be integer class indices, got dtype {lab.dtype}")
        dt = kernel_dtype(logits)
        x2 = contiguous(x2, dt)
        lab = contiguous(lab, np.int64)
        n, c = x2.shape
        losses = np.empty(n, np.float64)
        lse = np.empty(n, np.float64)
        bad = S.cross_entropy_forward(x2, lab, losses, lse) if c else (0 if n else -1)
        if bad >= 0:
            raise ValueError(f"cross_entropy: label {int(lab[bad])} (sample {bad}) is out of range "
                             f"for {c} classes (logits of shape {logits.shape})")
        ctx.save_for_backward(x2, lab, lse)
        ctx.reduction = reduction
        ctx.shape = logits.shape
        out = _reduce(losses, reduction, dt)
        return out.reshape(()) if (reduction == "none" and logits.ndim == 1) else out

    @staticmethod
    def backward(ctx, g):
        x2, lab, lse = ctx.saved_tensors
        n = x2.shape[0]
        if ctx.reduction == "none":
            scale = np.ascontiguousarray(g, dtype=np.float64).reshape(n)
        else:
            v = float(g) / n if ctx.reduction == "mean" else float(g)
            scale = np.full(n, v)
        gin = np.empty_like(x2)
        if gin.size:
            S.cross_entropy_backward(x2, lab, lse, scale, gin)
        return gin.reshape(ctx.shape), None, None


class MSELoss(Function):
    @staticmethod
    def forward(ctx, a, b, reduction):
        _check_reduction(reduction, "mse_loss")
        sa, sb = shape_of(a), shape_of(b)
        try:
            diff = np.subtract(a, b)
        except ValueError:
            raise ValueError(f"mse_loss: input shape {sa} and target shape {sb} do not broadcast") from None
        ctx.save_for_backward(diff)
        ctx.shapes = (sa, sb)
        ctx.reduction = reduction
        sq = np.square(diff)
        if reduction == "none":
            return sq
        return sq.mean() if reduction == "mean" else sq.sum()

    @staticmethod
    def backward(ctx, g):
        (diff,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        scale = 2 / diff.size if ctx.reduction == "mean" else 2
        ga = diff * (g * scale)            # g is 0-d for mean/sum: this keeps diff's dtype
        na, nb = ctx.needs_input_grad[:2]
        return (unbroadcast(ga, sa) if na else None,
                unbroadcast(-ga, sb) if nb else None, None)


def cross_entropy(logits, labels, reduction="mean"):
    return CrossEntropy.apply(logits, labels, reduction)


def mse_loss(input, target, reduction="mean"):
    return MSELoss.apply(input, target, reduction)
