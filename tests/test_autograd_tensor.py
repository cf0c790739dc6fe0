"""Tensor basics: the issue's example, operators, dtype rules, broadcasting backward."""
import numpy as np
import pytest

import disttrain as dt


def test_issue_example():
    x = dt.tensor(np.ones((2, 3)), requires_grad=True)
    w = dt.tensor(np.ones((3, 4), np.float32), requires_grad=True)
    loss = (x @ w).relu().sum()
    loss.backward()
    assert isinstance(x, dt.Tensor)
    gx = np.asarray(x.grad)
    assert gx.shape == (2, 3) and gx.dtype == x.dtype
    np.testing.assert_array_equal(gx, np.full((2, 3), 4.0))     # each x[i, k] feeds 4 outputs with w = 1
    np.testing.assert_array_equal(np.asarray(w.grad), np.full((3, 4), 2.0))
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(x), np.ones((2, 3)))
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))
    with dt.no_grad():
        y = (x @ w).sum()
    assert not y.requires_grad and y.grad_fn is None


def test_dtype_rules():
    assert dt.tensor(1.5).dtype == np.float32
    assert dt.tensor([[1.0, 2.0]]).dtype == np.float32
    assert dt.tensor([1, 2]).dtype.kind == "i"
    assert dt.tensor(np.ones(3)).dtype == np.float64
    assert dt.tensor(np.ones(3, np.float16)).dtype == np.float16
    assert dt.tensor(np.float64(2.0)).dtype == np.float64
    assert dt.tensor([1.0], dtype=np.float64).dtype == np.float64
    assert dt.Tensor(0.5).dtype == np.float32


def test_tensor_copies_but_from_numpy_shares():
    a = np.zeros(3, np.float32)
    t, s = dt.tensor(a), dt.from_numpy(a)
    a[0] = 7
    assert t.data[0] == 0 and s.data[0] == 7


def test_numpy_conversion_copies_only_when_asked():
    t = dt.tensor(np.ones(3))
    assert np.asarray(t) is t.data                  # no copy
    snapshot = np.array(t)                          # a copy, as for any array
    snapshot[0] = 5.0
    assert t.data[0] == 1.0
    assert np.array(t, dtype=np.float32).dtype == np.float32
    assert np.asarray(t, dtype=np.float64) is t.data


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        dt.tensor([1, 2], requires_grad=True)


def test_properties_and_item():
    t = dt.tensor(np.arange(6.0).reshape(2, 3))
    assert t.shape == (2, 3) and t.ndim == 2 and t.dtype == np.float64
    assert t.numel() == 6 and t.size() == (2, 3) and t.size(-1) == 3
    assert len(t) == 2
    s = t.sum()
    assert s.item() == 15.0 and isinstance(s.item(), float)
    assert t[1, 2].item() == 5.0
    assert t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert "grad_fn=<Sum>" in repr(dt.tensor(np.ones(2), requires_grad=True).sum())


def _grad_of(fn, *arrays):
    ts = [dt.tensor(a, requires_grad=True) for a in arrays]
    fn(*ts).sum().backward()
    return [np.asarray(t.grad) for t in ts]


def test_operators_values_and_gradients():
    a = np.array([1.0, 2.0, 4.0])
    b = np.array([2.0, 0.5, 3.0])
    ta, tb = dt.tensor(a), dt.tensor(b)
    np.testing.assert_allclose((ta + tb).data, a + b)
    np.testing.assert_allclose((ta - tb).data, a - b)
    np.testing.assert_allclose((ta * tb).data, a * b)
    np.testing.assert_allclose((ta / tb).data, a / b)
    np.testing.assert_allclose((ta ** tb).data, a ** b)
    np.testing.assert_allclose((-ta).data, -a)
    np.testing.assert_allclose((2.0 - ta).data, 2 - a)
    np.testing.assert_allclose((1.0 / ta).data, 1 / a)
    np.testing.assert_allclose((2.0 ** ta).data, 2 ** a)
    np.testing.assert_allclose((a * tb).data, a * b)          # ndarray on the left defers to Tensor
    assert isinstance(a * tb, dt.Tensor)

    ga, gb = _grad_of(lambda x, y: x * y + x / y - y, a, b)
    np.testing.assert_allclose(ga, b + 1 / b)
    np.testing.assert_allclose(gb, a - a / b ** 2 - 1)
    ga, gb = _grad_of(lambda x, y: x ** y, a, b)
    np.testing.assert_allclose(ga, b * a ** (b - 1))
    np.testing.assert_allclose(gb, a ** b * np.log(a))
    (ga,) = _grad_of(lambda x: -x * 3.0 + abs(x - 2.0), a)
    np.testing.assert_allclose(ga, -3.0 + np.sign(a - 2.0))


def test_comparisons_have_no_grad():
    x = dt.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    for r, want in [(x > 2, [0, 0, 1]), (x >= 2, [0, 1, 1]), (x < 2, [1, 0, 0]),
                    (x <= 2, [1, 1, 0]), (x == 2, [0, 1, 0]), (x != 2, [1, 0, 1]),
                    (x > dt.tensor([0.0, 5.0, 0.0]), [1, 0, 1])]:
        assert r.dtype == np.bool_ and not r.requires_grad
        np.testing.assert_array_equal(r.data, np.array(want, bool))


