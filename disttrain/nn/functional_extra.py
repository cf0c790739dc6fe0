"""nll_loss, dropout2d and the input-dtype check of the layers (part of ``disttrain.nn.functional``)."""
import numpy as np

from .. import ops as _ops
from .. import random as _random
from ..autograd.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def check_same_float_dtype(op, input, weight):
    """PyTorch refuses a float64 input to a float32 layer (and vice versa); so do we, instead of
    silently computing in the wider type."""
    a = getattr(input, "dtype", None)
    b = getattr(weight, "dtype", None)
    if a is b or a is None or b is None:      # (numpy's dtype objects: the same one per builtin type)
        return
    a, b = np.dtype(a), np.dtype(b)
    if a != b and a.kind == "f" and b.kind == "f":
        raise TypeError(f"{op}: input is {a} but the weight is {b}; mixed float dtypes are not promoted "
                        f"(as in PyTorch): cast the input with .to({b}) / .float(), or the model with "
                        f".to({a}) / .double()")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` (N, C) at integer ``target`` (N,).

    ``weight`` (C,) rescales each class; targets equal to ``ignore_index`` contribute nothing;
    'mean' divides by the summed weights of the counted targets, as PyTorch does.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"nll_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    x = input if isinstance(input, Tensor) else Tensor(input)
    t = np.asarray(getattr(target, "data", target))
    if x.ndim != 2 or t.shape != x.shape[:1]:
        raise ValueError(f"nll_loss: expected input (N, C) and target (N,), got {x.shape} and {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {t.dtype}")
    n_classes = x.shape[1]
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= n_classes))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"nll_loss: target {int(t[k])} (sample {k}) is out of range for {n_classes} classes "
                         f"(input of shape {x.shape})")
    safe = np.where(keep, t, 0)
    w = np.ones(n_classes, x.dtype) if weight is None else np.asarray(getattr(weight, "data", weight), x.dtype)
    per = w[safe] * keep
    picked = _ops.gather(x, 1, safe[:, None]).reshape(-1)
    # where(), not a product with 0: an ignored row's picked value may be -inf.
    picked = _ops.where(keep, picked, np.zeros((), x.dtype))
    losses = -(picked * per.astype(x.dtype))
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / x.dtype.type(per.sum())


def dropout2d(input, p=0.5, training=True):
    """Zero whole channels (dim 1 of (N, C, H, W) or of (C, H, W)) with probability ``p``; scale the rest."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout2d: probability p must be in [0, 1], got {p}")
    x = input if isinstance(input, Tensor) else Tensor(input)
    if not training or p == 0:
        return x
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected a 3-D or 4-D input, got shape {x.shape}")
    shape = x.shape[:-2] + (1, 1)
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    keep = _random.generator().random(shape) >= p
    mask = keep.astype(dt) * (dt.type(0) if p == 1 else dt.type(1 / (1 - p)))
    return x * mask
