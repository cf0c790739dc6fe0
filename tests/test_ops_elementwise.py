"""Tensor math methods and the elementwise ops: float64 gradcheck, numpy references, dtypes."""
import math

import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck

rng = np.random.default_rng(1)

SHAPES = [(), (3,), (2, 3)]

# name -> (method, numpy reference, input transform keeping the domain valid)
UNARY = {
    "exp": (lambda t: t.exp(), np.exp, lambda a: a),
    "log": (lambda t: t.log(), np.log, lambda a: np.abs(a) + 0.5),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, lambda a: np.abs(a) + 0.5),
    "tanh": (lambda t: t.tanh(), np.tanh, lambda a: a),
    "sigmoid": (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), lambda a: a),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0), lambda a: np.where(np.abs(a) < 0.05, 0.3, a)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", SHAPES)
def test_unary_gradcheck_and_values(name, shape):
    method, ref, domain = UNARY[name]
    x = np.asarray(domain(rng.standard_normal(shape)))
    assert gradcheck(method, [x])
    out = method(dt.tensor(x))
    np.testing.assert_allclose(out.numpy(), ref(x), rtol=1e-12, atol=1e-12)


VIEWS = [lambda a: a.T, lambda a: a[::2, 1::2]]   # transposed and strided, both non-contiguous


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("view", VIEWS)
def test_unary_noncontiguous_inputs(name, view):
    method, ref, domain = UNARY[name]
    base = domain(rng.standard_normal((4, 6)))
    assert not view(base).flags.c_contiguous
    # a non-contiguous array given to gradcheck, and a Tensor view fed to the op
    assert gradcheck(method, [view(base)])
    assert gradcheck(lambda t: method(view(t)), [base])
    np.testing.assert_allclose(method(view(dt.tensor(base))).numpy(), ref(view(base)), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float32_stays_float32(name):
    method, ref, domain = UNARY[name]
    x = dt.tensor(domain(rng.standard_normal((3, 4))).astype(np.float32), requires_grad=True)
    out = method(x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), ref(x.numpy().astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_relu_gradient_is_zero_at_zero_and_negative():
    x = dt.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


def test_sigmoid_extreme_inputs_do_not_overflow():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], np.float32)
    with np.errstate(over="raise"):
        out = dt.tensor(x).sigmoid().numpy()
    np.testing.assert_allclose(out, [0.0, 1 / (1 + math.exp(30)), 0.5, 1 / (1 + math.exp(-30)), 1.0], rtol=1e-6)


def test_backward_with_broadcast_gradient_view():
    # sum's backward hands a read-only broadcast view to the fused kernels
    x = dt.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x.tanh().sigmoid().relu().sum().backward()
    t = np.tanh(x.numpy())
    s = 1 / (1 + np.exp(-t))
    np.testing.assert_allclose(x.grad.numpy(), s * (1 - s) * (1 - t * t), rtol=1e-12)
