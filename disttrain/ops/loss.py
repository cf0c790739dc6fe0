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


class CrossEntropy(Function):
    """PyTorch's definition: logits (N, C) with labels (N,), (C,) with a scalar label, or
    (N, C, d1, ...) with labels (N, d1, ...) (the class axis is moved last and flattened).
    Labels equal to ``ignore_index`` add nothing and a mean divides by the other labels' count;
    ``label_smoothing`` e mixes the one-hot target with the uniform one:
    loss = (1 - e) * (lse - x[label]) + e * (lse - mean(x))."""

    @staticmethod
    def forward(ctx, logits, labels, reduction, ignore_index=-100, label_smoothing=0.0):
        _check_reduction(reduction, "cross_entropy")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        moved = None
        if logits.ndim == 1 and labels.ndim == 0:      # one sample: (C,) with a scalar label
            x2, lab = logits.reshape(1, -1), labels.reshape(1)
        elif logits.ndim == 2 and labels.ndim == 1 and labels.shape[0] == logits.shape[0]:
            x2, lab = logits, labels
        elif logits.ndim > 2 and labels.shape == logits.shape[:1] + logits.shape[2:]:
            moved = np.moveaxis(logits, 1, -1)         # (N, d1, ..., C)
            x2, lab = moved.reshape(-1, logits.shape[1]), labels.reshape(-1)
        else:
            raise ValueError(
                f"cross_entropy: expected logits (N, C) with integer labels (N,), or (N, C, d1, ...) with labels "
                f"(N, d1, ...), got logits of shape {logits.shape} and labels of shape {labels.shape}")
        if lab.dtype.kind not in "iu":      # (np.issubdtype costs a microsecond: kind says the same)
            raise TypeError(f"cross_entropy: labels must be integer class indices, got dtype {lab.dtype}")
        dt = kernel_dtype(logits)
        x2 = contiguous(x2, dt)
        lab = contiguous(lab, np.int64)
        n, c = x2.shape
        losses = np.empty(n, np.float64)
        lse = np.empty(n, np.float64)
        keep = None
        kernel = S.cross_entropy_forward if c else None
        # An ignore_index outside [0, C) (the default -100) is a label the kernel reports as out of
        # range: then run it at once and mask only when it stops at such a label (saves the
        # comparison pass over the labels in the usual case of none ignored).
        may_ignore = 0 <= ignore_index < c
        if not may_ignore:
            bad = kernel(x2, lab, losses, lse) if c else (0 if n else -1)
            may_ignore = bad >= 0 and lab[bad] == ignore_index
        if may_ignore:
            ignored = lab == ignore_index
            if ignored.any():    # the kernel sees class 0 there; the row's loss and gradient are zeroed
                keep = ~ignored
                lab = np.where(ignored, 0, lab)
            bad = kernel(x2, lab, losses, lse) if c else (0 if n else -1)
        if bad >= 0:
            raise ValueError(f"cross_entropy: label {int(lab[bad])} (sample {bad}) is out of range "
                             f"for {c} classes (logits of shape {logits.shape})")
        if label_smoothing:
            losses = (1.0 - label_smoothing) * losses + label_smoothing * (lse - x2.mean(axis=1, dtype=np.float64))
        if keep is not None:
            losses[ignored] = 0.0
        ctx.save_for_backward(x2, lab, lse, keep)
        ctx.reduction = reduction
        ctx.shape = logits.shape
        ctx.moved_shape = None if moved is None else moved.shape
        ctx.smoothing = label_smoothing
        count = n if keep is None else int(keep.sum())
        ctx.count = count
        if reduction == "none":
            out = losses.astype(dt, copy=False)
            if logits.ndim == 1:
                return out.reshape(())
            return out.reshape(labels.shape)
        total = np.add.reduce(losses)        # (losses.sum() without its Python wrapper)
        if reduction == "mean":
            total = total / count if count else np.nan
        return np.asarray(total, dtype=dt)

    @staticmethod
    def backward(ctx, g):
        x2, lab, lse, keep = ctx.saved_tensors
        n, c = x2.shape
        if ctx.reduction == "none":
            scale = np.ascontiguousarray(g, dtype=np.float64).reshape(n)
        else:
            v = float(g) / ctx.count if ctx.reduction == "mean" else float(g)
            scale = np.empty(n)            # (np.full, without its Python wrapper)
            scale.fill(v)
        if keep is not None:
            scale = scale * keep
        gin = np.empty_like(x2)
        if gin.size:
            S.cross_entropy_backward(x2, lab, lse, scale, gin)
            e = ctx.smoothing
            if e:     # (softmax - (1 - e) onehot - e / C) * scale
                gin[np.arange(n), lab] += (e * scale).astype(gin.dtype)
                gin -= (e / c * scale).astype(gin.dtype)[:, None]
        if ctx.moved_shape is not None:
            return np.moveaxis(gin.reshape(ctx.moved_shape), -1, 1), None, None, None, None
        return gin.reshape(ctx.shape), None, None, None, None


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


def cross_entropy(logits, labels, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    return CrossEntropy.apply(logits, labels, reduction, int(ignore_index), float(label_smoothing))


def mse_loss(input, target, reduction="mean"):
    return MSELoss.apply(input, target, reduction)
