"""`Function`: one differentiable operation, forward next to its backward.

Forward and backward take and return numpy arrays. `Function.apply` unwraps
Tensor arguments, runs `forward` and, when any input requires grad and
recording is on, makes the `Context` the node of the tape: it remembers the
Function, the Tensor inputs, the saved arrays and the outputs' shapes. The
engine later calls `backward(ctx, *grad_outputs)` on it, which must return
one gradient (or None) per forward argument.
"""
import itertools

import numpy as np

from . import grad_mode
from .tensor import Tensor

# Creation order of nodes: a node is always created after the nodes of its
# inputs, so visiting nodes by decreasing sequence number is a topological
# order of the backward pass (and a deterministic one).
_sequence = itertools.count()


class Context:
    """Per-call state of a Function and, when recorded, its node on the tape.

    Users may set any attribute on it (``ctx.axis = axis``).
    """

    __slots__ = (
        "fn", "inputs", "needs_input_grad", "seq", "out_meta",
        "pre_hooks", "released", "_saved", "__dict__",
    )

    def __init__(self, fn, inputs):
        self.fn = fn
        self.inputs = inputs                # Tensor (requiring grad) or None, per forward argument
        self.needs_input_grad = tuple([t is not None for t in inputs])
        self.seq = next(_sequence)
        self.out_meta = None                # ((shape, dtype), ...) per output
        self.pre_hooks = None               # {output index: [hook, ...]} from Tensor.register_hook
        self.released = False
        self._saved = ()

    def save_for_backward(self, *arrays):
        self._saved = arrays

    @property
    def saved_tensors(self):
        if self.released:
            raise RuntimeError(
                f"{self.fn.__name__}: saved arrays were freed after the first backward; "
                "call backward(retain_graph=True) to backpropagate through this graph twice")
        return self._saved

    saved_values = saved_tensors

    def release(self):
        """Free what forward kept for backward (saved arrays and ctx attributes)."""
        self.released = True
        self._saved = ()
        self.__dict__.clear()

    @property
    def name(self):
        return self.fn.__name__


class _NoGradContext:
    """Stand-in ctx when nothing is recorded: saving is a no-op."""

    __slots__ = ("needs_input_grad", "__dict__")

    def __init__(self, n):
        self.needs_input_grad = (False,) * n

    def save_for_backward(self, *arrays):
        pass


class Function:
    """Base class of every differentiable op, built-in or user-defined.

    Subclasses define ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``
    as static methods and are called through ``MyOp.apply(*args)``.
    """

    # Set to False in ops whose forward returns several outputs and whose
    # backward handles None for an output that received no gradient.
    materialize_grads = True

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        # The hot path of every op: one pass over the arguments, no generators.
        raw = list(args)
        inputs = [None] * len(args)
        record = False
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                raw[i] = a.data
                if a.requires_grad:
                    inputs[i] = a
                    record = True
        if record and grad_mode._State.enabled:
            ctx = Context(cls, tuple(inputs))
        else:
            record = False
            ctx = _NoGradContext(len(args))
        out = cls.forward(ctx, *raw)
        if type(out) is tuple:
            outs = tuple(_wrap(o, ctx if record else None, i) for i, o in enumerate(out))
            if record:
                ctx.out_meta = tuple((o.data.shape, o.data.dtype) for o in outs)
            return outs
        t = _wrap(out, ctx if record else None, 0)
        if record:
            ctx.out_meta = ((t.data.shape, t.data.dtype),)
        return t


def _wrap(value, node, index):
    """The output Tensor of ``node`` (None when nothing was recorded)."""
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    t = Tensor.__new__(Tensor)
    t.data = value
    t._grad = None
    t.requires_grad = node is not None
    t._node = node
    t._out_index = index
    t._hooks = None
    t._post_hooks = None
    return t
