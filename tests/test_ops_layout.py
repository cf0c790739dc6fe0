"""Memory layouts flowing between ops: linear hands out F-ordered (feature-major)
activations; relu, gelu, cross_entropy and linear itself must take C, F and
strided arrays alike, with right values and float64 gradients, and without
copies where the layouts already match."""
import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F
from disttrain.autograd import gradcheck
from disttrain.ops._arrays import flat_in, memory_order
from disttrain.ops.activation import GELU, ReLU
from disttrain.ops.linear import Linear

rng = np.random.default_rng(11)


def randn(*shape):
    return rng.standard_normal(shape)


class Ctx:
    """A stand-in tape node for calling an op's forward/backward directly."""

    def __init__(self, needs):
        self.needs_input_grad = needs

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


def test_linear_2d_output_is_feature_major_and_exact():
    x, w, b = randn(6, 5), randn(4, 5), randn(4)
    out = F.linear(dt.tensor(x), dt.tensor(w), dt.tensor(b)).numpy()
    assert out.flags.f_contiguous and not out.flags.c_contiguous
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    # N-D inputs keep the row-major result (a reshape of an F-ordered one would copy)
    out3 = F.linear(dt.tensor(randn(2, 3, 5)), dt.tensor(w)).numpy()
    assert out3.shape == (2, 3, 4) and out3.flags.c_contiguous


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_linear_backward_returns_input_gradient_in_the_input_layout(layout):
    base, w, b = randn(6, 10), randn(4, 5), randn(4)
    x = {"C": np.ascontiguousarray(base[:, :5]), "F": np.asfortranarray(base[:, :5]),
         "strided": base[:, ::2]}[layout]
    g = randn(6, 4)
    ctx = Ctx((True, True, True))
    out = Linear.forward(ctx, x, w, b)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    for gl in (np.ascontiguousarray(g), np.asfortranarray(g), np.repeat(g, 2, axis=1)[:, ::2]):
        gx, gw, gb = Linear.backward(ctx, gl)
        np.testing.assert_allclose(gx, g @ w, rtol=1e-12)
        np.testing.assert_allclose(gw, g.T @ x, rtol=1e-12)
        np.testing.assert_allclose(gb, g.sum(axis=0), rtol=1e-12)
        assert gw.flags.c_contiguous and gw.base is None     # the engine hands it to the leaf as is
        if layout == "F":
            assert gx.flags.f_contiguous
        else:
            assert gx.flags.c_contiguous


def test_linear_skips_gradients_not_needed():
    ctx = Ctx((False, True, False))
    Linear.forward(ctx, randn(3, 2), randn(4, 2), randn(4))
    gx, gw, gb = Linear.backward(ctx, randn(3, 4))
    assert gx is None and gb is None and gw.shape == (4, 2)


def test_linear_broadcast_gradient_from_sum():
    # sum() sends back a zero-stride broadcast view: neither C nor F contiguous
    x = dt.tensor(randn(3, 2), requires_grad=True)
    w = dt.tensor(randn(4, 2), requires_grad=True)
    F.linear(x, w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones((3, 4)) @ w.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), np.ones((4, 3)) @ x.numpy(), rtol=1e-12)


