"""`autograd.grad(outputs, inputs)`: gradients returned instead of accumulated into ``.grad``.

It runs the same engine as ``backward()``, with every leaf of the graph set aside
first (its ``.grad`` and its post-accumulate hooks, which e.g. DDP uses), so
nothing outside the returned tuple changes.
"""
import numpy as np

from . import engine as _engine
from .tensor import Tensor


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """d(sum of outputs * grad_outputs) / d(each input), as a tuple of Tensors (None for an unused input
    when ``allow_unused``)."""
    if create_graph:
        raise NotImplementedError("autograd.grad(create_graph=True): disttrain has no higher-order gradients")
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"autograd.grad: input {k} does not require grad")
    leaves = _leaves(outputs)
    saved = [(leaf, leaf._grad, leaf._post_hooks) for leaf in leaves]
    captured = {}
    handles = []
    for k, t in enumerate(inputs):
        if t._node is not None:
            def keep(g, _k=k):
                captured[_k] = np.array(g.data, copy=True)
            handles.append(t.register_hook(keep))
    try:
        for leaf in leaves:
            leaf._grad = None
            leaf._post_hooks = None
        _engine.backward(outputs, grad_outputs, bool(retain_graph))
        result = []
        for k, t in enumerate(inputs):
            g = t._grad if t._node is None else captured.get(k)
            if g is None and not allow_unused:
                raise RuntimeError(f"autograd.grad: input {k} (shape {t.shape}) was not used to compute the "
                                   "outputs; pass allow_unused=True to get None for it")
            result.append(None if g is None else Tensor(g))
    finally:
        for h in handles:
            h.remove()
        for leaf, g, hooks in saved:
            leaf._grad = g
            leaf._post_hooks = hooks
    return tuple(result)


def _leaves(outputs):
    found, seen, stack = {}, set(), [o for o in outputs]
    while stack:
        t = stack.pop()
        node = t._node
        if node is None:
            found[id(t)] = t
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(i for i in node.inputs if i is not None)
    return list(found.values())
