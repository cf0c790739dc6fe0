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
_next_seq = _sequence.__next__
_grad_state = grad_mode._State


class Context:
    """Per-call state of a Function and, when recorded, its node on the tape.

    Users may set any attribute on it (``ctx.axis = axis``).
    """

    __slots__ = (
        "fn", "inputs", "needs_input_grad", "seq", "out_meta",
        "pre_hooks", "released", "_saved", "__dict__",
    )

    def __init__(self, fn, inputs):
        # (Function.apply fills the same fields inline, without this call: keep the two in step)
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
        # The hot path of every op (a few microseconds on small arrays, so every
        # call and attribute store counts): the arguments unwrapped in one pass
        # (unrolled for the one- to three-argument ops: nearly all of them), the
        # Context and the output Tensor filled in here rather than through
        # __init__ calls, nothing allocated for the inputs unless one requires grad.
        n = len(args)
        if n == 2:
            a, b = args
            ta = tb = None
            if isinstance(a, Tensor):
                if a.requires_grad:
                    ta = a
                a = a.data
            if isinstance(b, Tensor):
                if b.requires_grad:
                    tb = b
                b = b.data
            raw = (a, b)
            if ta is None and tb is None:
                inputs = None
            else:
                inputs = (ta, tb)
                needs = (ta is not None, tb is not None)
        elif n == 1:
            (a,) = args
            inputs = None
            if isinstance(a, Tensor):
                if a.requires_grad:
                    inputs = (a,)
                    needs = (True,)
                a = a.data
            raw = (a,)
        elif n == 3:
            a, b, c = args
            ta = tb = tc = None
            if isinstance(a, Tensor):
                if a.requires_grad:
                    ta = a
                a = a.data
            if isinstance(b, Tensor):
                if b.requires_grad:
                    tb = b
                b = b.data
            if isinstance(c, Tensor):
                if c.requires_grad:
                    tc = c
                c = c.data
            raw = (a, b, c)
            if ta is None and tb is None and tc is None:
                inputs = None
            else:
                inputs = (ta, tb, tc)
                needs = (ta is not None, tb is not None, tc is not None)
        else:
            raw = list(args)
            inputs = None
            i = 0
            for a in args:
                if isinstance(a, Tensor):
                    raw[i] = a.data
                    if a.requires_grad:
                        if inputs is None:
                            inputs = [None] * n
                        inputs[i] = a
                i += 1
            if inputs is not None:
                inputs = tuple(inputs)
                needs = tuple([t is not None for t in inputs])
        if inputs is None or not _grad_state.enabled:
            out = cls.forward(_NoGradContext(n), *raw)
            if type(out) is tuple:
                return tuple([_wrap(o, None, i) for i, o in enumerate(out)])
            return _wrap(out, None, 0)
        ctx = _new_context(Context)          # Context.__init__'s fields, inline
        ctx.fn = cls
        ctx.inputs = inputs
        ctx.needs_input_grad = needs
        ctx.seq = _next_seq()
        ctx.out_meta = None
        ctx.pre_hooks = None
        ctx.released = False
        ctx._saved = ()
        out = cls.forward(ctx, *raw)
        if type(out) is tuple:
            outs = tuple([_wrap(o, ctx, i) for i, o in enumerate(out)])
            ctx.out_meta = tuple([(o.data.shape, o.data.dtype) for o in outs])
            return outs
        # _wrap inlined: the single-output case is nearly every op.
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        t = _new_tensor(Tensor)
        t.data = out
        t._grad = None
        t.requires_grad = True
        t._node = ctx
        t._out_index = 0
        t._hooks = None
        t._post_hooks = None
        ctx.out_meta = ((out.shape, out.dtype),)
        return t


def _wrap(value, node, index):
    """The output Tensor of ``node`` (None when nothing was recorded)."""
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    t = _new_tensor(Tensor)
    t.data = value
    t._grad = None
    t.requires_grad = node is not None
    t._node = node
    t._out_index = index
    t._hooks = None
    t._post_hooks = None
    return t


# (object.__new__ bound once: Context and Tensor objects are filled in by apply, not by __init__)
_new_context = _new_tensor = object.__new__
