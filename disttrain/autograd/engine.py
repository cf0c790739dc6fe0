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
import operator
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


def current_pass():
    """A token for the backward pass in progress (None outside one).

    Hooks that keep per-pass state compare it to tell a new pass from the
    current one, even when an earlier pass raised and never finished.
    """
    return _callbacks


def backward(roots, grads=None, retain_graph=False):
    """Backpropagate from ``roots`` (Tensors) seeded with ``grads`` (arrays or None)."""
    global _callbacks
    if grads is None:
        grads = [None] * len(roots)
    node_grads = {}      # node -> [summed gradient or None, per output]
    leaves = {}          # leaf -> [leaf, edges still to visit, summed gradient] (hashed by identity)
    stack = []
    leaf_roots = False
    for k, root in enumerate(roots):
        if not root.requires_grad:
            raise RuntimeError(f"element {k} of tensors does not require grad and does not have a grad_fn")
        g = _seed(root, grads[k])
        node = root._node
        if node is None:
            entry = leaves.setdefault(root, [root, 0, None])
            entry[2] = g if entry[2] is None else entry[2] + g
            leaf_roots = True
            continue
        if node not in node_grads:
            stack.append(node)
        _accumulate(node_grads, node, root._out_index, g)
    g = None   # the seeds now live only in node_grads and leaves

    nodes = _collect(stack, leaves)

    outer = _callbacks
    _callbacks = []
    try:
        if leaf_roots:
            # Leaves that are roots themselves and that nothing else feeds.
            for entry in list(leaves.values()):
                if entry[1] == 0:
                    _finish_leaf(entry)
        for node in nodes:
            out_grads = node_grads.pop(node, None)
            # in_grads is None when nothing flowed here: still account for the edges.
            if out_grads is None:
                in_grads = None
            elif len(out_grads) == 1 and not node.pre_hooks:
                # The common case inline (one output, no hooks): _call_backward without the call.
                res = node.fn.backward(node, out_grads[0])
                out_grads = None     # drop our references: lets a leaf steal the array
                in_grads = list(res) if type(res) is tuple or type(res) is list else [res]
                res = None
                if len(in_grads) != len(node.inputs):
                    _wrong_count(node, in_grads)
            else:
                in_grads = _call_backward(node, out_grads)
                out_grads = None
            inputs = node.inputs
            if not retain_graph:
                # Free what forward saved, then drop the edges too: a held loss tensor must
                # not keep every activation of its graph alive (as PyTorch frees them).
                node.release()
                node.inputs = ()
            k = -1
            for inp in inputs:
                k += 1
                if inp is None:
                    continue
                g = None
                if in_grads is not None:
                    g = in_grads[k]
                    if g is not None:
                        in_grads[k] = None
                        data = inp.data
                        # (dtype identity is the cheap common case; _conform decides otherwise)
                        if type(g) is not np.ndarray or g.shape != data.shape or g.dtype is not data.dtype:
                            g = _conform(g, data, node, k)
                parent = inp._node
                if parent is None:
                    entry = leaves[inp]
                    if g is not None:
                        entry[2] = g if entry[2] is None else entry[2] + g
                        g = None
                    entry[1] -= 1
                    if entry[1] == 0:
                        _finish_leaf(entry)
                elif g is not None:
                    # (_accumulate inline, this loop being the hot path; slot and g cleared at once so
                    # that no local of this function keeps a gradient list alive after its node has
                    # consumed it)
                    slot = node_grads.get(parent)
                    if slot is None:
                        slot = node_grads[parent] = [None] * len(parent.out_meta)
                    i = inp._out_index
                    slot[i] = g if slot[i] is None else slot[i] + g
                    g = slot = None
            inputs = in_grads = None
        callbacks = _callbacks
        # Callbacks may queue further callbacks; run until none are left.
        while callbacks:
            callbacks.pop(0)()
    finally:
        _callbacks = outer


_seq = operator.attrgetter("seq")


def _collect(stack, leaves):
    """The nodes reachable from ``stack`` in backward order; counts the edges into each leaf."""
    nodes = []
    seen = set(stack)
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
                entry = leaves.get(inp)
                if entry is None:
                    leaves[inp] = [inp, 1, None]
                else:
                    entry[1] += 1
            elif parent not in seen:
                seen.add(parent)
                stack.append(parent)
    # Decreasing creation order is a topological order (a node is made after its inputs').
    if len(nodes) > 1:
        nodes.sort(key=_seq, reverse=True)
    return nodes


