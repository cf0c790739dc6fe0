"""Helpers over Modules."""
from contextlib import contextmanager

import numpy as np


@contextmanager
def swapped_parameters(module, params):
    """Temporarily use ``params`` (dotted name -> Tensor) in place of the module's own.

    Lets `gradcheck` differentiate through a layer with respect to its
    weights: ``gradcheck(lambda x, w: call_with(layer, {"weight": w}, x), ...)``.
    """
    saved = []
    try:
        for name, value in params.items():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            if leaf not in owner._parameters:
                raise KeyError(f"{type(module).__name__} has no parameter {name!r}")
            saved.append((owner, leaf, owner._parameters[leaf]))
            owner._parameters[leaf] = value
        yield module
    finally:
        for owner, leaf, old in reversed(saved):
            owner._parameters[leaf] = old


def functional_call(module, params, *args, **kwargs):
    """``module(*args)`` computed with ``params`` (dotted name -> Tensor) instead of its own."""
    with swapped_parameters(module, params):
        return module(*args, **kwargs)


def parameters_to_vector(parameters):
    return np.concatenate([np.ravel(p.data) for p in parameters])


def num_parameters(module):
    return sum(p.data.size for p in module.parameters())


def _grads(parameters):
    """The gradient arrays (in place, never copies) of the parameters that have one."""
    if hasattr(parameters, "data") and not isinstance(parameters, (list, tuple)):
        parameters = [parameters]
    return [p._grad for p in parameters if getattr(p, "_grad", None) is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients in place so that their joint ``norm_type``-norm is at most ``max_norm``
    (PyTorch's definition: the norm of the per-parameter norms; scale max_norm / (norm + 1e-6),
    applied only when below 1). Returns the total norm before clipping as a 0-d Tensor.

    Under DDP call it after ``backward()``: the gradients are the averaged ones, the same on every
    rank, so every rank computes the same norm and scale.
    """
    from ..autograd.tensor import Tensor
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return Tensor(np.array(0.0, np.float32))
    if norm_type == np.inf:
        norms = [np.max(np.abs(g)) if g.size else 0.0 for g in grads]
        total = float(np.max(norms))
    else:
        norms = [np.linalg.norm(g.ravel().astype(np.float64, copy=False), norm_type) for g in grads]
        total = float(np.linalg.norm(np.asarray(norms), norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
                           "set error_if_nonfinite=False to clip anyway")
    coef = float(max_norm) / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            np.multiply(g, g.dtype.type(coef), out=g)
    return Tensor(np.array(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    c = float(clip_value)
    for g in _grads(parameters):
        np.clip(g, -c, c, out=g)
