"""reshape/transpose/indexing and matmul: gradcheck over 1-D, 2-D, batched and broadcast cases."""
import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck, jacobian, numerical_jacobian

rng = np.random.default_rng(2)


def test_reshape_transpose_T_gradcheck():
    x = rng.standard_normal((2, 3, 4))
    assert gradcheck(lambda t: t.reshape(4, 6), [x])
    assert gradcheck(lambda t: t.reshape((3, -1)), [x])
    assert gradcheck(lambda t: t.transpose(2, 0, 1), [x])
    assert gradcheck(lambda t: t.transpose(), [x])
    assert gradcheck(lambda t: t.T, [rng.standard_normal((2, 3))])
    assert gradcheck(lambda t: t.reshape(()), [rng.standard_normal((1, 1))])
    y = dt.tensor(x).transpose(2, 0, 1)
    np.testing.assert_array_equal(y.numpy(), x.transpose(2, 0, 1))


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        dt.tensor(np.ones((2, 3))).reshape(4, 2)


@pytest.mark.parametrize("index", [
    1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, 0), (None, 1), (slice(None, None, -1), slice(0, 4, 2)),
])
def test_basic_indexing_gradcheck(index):
    x = rng.standard_normal((3, 4))
    assert gradcheck(lambda t: t[index], [x])
    np.testing.assert_array_equal(dt.tensor(x)[index].numpy(), x[index])


def test_fancy_indexing_with_repeats_accumulates():
    x = rng.standard_normal((4, 3))
    idx = np.array([0, 2, 0, 0, 3])
    assert gradcheck(lambda t: t[idx], [x])
    assert gradcheck(lambda t: t[idx, np.array([1, 1, 0, 2, 1])], [x])
    assert gradcheck(lambda t: t[[1, 1]], [x])
    assert gradcheck(lambda t: t[:, np.array([2, 2])], [x])
    t = dt.tensor(x, requires_grad=True)
    t[dt.tensor(idx)].sum().backward()
    np.testing.assert_array_equal(t.grad.numpy()[:, 0], [3, 0, 1, 1])


def test_boolean_mask_indexing():
    x = rng.standard_normal((3, 4))
    mask = x > 0
    assert gradcheck(lambda t: t[mask], [x])
    t = dt.tensor(x, requires_grad=True)
    t[dt.tensor(mask)].sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), mask.astype(float))


def test_indexing_error_names_shape():
    with pytest.raises(IndexError, match=r"\(3, 4\)"):
        dt.tensor(np.ones((3, 4)))[5]


MATMUL_CASES = [
    ((3,), (3,)),             # dot
    ((3,), (3, 4)),           # vector @ matrix
    ((2, 3), (3,)),           # matrix @ vector
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),      # batched @ matrix (broadcast)
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),  # batch dims broadcast against each other
    ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_CASES)
def test_matmul_gradcheck(sa, sb):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    assert gradcheck(lambda x, y: x @ y, [a, b])
    np.testing.assert_allclose((dt.tensor(a) @ dt.tensor(b)).numpy(), a @ b, rtol=1e-12)


def test_matmul_noncontiguous_and_one_side_grad():
    a = rng.standard_normal((4, 3)).T          # (3, 4) transposed view
    b = rng.standard_normal((6, 5))[::2, 1:4]  # (3, 3) strided slice
    assert gradcheck(lambda x, y: x.T @ y, [a, b])
    x = dt.tensor(a, requires_grad=True)
    (x.T @ dt.tensor(b)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (np.ones((4, 3)) @ b.T).T, rtol=1e-12)


def test_matmul_backward_equals_jacobian_transpose():
    b = rng.standard_normal((3, 2))
    x = rng.standard_normal((2, 3))
    fn = lambda t: t @ dt.tensor(b)
    np.testing.assert_allclose(jacobian(fn, x), numerical_jacobian(fn, x), atol=1e-8)


def test_matmul_float32_stays_float32():
    a = dt.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    b = dt.tensor(rng.standard_normal((3,)).astype(np.float32), requires_grad=True)
    out = a @ b
    assert out.dtype == np.float32
    out.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


def test_matmul_errors_name_shapes():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        dt.tensor(np.ones((2, 3))) @ dt.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match="at least one dimension"):
        dt.tensor(np.ones(())) @ dt.tensor(np.ones((3,)))
