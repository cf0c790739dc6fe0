"""User-defined ops in the three styles of the issue (PyTorch, JAX, TensorFlow)."""
import numpy as np
import pytest

import disttrain as dt


# --- the seed's three examples, only the import changed ----------------------
class Mul(dt.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.saved_tensors
        return grad_out * b, grad_out * a


@dt.custom_vjp
def mul_vjp(a, b):
    return a * b


def mul_fwd(a, b):
    return a * b, (a, b)


def mul_bwd(residuals, g):
    a, b = residuals
    return g * b, g * a


mul_vjp.defvjp(mul_fwd, mul_bwd)


@dt.custom_gradient
def mul_tf(a, b):
    def grad_fn(upstream):
        return upstream * b, upstream * a
    return a * b, grad_fn
# ------------------------------------------------------------------------------


def _grads(f, a, b):
    ta, tb = dt.tensor(a, requires_grad=True), dt.tensor(b, requires_grad=True)
    out = f(ta, tb)
    (out * out).sum().backward()
    return out.data, np.asarray(ta.grad), np.asarray(tb.grad)


def test_three_styles_agree_with_builtin_mul():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    want = _grads(lambda x, y: x * y, a, b)
    for f in (Mul.apply, mul_vjp, mul_tf):
        got = _grads(f, a, b)
        for u, v in zip(got, want):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_allclose(want[1], 2 * a * b * b)


def test_three_styles_pass_gradcheck():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(4), rng.standard_normal(4)
    for f in (Mul.apply, mul_vjp, mul_tf):
        assert dt.autograd.gradcheck(f, (a, b))


def test_styles_on_plain_arrays_just_compute():
    a, b = np.array([2.0]), np.array([3.0])
    assert mul_vjp(a, b)[0] == 6.0 and mul_tf(a, b)[0] == 6.0


def test_custom_op_output_records_its_name():
    ta = dt.tensor(np.ones(2), requires_grad=True)
    assert ta.grad_fn is None
    assert mul_vjp(ta, ta).grad_fn.name == "mul_vjp"
    assert mul_tf(ta, ta).grad_fn.name == "mul_tf"
    assert Mul.apply(ta, ta).grad_fn.name == "Mul"


def test_needs_input_grad_none_gradient_and_non_tensor_args():
    seen = {}

    class Scale(dt.autograd.Function):
        @staticmethod
        def forward(ctx, x, y, factor, mode="plain"):
            seen["forward_args"] = (type(factor), mode)
            ctx.factor = factor
            ctx.save_for_backward(y)
            return x * y * factor

        @staticmethod
        def backward(ctx, g):
            seen["needs"] = ctx.needs_input_grad
            (y,) = ctx.saved_tensors
            gx = g * y * ctx.factor if ctx.needs_input_grad[0] else None
            return gx, None, None, None

    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = dt.tensor(np.array([3.0, 4.0]))           # no grad wanted
    out = Scale.apply(x, y, 0.5, "fast")
    out.sum().backward()
    assert seen["forward_args"] == (float, "fast")
    assert seen["needs"] == (True, False, False, False)
    np.testing.assert_allclose(np.asarray(x.grad), [1.5, 2.0])
    assert y.grad is None


def test_returning_none_for_input_that_needs_grad_gives_no_gradient():
    class StopGrad(dt.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g, None

    a = dt.tensor(np.ones(2), requires_grad=True)
    b = dt.tensor(np.ones(2), requires_grad=True)
    (StopGrad.apply(a, b) + b).sum().backward()
    np.testing.assert_array_equal(np.asarray(a.grad), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(b.grad), [1.0, 1.0])   # only through the + b


def test_multi_output_function():
    class SplitTwo(dt.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a[:2].copy(), a[2:].copy()

        @staticmethod
        def backward(ctx, g1, g2):
            return np.concatenate([g1, g2])

    a = dt.tensor(np.arange(5.0), requires_grad=True)
    p, q = SplitTwo.apply(a)
    (q * 2.0).sum().backward()       # p gets no gradient: materialised as zeros
    np.testing.assert_array_equal(np.asarray(a.grad), [0, 0, 2, 2, 2])


def test_custom_vjp_and_custom_gradient_arity_errors():
    @dt.custom_vjp
    def f(a, b):
        return a * b

    f.defvjp(lambda a, b: (a * b, (a, b)), lambda res, g: g * res[1])

    @dt.custom_gradient
    def h(a, b):
        return a * b, lambda g: (g,)

    a = dt.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="f: the backward rule returned 1 gradient for 2 inputs"):
        f(a, a).sum().backward()
    with pytest.raises(RuntimeError, match="h: the backward rule returned 1 gradient for 2 inputs"):
        h(a, a).sum().backward()


def test_custom_ops_in_no_grad_are_not_recorded():
    a = dt.tensor(np.ones(2), requires_grad=True)
    with dt.no_grad():
        for f in (Mul.apply, mul_vjp, mul_tf):
            assert not f(a, a).requires_grad
