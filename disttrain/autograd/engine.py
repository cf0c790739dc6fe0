"""Reverse-mode backpropagation over the tape.

The whole algorithm: collect the nodes reachable from the roots (iterative,
no recursion), visit them in decreasing creation order (a topological order),
call each node's backward with the summed gradients of its outputs, and hand
each input its share. Gradients of intermediate outputs are dropped as soon as
their node has consumed them. A leaf's gradient is final once every edge into
it has been visited; then its hooks run, ``.grad`` is accumulated and its
post-accumulate-grad hooks fire -- in the order leaves become ready, which is
what the distributed layer builds its buckets from. The engine knows nothing
of MPI: it only fires hooks and, at the end, the queued callbacks.
"""
import sys

import numpy as np

_callbacks = None  # list while a backward pass runs, else None


def queue_callback(fn):
    """Run ``fn()`` once when the current backward pass has finished."""
    if _callbacks is None:
        raise RuntimeError("queue_callback() can only be called during a backward pass (from a hook)")
    _callbacks.append(fn)


def in_backward():
    return _callbacks is not None


def backward(roots, grads=None, retain_graph=False):
    """Backpropagate from ``roots`` (Tensors) seeded with ``grads`` (arrays)."""
    global _callbacks
    from .tensor import Tensor  # noqa: F401  (import cycle: tensor imports engine lazily)

    if grads is None:
        grads = [None] * len(roots)
    node_grads = {}      # node -> list of gradient per output (None until one arrives)
    pending = {}         # id(leaf) -> [leaf, edges still to visit, summed gradient]
    nodes = []
    seen = set()
    stack = []
    for root, g in zip(roots, grads):
        if not root.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        g = _seed(root, g)
        node = root._node
        if node is None:
            entry = pending.setdefault(id(root), [root, 0, None])
            entry[2] = g if entry[2] is None else entry[2] + g
            continue
        slot = node_grads.setdefault(node, [None] * len(node.out_meta))
        i = root._out_index
        slot[i] = g if slot[i] is None else slot[i] + g
        if node not in seen:
            seen.add(node)
            stack.append(node)

    while stack:
        node = stack.pop()
        if node.released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({node.fn.__name__}): its saved "
                "arrays were freed by the first backward; pass retain_graph=True to the first call")
        nodes.append(node)
        for inp in node.inputs:
            if inp is None:
                continue
            parent = inp._node
            if parent is None:
                entry = pending.get(id(inp))
                if entry is None:
                    pending[id(inp)] = [inp, 1, None]
                else:
                    entry[1] += 1
            elif parent not in seen:
                seen.add(parent)
                stack.append(parent)
    nodes.sort(key=_seq, reverse=True)

    outer = _callbacks
    _callbacks = []
    try:
        # Leaves that are roots themselves and nothing else feeds.
        for entry in list(pending.values()):
            if entry[1] == 0:
                _finish_leaf(entry)
        for node in nodes:
            out_grads = node_grads.pop(node, None)
            if out_grads is not None:
                in_grads = _call_backward(node, out_grads)
                out_grads = None     # drop our reference: lets a leaf steal the array
            else:
                in_grads = None      # nothing flowed here: still account for its edges
            if not retain_graph:
                node.released = True
                node._saved = ()
            for k, inp in enumerate(node.inputs):
                if inp is None:
                    continue
                g = None
                if in_grads is not None:
                    g = in_grads[k]
                    in_grads[k] = None
                parent = inp._node
                if parent is None:
                    entry = pending[id(inp)]
                    if g is not None:
                        entry[2] = g if entry[2] is None else entry[2] + g
                        g = None
                    entry[1] -= 1
                    if entry[1] == 0:
                        _finish_leaf(entry)
                elif g is not None:
                    slot = node_grads.get(parent)
                    if slot is None:
                        slot = node_grads[parent] = [None] * len(parent.out_meta)
                    i = inp._out_index
                    slot[i] = g if slot[i] is None else slot[i] + g
        callbacks = _callbacks
        # Callbacks may queue further callbacks; run until none are left.
        while callbacks:
            callbacks.pop(0)()
    finally:
        _callbacks = outer


# References to a gradient array inside _finish_leaf: the local name and
# getrefcount's own argument.
_STEALABLE_REFS = 2


def _seq(node):
    return node.seq


def _seed(root, g):
    shape = root.data.shape
    if g is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; backward() on a tensor of "
                f"shape {shape} needs a gradient argument of that shape")
        return np.ones(shape, dtype=root.data.dtype)
    g = np.array(getattr(g, "data", g), dtype=root.data.dtype, copy=True)
    if g.shape != shape:
        raise RuntimeError(f"backward(): gradient shape {g.shape} does not match tensor shape {shape}")
    return g


def _call_backward(node, out_grads):
    if node.pre_hooks:
        for i, hooks in node.pre_hooks.items():
            if out_grads[i] is None:
                continue
            for hook in list(hooks):
                r = hook(_as_tensor(out_grads[i]))
                if r is not None:
                    out_grads[i] = _check_hook_grad(r, out_grads[i], node.fn.__name__)
    if node.fn.materialize_grads:
        for i, g in enumerate(out_grads):
            if g is None:
                shape, dtype = node.out_meta[i]
                out_grads[i] = np.zeros(shape, dtype)
    res = node.fn.backward(node, *out_grads)
    if type(res) is not tuple:
        res = (res,) if not isinstance(res, list) else tuple(res)
    inputs = node.inputs
    if len(res) != len(inputs):
        raise RuntimeError(
            f"{node.fn.__name__}.backward returned {len(res)} gradient{'s' if len(res) != 1 else ''} "
            f"for {len(inputs)} input{'s' if len(inputs) != 1 else ''}")
    checked = list(res)
    for k, (inp, g) in enumerate(zip(inputs, res)):
        if inp is None or g is None:
            checked[k] = None
            continue
        want = inp.data
        if type(g) is not np.ndarray:
            g = np.asarray(getattr(g, "data", g))
        if g.shape != want.shape:
            raise RuntimeError(
                f"gradient shape {g.shape} does not match input shape {want.shape} in "
                f"{node.fn.__name__} (input {k})")
        if g.dtype != want.dtype:
            g = g.astype(want.dtype)
        checked[k] = g
    return checked


def _finish_leaf(entry):
    leaf = entry[0]
    g = entry[2]
    entry[2] = None
    if g is None:
        return
    for hook in list(leaf._hooks or ()):
        r = hook(_as_tensor(g))
        if r is not None:
            g = _check_hook_grad(r, g, "leaf hook")
    if leaf._grad is None:
        # Steal the array when nothing else can see it (the engine dropped
        # its own references; PyTorch's AccumulateGrad does the same). An op's
        # backward may hand one array to several inputs or return a read-only
        # broadcast view: then the leaf gets its own copy.
        if (sys.getrefcount(g) > _STEALABLE_REFS or g.base is not None
                or not g.flags.writeable or not g.flags.c_contiguous):
            g = np.array(g, copy=True, order="C")
        leaf._grad = g
    else:
        np.add(leaf._grad, g, out=leaf._grad)
    if leaf._post_hooks:
        for hook in list(leaf._post_hooks):
            hook(leaf)


def _as_tensor(a):
    from .tensor import Tensor
    return Tensor(a)


def _check_hook_grad(r, g, where):
    r = np.asarray(getattr(r, "data", r))
    if r.shape != g.shape:
        raise RuntimeError(f"hook in {where} returned a gradient of shape {r.shape}, expected {g.shape}")
    return r.astype(g.dtype, copy=False)
