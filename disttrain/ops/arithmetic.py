"""Binary and unary arithmetic: + - * / ** and negation, with broadcasting."""
import numpy as np

from ..autograd.function import Function
from ._util import unbroadcast, shape_of


# Backward functions take input shapes from ctx.inputs: exactly the inputs
# that need a gradient are Tensors there (the others are None).

def _broadcast_error(op, a, b):
    return ValueError(f"{op}: operands of shapes {shape_of(a)} and {shape_of(b)} cannot be broadcast together")


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        try:
            return a + b
        except ValueError:
            raise _broadcast_error("Add", a, b) from None

    @staticmethod
    def backward(ctx, g):
        ta, tb = ctx.inputs
        ga = gb = None
        # (shape checks inline: without broadcasting, unbroadcast would return g itself)
        if ta is not None:
            ga = g if g.shape == ta.data.shape else unbroadcast(g, ta.data.shape)
        if tb is not None:
            gb = g if g.shape == tb.data.shape else unbroadcast(g, tb.data.shape)
        return ga, gb


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        try:
            return a - b
        except ValueError:
            raise _broadcast_error("Sub", a, b) from None

    @staticmethod
    def backward(ctx, g):
        ta, tb = ctx.inputs
        return (None if ta is None else unbroadcast(g, ta.data.shape),
                None if tb is None else unbroadcast(-g, tb.data.shape))


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return a * b
        except ValueError:
            raise _broadcast_error("Mul", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ta, tb = ctx.inputs
        ga = gb = None
        if ta is not None:
            ga = g * b
            if ga.shape != ta.data.shape:
                ga = unbroadcast(ga, ta.data.shape)
        if tb is not None:
            gb = g * a
            if gb.shape != tb.data.shape:
                gb = unbroadcast(gb, tb.data.shape)
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return a / b
        except ValueError:
            raise _broadcast_error("Div", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ta, tb = ctx.inputs
        gb = g / b
        return (None if ta is None else unbroadcast(gb, ta.data.shape),
                None if tb is None else unbroadcast(-gb * a / b, tb.data.shape))


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        try:
            out = a ** b
        except ValueError:
            raise _broadcast_error("Pow", a, b) from None
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            # b * a^(b-1); 0 where b == 0 (a^0 is constant), which a^(b-1)
            # alone would turn into 0 * inf = nan at a == 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                ga = np.where(b == 0, 0, g * b * a ** (b - 1)).astype(g.dtype, copy=False)
            ga = unbroadcast(ga, shape_of(a))
        if nb:
            # d(a^b)/db = a^b log a; defined as 0 where a == 0 (the limit for b > 0).
            with np.errstate(divide="ignore", invalid="ignore"):
                loga = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
            gb = unbroadcast(g * out * loga, shape_of(b))
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * np.sign(a)


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype), None


def add(a, b):
    return Add.apply(a, b)


def sub(a, b):
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def div(a, b):
    return Div.apply(a, b)


def pow(a, b):
    return Pow.apply(a, b)


def neg(a):
    return Neg.apply(a)


def abs(a):
    return Abs.apply(a)


def cast(a, dtype):
    return Cast.apply(a, dtype)
