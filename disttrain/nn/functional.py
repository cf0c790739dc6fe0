"""Stateless neural-network functions, PyTorch-style (``import disttrain.nn.functional as F``).

Layouts follow PyTorch: NCHW images, linear weight (out_features, in_features),
conv weight (out_channels, in_channels, kh, kw). Every function takes Tensors
(or numpy arrays) and returns a Tensor; each is one differentiable op of
`disttrain.ops`, whose forward and backward live side by side there.
Where PyTorch users write ``dim=``, it is accepted as an alias of ``axis=``.
"""
from .. import ops as _ops
from ..autograd.tensor import Tensor
from .functional_extra import nll_loss, dropout2d, check_same_float_dtype

__all__ = [
    "relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax", "cross_entropy", "mse_loss", "batch_norm",
    "scaled_dot_product_attention",
    "linear", "conv2d", "max_pool2d", "avg_pool2d", "dropout", "layer_norm", "embedding",
    "concatenate", "cat", "stack", "where", "nll_loss", "dropout2d",
]


def _axis(axis, dim, op):
    if dim is None:
        return axis
    if axis is not None and axis != dim:
        raise TypeError(f"{op}: got both axis={axis} and dim={dim}; pass one of them")
    return dim


# -- activations ---------------------------------------------------------
def relu(input):
    """max(input, 0); the gradient at 0 is 0."""
    return _ops.relu(input)


def gelu(input, approximate="none"):
    """input * Phi(input) (exact, erf form); approximate='tanh' gives the tanh approximation."""
    return _ops.gelu(input, approximate)


def tanh(input):
    return _ops.tanh(input)


def sigmoid(input):
    return _ops.sigmoid(input)


def softmax(input, axis=None, dim=None):
    """exp(x) / sum(exp(x)) along ``axis`` (default -1), computed stably."""
    a = _axis(axis, dim, "softmax")
    return _ops.softmax(input, -1 if a is None else a)


def log_softmax(input, axis=None, dim=None):
    a = _axis(axis, dim, "log_softmax")
    return _ops.log_softmax(input, -1 if a is None else a)


# -- losses --------------------------------------------------------------
def cross_entropy(input, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy of logits ``input`` (N, C) against integer class labels ``target`` (N,),
    or (N, C, d1, ...) against (N, d1, ...) (e.g. tokens: flatten (B, T, V) to (B*T, V) or move V to axis 1).

    ``reduction``: 'mean' (default; over the labels not equal to ``ignore_index``), 'sum' or 'none'
    (per-sample losses, shaped like ``target``); ``label_smoothing`` in [0, 1] as in PyTorch.
    """
    return _ops.cross_entropy(input, target, reduction, ignore_index, label_smoothing)


def mse_loss(input, target, reduction="mean"):
    """mean((input - target) ** 2); target may require grad too."""
    return _ops.mse_loss(input, target, reduction)


# -- layers --------------------------------------------------------------
def linear(input, weight, bias=None):
    """input @ weight.T + bias, weight of shape (out_features, in_features)."""
    check_same_float_dtype("linear", input, weight)
    return _ops.linear(input, weight, bias)


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation of NCHW ``input`` with weight (out_channels, in_channels, kh, kw)."""
    check_same_float_dtype("conv2d", input, weight)
    return _ops.conv2d(input, weight, bias, stride, padding)


def max_pool2d(input, kernel_size, stride=None, padding=0):
    return _ops.max_pool2d(input, kernel_size, stride, padding)


def avg_pool2d(input, kernel_size, stride=None, padding=0):
    return _ops.avg_pool2d(input, kernel_size, stride, padding)


def dropout(input, p=0.5, training=True):
    """Zero elements with probability ``p`` (from `disttrain.random.generator()`), scale the rest by 1/(1-p).

    With ``training=False`` or ``p=0`` the input is returned unchanged.
    """
    out = _ops.dropout(input, p, training)
    return out if isinstance(out, Tensor) else Tensor(out)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` dims, then scale by weight and shift by bias."""
    check_same_float_dtype("layer_norm", input, weight)
    return _ops.layer_norm(input, normalized_shape, weight, bias, eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise each channel (axis 1) of (N, C, ...) by the batch's statistics (training; running
    buffers, when given, are updated in place) or by ``running_mean``/``running_var`` (eval)."""
    return _ops.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(query @ key^T * scale + mask) @ value over (..., seq, dim) (e.g. (batch, heads, seq, dim)).

    ``attn_mask``: boolean (True: attend) or float (added to the scores), broadcast to (..., L, S);
    ``is_causal``: query i attends to keys j <= i; ``dropout_p``: dropout on the attention weights;
    ``scale``: default 1/sqrt(dim).
    """
    return _ops.scaled_dot_product_attention(query, key, value, attn_mask, is_causal, dropout_p, scale)


def embedding(input, weight):
    """Rows of ``weight`` (num_embeddings, dim) at the integer indices ``input``; shape input.shape + (dim,)."""
    return _ops.embedding(input, weight)


# -- joining and selecting -----------------------------------------------
def concatenate(tensors, axis=None, dim=None):
    a = _axis(axis, dim, "concatenate")
    return _ops.concatenate(list(tensors), 0 if a is None else a)


cat = concatenate


def stack(tensors, axis=None, dim=None):
    a = _axis(axis, dim, "stack")
    return _ops.stack(list(tensors), 0 if a is None else a)


def where(condition, input, other):
    """Elementwise ``input`` where ``condition`` is true, else ``other`` (broadcasting; no grad to condition)."""
    return _ops.where(condition, input, other)