def test_flat_in_is_a_view_when_the_layout_matches():
    a = np.asfortranarray(randn(3, 4))
    assert memory_order(a) == "F" and memory_order(np.ascontiguousarray(a)) == "C"
    assert memory_order(np.ones((1, 4), order="F")) == "C"       # both C and F: C
    v = flat_in(a, np.float64, "F")
    assert np.shares_memory(v, a)
    np.testing.assert_array_equal(v, a.ravel(order="F"))
    c = flat_in(a, np.float64, "C")                              # another order: a copy, in that order
    assert not np.shares_memory(c, a)
    np.testing.assert_array_equal(c, a.ravel())
    np.testing.assert_array_equal(flat_in(a, np.float32, "F"), a.ravel(order="F").astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_any_pair_of_layouts(dtype):
    a = randn(5, 7).astype(dtype)
    g = randn(5, 7).astype(dtype)
    want = g * (a > 0)
    for al in (np.ascontiguousarray(a), np.asfortranarray(a)):
        ctx = Ctx((True,))
        out = ReLU.forward(ctx, al)
        assert memory_order(out) == memory_order(al)
        np.testing.assert_array_equal(out, np.maximum(a, 0))
        for gl in (np.ascontiguousarray(g), np.asfortranarray(g), np.repeat(g, 2, axis=0)[::2]):
            gin = ReLU.backward(ctx, gl)
            assert gin.dtype == dtype and memory_order(gin) == memory_order(al)
            np.testing.assert_array_equal(gin, want)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_keeps_the_layout_and_values(approximate):
    a = randn(4, 6)
    g = randn(4, 6)
    ref_ctx = Ctx((True,))
    ref = GELU.forward(ref_ctx, np.ascontiguousarray(a), approximate)
    ref_g, _ = GELU.backward(ref_ctx, g)
    ctx = Ctx((True,))
    out = GELU.forward(ctx, np.asfortranarray(a), approximate)
    assert memory_order(out) == "F"
    np.testing.assert_array_equal(out, ref)
    for gl in (np.asfortranarray(g), np.ascontiguousarray(g)):
        gin, _ = GELU.backward(ctx, gl)
        assert memory_order(gin) == "F"
        np.testing.assert_array_equal(gin, ref_g)
    assert gradcheck(lambda t: F.gelu(t, approximate), [np.asfortranarray(randn(3, 5))])


def test_cross_entropy_on_feature_major_logits():
    x = randn(6, 4)
    labels = np.array([0, 3, 1, 1, 2, 0])
    xf = np.asfortranarray(x)
    t = dt.tensor(xf, requires_grad=True)
    loss = F.cross_entropy(t, labels)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss.item(), -logp[np.arange(6), labels].mean(), rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(t.grad.numpy(), (np.exp(logp) - np.eye(4)[labels]) / 6, rtol=1e-12)
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction="sum"), [xf])


def test_mlp_in_feature_major_layout_values_and_float64_gradcheck():
    x, labels = randn(5, 3), np.array([1, 0, 2, 2, 1])
    w1, b1, w2, b2, w3, b3 = randn(6, 3), randn(6), randn(4, 6), randn(4), randn(3, 4), randn(3)
    x = np.where(np.abs(x) < 0.05, 0.3, x)

    def mlp(x, w1, b1, w2, b2, w3, b3):
        h = F.relu(F.linear(x, w1, b1))
        h = F.gelu(F.linear(h, w2, b2))
        return F.cross_entropy(F.linear(h, w3, b3), labels)

    assert gradcheck(mlp, [x, w1, b1, w2, b2, w3, b3])
    # values against plain numpy
    from math import erf
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    h = z * 0.5 * (1 + np.vectorize(erf)(z / np.sqrt(2)))
    logits = h @ w3.T + b3
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    got = mlp(*(dt.tensor(a) for a in (x, w1, b1, w2, b2, w3, b3))).item()
    np.testing.assert_allclose(got, -logp[np.arange(5), labels].mean(), rtol=1e-12)


def test_mlp_float32_training_step_matches_float64():
    """A float32 step through the feature-major path agrees with the same step in float64."""
    x, labels = randn(8, 5), rng.integers(0, 3, 8)
    params = [randn(7, 5) * 0.5, randn(7) * 0.1, randn(3, 7) * 0.5, randn(3) * 0.1]

    def grads(dtype):
        ps = [dt.tensor(p.astype(dtype), requires_grad=True) for p in params]
        h = F.relu(F.linear(dt.tensor(x.astype(dtype)), ps[0], ps[1]))
        F.cross_entropy(F.linear(h, ps[2], ps[3]), labels).backward()
        return [p.grad.numpy() for p in ps]

    for g32, g64 in zip(grads(np.float32), grads(np.float64)):
        assert g32.dtype == np.float32 and g32.flags.c_contiguous
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_kernel_values_nan_and_dtypes(dtype):
    a = np.array([[-2.0, -0.0, 0.0, 3.5], [np.nan, np.inf, -np.inf, 1e-30]], dtype)
    for al in (a, np.asfortranarray(a), np.repeat(a, 2, axis=1)[:, ::2]):
        out = F.relu(dt.tensor(al)).numpy()
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, [[0, 0, 0, 3.5], [np.nan, np.inf, 0, dtype(1e-30)]])
    ints = F.relu(dt.tensor(np.array([-3, 4]))).numpy()        # non-float input: numpy's maximum
    np.testing.assert_array_equal(ints, [0, 4])
