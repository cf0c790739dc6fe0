"""gradcheck, jacobian and numerical_jacobian themselves."""
import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import GradcheckError, gradcheck, jacobian, numerical_jacobian
from disttrain.autograd.gradcheck import FULL_JACOBIAN_LIMIT


class WrongMul(dt.autograd.Function):
    """a * b with a deliberately wrong gradient for a (missing factor b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g, g * a


def test_passes_on_correct_op():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    assert gradcheck(lambda x, y: (x * y).tanh() / (y * y + 1.0), (a, b)) is True


def test_float32_inputs_are_checked_in_float64():
    a = np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(2, 3)
    assert gradcheck(lambda x: (x * x * x).sum(axis=1), (a,), atol=1e-7, rtol=1e-6)


def test_raises_on_wrong_op_with_inputs_numeric_and_analytic():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([4.0, 5.0, 6.0])
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongMul.apply, (a, b))
    msg = str(info.value)
    assert "input 0" in msg and "inputs:" in msg
    assert "numeric gradient:" in msg and "analytic gradient:" in msg
    assert "[4. 5. 6.]" in msg            # the inputs are printed
    assert not gradcheck(WrongMul.apply, (a, b), raise_exception=False)
    assert gradcheck(WrongMul.apply, (a, b * 0 + 1.0))   # with b == 1 the wrong rule happens to be right


def test_random_direction_mode_on_large_input():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 30))        # 1200 elements: above the full-Jacobian limit
    b = rng.standard_normal((40, 30))
    assert a.size > FULL_JACOBIAN_LIMIT
    assert gradcheck(lambda x, y: (x * y).sum(axis=0), (a, b))
    with pytest.raises(GradcheckError, match="random direction"):
        gradcheck(WrongMul.apply, (a, b))


def test_numpy_float_scalar_is_checked():
    assert gradcheck(lambda x: x * x, (np.float64(1.5),))
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: WrongMul.apply(x, x), (np.float64(1.5),))


def test_non_float_and_non_grad_inputs_are_left_alone():
    a = np.array([1.0, 2.0])
    c = dt.tensor(np.array([3.0, 4.0]))          # requires_grad False: not checked
    assert gradcheck(lambda x, y, k: x * y * k, (a, c, 2))
    with pytest.raises(ValueError, match="no floating-point input"):
        gradcheck(lambda y: y * 2.0, (c,))


def test_jacobian_equals_numerical_and_backward_is_jt_v():
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((2, 3))
    m = rng.standard_normal((3, 3))

    def f(x):
        return (x @ dt.tensor(m)).tanh() * x

    jac = jacobian(f, x0)
    assert jac.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(jac, numerical_jacobian(f, x0), atol=1e-7)
    v = rng.standard_normal((2, 3))
    x = dt.tensor(x0, requires_grad=True)
    f(x).backward(v)
    jt_v = np.tensordot(v, jac, axes=([0, 1], [0, 1]))
    np.testing.assert_allclose(np.asarray(x.grad), jt_v, rtol=1e-10, atol=1e-12)


def test_jacobian_of_elementwise_op_is_diagonal():
    x0 = np.array([0.1, 0.2, 0.3])
    jac = jacobian(lambda x: x * x, x0)
    np.testing.assert_allclose(jac, np.diag(2 * x0), atol=1e-12)
