"""User-defined ops in JAX (`custom_vjp`) and TensorFlow (`custom_gradient`) style.

Both build an ordinary `Function` under the hood, so user ops and built-in ops
share one mechanism. The user's functions receive and return numpy arrays.
"""
import functools

from .function import Function
from .tensor import Tensor


def _as_grads(grads, n, name):
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    grads = tuple(grads)
    if len(grads) != n:
        raise RuntimeError(f"{name}: the backward rule returned {len(grads)} gradient"
                           f"{'s' if len(grads) != 1 else ''} for {n} input{'s' if n != 1 else ''}")
    return grads


class custom_vjp:
    """``@custom_vjp`` then ``f.defvjp(f_fwd, f_bwd)``.

    ``f_fwd(*args) -> (out, residuals)``; ``f_bwd(residuals, g) -> one gradient per arg``.
    Called on numpy arrays, ``f`` is just ``f``; called with Tensors it is recorded.
    """

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._function = None

    def defvjp(self, fwd, bwd):
        name = self.fun.__name__

        def forward(ctx, *args):
            out, residuals = fwd(*args)
            ctx.residuals = residuals
            ctx.n_args = len(args)
            return out

        def backward(ctx, *grads):
            g = grads[0] if len(grads) == 1 else grads
            return _as_grads(bwd(ctx.residuals, g), ctx.n_args, name)

        self._function = type(name, (Function,), {
            "forward": staticmethod(forward), "backward": staticmethod(backward)})
        return self

    def __call__(self, *args):
        if self._function is None or not any(isinstance(a, Tensor) for a in args):
            return self.fun(*args)
        return self._function.apply(*args)


def custom_gradient(fun):
    """``@custom_gradient``: ``fun(*args)`` returns ``(result, grad_fn)`` and
    ``grad_fn(upstream)`` returns the gradients of the inputs."""
    name = fun.__name__

    def forward(ctx, *args):
        out, grad_fn = fun(*args)
        ctx.grad_fn = grad_fn
        ctx.n_args = len(args)
        return out

    def backward(ctx, *grads):
        g = grads[0] if len(grads) == 1 else grads
        return _as_grads(ctx.grad_fn(g), ctx.n_args, name)

    function = type(name, (Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})

    @functools.wraps(fun)
    def wrapper(*args):
        if not any(isinstance(a, Tensor) for a in args):
            return fun(*args)[0]
        return function.apply(*args)

    wrapper.function = function
    return wrapper
