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