def test_max_follows_numpy():
    a = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, 7.0]])
    t = dt.tensor(a, requires_grad=True)
    m = t.max(axis=1)
    np.testing.assert_array_equal(m.data, [5.0, 7.0])     # the values, not (values, indices)
    assert t.max().item() == 7.0
    assert t.max(axis=0, keepdims=True).shape == (1, 3)
    np.testing.assert_array_equal(t.min(axis=1).data, [1.0, 2.0])
    m.sum().backward()
    # ties share the gradient equally
    np.testing.assert_array_equal(np.asarray(t.grad), [[0, 1, 0], [0.5, 0, 0.5]])


def test_sum_mean_axes():
    a = np.arange(24.0).reshape(2, 3, 4)
    t = dt.tensor(a, requires_grad=True)
    for axis in [None, 0, 1, -1, (0, 2)]:
        for keepdims in [False, True]:
            np.testing.assert_allclose(t.sum(axis=axis, keepdims=keepdims).data,
                                       a.sum(axis=axis, keepdims=keepdims))
            np.testing.assert_allclose(t.mean(axis, keepdims).data, a.mean(axis=axis, keepdims=keepdims))
    t.mean(axis=(0, 2)).sum().backward()
    np.testing.assert_allclose(np.asarray(t.grad), np.full(a.shape, 1 / 8))


@pytest.mark.parametrize("sa, sb", [((2, 3), (1, 3)), ((2, 3), (3,)), ((2, 3), ()), ((4, 1, 3), (2, 1))])
def test_broadcasting_backward_reduces_to_input_shape(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    for op in [lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y, lambda x, y: x / y]:
        ta, tb = dt.tensor(a, requires_grad=True), dt.tensor(b, requires_grad=True)
        out = op(ta, tb)
        seed = rng.standard_normal(out.shape)
        out.backward(seed)
        assert ta.grad.shape == sa and tb.grad.shape == sb
        # check against the broadcast-then-sum rule, computed with numpy alone
        ta2, tb2 = dt.tensor(np.broadcast_to(a, out.shape).copy(), requires_grad=True), \
            dt.tensor(np.broadcast_to(b, out.shape).copy(), requires_grad=True)
        op(ta2, tb2).backward(seed)
        full_a, full_b = np.asarray(ta2.grad), np.asarray(tb2.grad)
        extra = full_a.ndim - len(sa)
        want_a = full_a.sum(axis=tuple(range(extra))).sum(
            axis=tuple(i for i, n in enumerate(sa) if n == 1), keepdims=True).reshape(sa)
        extra = full_b.ndim - len(sb)
        want_b = full_b.sum(axis=tuple(range(extra))).sum(
            axis=tuple(i for i, n in enumerate(sb) if n == 1), keepdims=True).reshape(sb)
        np.testing.assert_allclose(np.asarray(ta.grad), want_a, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(tb.grad), want_b, rtol=1e-12)


def test_scalar_operand_gets_no_grad_and_float32_is_kept():
    x = dt.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2.5 + 1.0) / 2.0 - 0.5        # Python scalars keep float32 (NEP 50)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(np.asarray(x.grad), [1.25, 1.25])


def test_grad_matches_dtype_when_op_upcasts():
    x = dt.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * np.ones(3, np.float64)).sum().backward()       # output float64
    assert x.grad.dtype == np.float32


def test_detach_zero_grad_and_grad_assignment():
    x = dt.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.data is x.data
    (x * x).sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), [2.0, 4.0])
    (x * x).sum().backward()                              # accumulates
    np.testing.assert_allclose(np.asarray(x.grad), [4.0, 8.0])
    x.zero_grad()
    assert x.grad is None
    x.grad = np.array([1.0, 1.0])
    assert x.grad.dtype == np.float32
    x.grad = None
    assert x.grad is None
    with pytest.raises(ValueError, match="shape"):
        x.grad = np.ones(3)


def test_reshape_transpose_and_indexing_gradients():
    a = np.arange(6.0).reshape(2, 3)
    t = dt.tensor(a, requires_grad=True)
    assert t.reshape(3, 2).shape == (3, 2) and t.reshape((6,)).shape == (6,)
    assert t.T.shape == (3, 2) and t.transpose(1, 0).shape == (3, 2)
    (t.reshape(3, 2).T * dt.tensor(a)).sum().backward()
    np.testing.assert_allclose(np.asarray(t.grad), a.T.reshape(2, 3))
    t.grad = None
    t[:, 1:].sum().backward()
    np.testing.assert_array_equal(np.asarray(t.grad), [[0, 1, 1], [0, 1, 1]])


def test_unary_methods():
    a = np.array([0.5, 1.0, 2.0])
    t = dt.tensor(a)
    np.testing.assert_allclose(t.exp().data, np.exp(a))
    np.testing.assert_allclose(t.log().data, np.log(a))
    np.testing.assert_allclose(t.sqrt().data, np.sqrt(a))
    np.testing.assert_allclose(t.tanh().data, np.tanh(a))
    np.testing.assert_allclose(t.sigmoid().data, 1 / (1 + np.exp(-a)))
    np.testing.assert_allclose((t - 1).relu().data, [0, 0, 1])
