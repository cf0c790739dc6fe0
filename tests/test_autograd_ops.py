"""float64 gradcheck of the arithmetic and reduction ops: shapes, broadcast pairs, views."""
import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck

rng = np.random.default_rng(7)

BINARY = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "pow": lambda x, y: x ** y,
}
# (shape of a, shape of b): equal shapes and broadcast pairs
PAIRS = [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((2, 3), (1, 3)), ((2, 3), (3,)), ((1, 3), (2, 1))]


def _positive(shape):
    return np.abs(rng.standard_normal(shape)) + 0.5


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("sa, sb", PAIRS)
def test_binary_gradcheck(name, sa, sb):
    a, b = _positive(sa), _positive(sb)      # positive: valid for / and ** in both inputs
    assert gradcheck(BINARY[name], (a, b))
    assert gradcheck(BINARY[name], (b, a))   # broadcasting on the other side


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_with_python_scalar_and_one_side_grad(name):
    a = _positive((2, 3))
    assert gradcheck(lambda x: BINARY[name](x, 1.5), (a,))
    assert gradcheck(lambda x: BINARY[name](1.5, x), (a,))
    const = dt.tensor(_positive((3,)))
    assert gradcheck(lambda x: BINARY[name](x, const), (a,))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_noncontiguous_inputs(name):
    a, b = _positive((4, 6)), _positive((6, 4))
    assert gradcheck(lambda x, y: BINARY[name](x.T, y[:, ::1]), (a, b))
    assert gradcheck(lambda x, y: BINARY[name](x[::2, 1::2], y.T[::2, 1::2]), (a, b))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_unary_arithmetic_gradcheck(shape):
    a = np.asarray(rng.standard_normal(shape))
    a = np.where(np.abs(a) < 0.1, 0.5, a)    # |x| is not differentiable at 0
    assert gradcheck(lambda x: -x, (a,))
    assert gradcheck(lambda x: abs(x), (a,))
    # a round trip through float32: a step large enough for float32 rounding
    assert gradcheck(lambda x: x.astype(np.float32).astype(np.float64) * 1.0, (a,), eps=1e-2, atol=1e-4)


def test_pow_gradient_at_zero_base():
    x = dt.tensor(np.array([0.0, 2.0]), requires_grad=True)
    e = dt.tensor(np.array([2.0, 3.0]), requires_grad=True)
    (x ** e).sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), [0.0, 12.0])
    np.testing.assert_allclose(np.asarray(e.grad), [0.0, 8 * np.log(2.0)])


def test_cast_gradient_dtype():
    x = dt.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(x.grad), [2.0, 2.0, 2.0])


REDUCTIONS = {
    "sum": lambda t, axis, keep: t.sum(axis=axis, keepdims=keep),
    "mean": lambda t, axis, keep: t.mean(axis=axis, keepdims=keep),
    "max": lambda t, axis, keep: t.max(axis=axis, keepdims=keep),
    "min": lambda t, axis, keep: t.min(axis=axis, keepdims=keep),
}
NUMPY = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("shape, axis", [((), None), ((3,), None), ((3,), 0), ((2, 3), None),
                                         ((2, 3), 1), ((2, 3), -2), ((2, 3, 4), (0, 2))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_gradcheck_and_values(name, shape, axis, keepdims):
    a = rng.standard_normal(shape)            # continuous: no ties for max/min
    f = REDUCTIONS[name]
    assert gradcheck(lambda x: f(x, axis, keepdims), (a,))
    np.testing.assert_allclose(f(dt.tensor(a), axis, keepdims).data,
                               NUMPY[name](a, axis=axis, keepdims=keepdims), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_noncontiguous(name):
    a = rng.standard_normal((4, 6))
    f = REDUCTIONS[name]
    assert gradcheck(lambda x: f(x.T[1::2], 0, False), (a,))


def test_reduction_float32_keeps_dtype():
    x = dt.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    for r in (x.sum(), x.mean(axis=0), x.max(axis=1), x.min()):
        assert r.dtype == np.float32
    (x.sum() + x.mean(axis=0).sum()).backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(np.asarray(x.grad), np.full((2, 3), 1.5))


def test_pow_with_zero_exponent_has_zero_gradient_at_zero_base():
    # d/dx x**0 = 0 everywhere (PyTorch gives 0 too); a^(b-1) alone would make 0 * inf = nan.
    x = dt.tensor(np.array([0.0, 1.0, 2.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])
    e = dt.tensor(np.array([0.0, 2.0]))
    y = dt.tensor(np.array([0.0, 3.0]), requires_grad=True)
    (y ** e).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0.0, 6.0])


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "Add"), (lambda a, b: a - b, "Sub"),
                                      (lambda a, b: a * b, "Mul"), (lambda a, b: a / b, "Div"),
                                      (lambda a, b: a ** b, "Pow")])
def test_broadcast_error_names_op_and_shapes(op, name):
    a = dt.tensor(np.ones(3), requires_grad=True)
    b = dt.tensor(np.ones(4))
    with pytest.raises(ValueError, match=rf"{name}: operands of shapes \(3,\) and \(4,\) cannot be broadcast"):
        op(a, b)


def test_scalar_conversions_and_non_numeric_data():
    t = dt.tensor(np.array([2.5])).sum()
    assert float(t) == 2.5 and int(dt.tensor(np.array(3))) == 3
    with pytest.raises(TypeError, match="must be numeric"):
        dt.tensor("abc")