def _accumulate(node_grads, node, i, g):
    # (A function, not inline: no local variable of backward() may keep a
    # gradient list alive after its node has consumed it.)
    slot = node_grads.get(node)
    if slot is None:
        slot = node_grads[node] = [None] * len(node.out_meta)
    slot[i] = g if slot[i] is None else slot[i] + g


def _refs_held_by_one_local():
    a = np.empty(1)
    return sys.getrefcount(a)


# What sys.getrefcount reports for an array that only one local variable
# holds (measured rather than assumed: interpreters differ in how they count
# the argument itself). _finish_leaf steals a gradient only at this count.
_STEALABLE_REFS = _refs_held_by_one_local()


_SEED_ONES = {}      # (shape, dtype) -> a one-element array of ones; seeds are copies of it


def _ones_like_scalar(data):
    """A fresh writeable array of ones shaped like the one-element ``data`` (a copy of a cached
    template: half the cost of np.empty + fill)."""
    key = (data.shape, data.dtype)
    one = _SEED_ONES.get(key)
    if one is None:
        one = _SEED_ONES[key] = np.ones(data.shape, data.dtype)
    return one.copy()


def _seed(root, g):
    data = root.data
    if g is None:
        if data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs; backward() on a tensor of "
                f"shape {data.shape} needs a gradient argument of that shape")
        return _ones_like_scalar(data)
    g = np.array(getattr(g, "data", g), dtype=data.dtype, copy=True)
    if g.shape != data.shape:
        raise RuntimeError(f"backward(): gradient shape {g.shape} does not match tensor shape {data.shape}")
    return g


def _call_backward(node, out_grads):
    """Run the node's hooks and backward; a list with one gradient (or None) per input."""
    if node.pre_hooks:
        for i, hooks in node.pre_hooks.items():
            if out_grads[i] is None:
                continue
            for hook in list(hooks):
                r = hook(_as_tensor(out_grads[i]))
                if r is not None:
                    out_grads[i] = _check_hook_grad(r, out_grads[i], node.fn.__name__)
    # (A single output always has its gradient: the slot is made when it arrives.)
    if len(out_grads) > 1 and node.fn.materialize_grads:
        for i, g in enumerate(out_grads):
            if g is None:
                shape, dtype = node.out_meta[i]
                out_grads[i] = np.zeros(shape, dtype)
    res = node.fn.backward(node, *out_grads)
    if type(res) is tuple or type(res) is list:
        res = list(res)
    else:
        res = [res]
    if len(res) != len(node.inputs):
        _wrong_count(node, res)
    return res


def _wrong_count(node, res):
    n = len(node.inputs)
    raise RuntimeError(
        f"{node.fn.__name__}.backward returned {len(res)} gradient{'s' if len(res) != 1 else ''} "
        f"for {n} input{'s' if n != 1 else ''}")


def _conform(g, want, node, k):
    """Check a gradient returned by a backward against its input; cast its dtype."""
    if type(g) is not np.ndarray:
        g = np.asarray(getattr(g, "data", g))
    if g.shape != want.shape:
        raise RuntimeError(
            f"gradient shape {g.shape} does not match input shape {want.shape} in "
            f"{node.fn.__name__} (input {k})")
    return g.astype(want.dtype, copy=False)


def _finish_leaf(entry):
    leaf = entry[0]
    g = entry[2]
    entry[2] = None
    if g is None:
        return
    if leaf._hooks:
        for hook in list(leaf._hooks):
            r = hook(_as_tensor(g))
            if r is not None:
                g = _check_hook_grad(r, g, "leaf hook")
    if leaf._grad is None:
        # Steal the array when nothing else can see it (the engine dropped
        # its own references; PyTorch's AccumulateGrad does the same). An op's
        # backward may hand one array to several inputs, a hook may keep it,
        # or it may be a read-only broadcast view: then the leaf gets its own copy.
        # (getrefcount first: a flags object holds a reference to its array.)
        if (sys.getrefcount(g) > _STEALABLE_REFS or g.base is not None
                or not (g.flags.writeable and g.flags.c_contiguous)):
            g = np.array(g, copy=True, order="C")
        leaf._grad = g
    else:
        acc = leaf._grad
        np.add(acc, g, acc)          # (out positional: the keyword costs a parse per call)
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
