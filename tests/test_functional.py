"""disttrain.nn.functional: float64 gradcheck of every function, forward values against
plain numpy references, float32 kept float32, and clear errors for bad shapes."""
import math

import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F
from disttrain.autograd import gradcheck

rng = np.random.default_rng(3)


def randn(*shape):
    return np.asarray(rng.standard_normal(shape))


# -- numpy references ------------------------------------------------------
def ref_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def ref_conv2d(x, w, b, stride, padding):
    """Direct loops over every output element (stride/padding: int or (h, w))."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(n):
        for k in range(o):
            for y in range(oh):
                for z in range(ow):
                    patch = xp[i, :, y * sh:y * sh + kh, z * sw:z * sw + kw]
                    out[i, k, y, z] = (patch * w[k]).sum() + (0 if b is None else b[k])
    return out


def ref_pool(x, k, s, p, reduce, pad_value):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for z in range(ow):
            out[:, :, y, z] = reduce(xp[:, :, y * s:y * s + k, z * s:z * s + k], axis=(2, 3))
    return out


# -- activations -----------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("fn", [F.relu, F.tanh, F.sigmoid, F.gelu, lambda t: F.gelu(t, approximate="tanh")])
def test_activation_gradcheck(fn, shape):
    x = randn(*shape)
    x = np.where(np.abs(x) < 0.05, 0.3, x)   # away from relu's kink
    assert gradcheck(fn, [x])
    assert gradcheck(lambda t: fn(t.T), [randn(4, 3).T])   # non-contiguous input


def test_gelu_matches_erf_and_tanh_formulas():
    x = np.linspace(-6, 6, 25)
    exact = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    approx = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in x]
    np.testing.assert_allclose(F.gelu(dt.tensor(x)).numpy(), exact, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.gelu(dt.tensor(x), approximate="tanh").numpy(), approx, rtol=1e-12, atol=1e-15)
    out32 = F.gelu(dt.tensor(x.astype(np.float32)))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.numpy(), exact, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gelu.*approximate"):
        F.gelu(dt.tensor(x), approximate="fast")


@pytest.mark.parametrize("fn,ref", [(F.softmax, lambda x, a: np.exp(ref_log_softmax(x, a))),
                                    (F.log_softmax, ref_log_softmax)])
@pytest.mark.parametrize("shape,axis", [((3,), -1), ((2, 3), -1), ((2, 3), 0), ((2, 3, 4), 1), ((), -1)])
def test_softmax_family(fn, ref, shape, axis):
    x = randn(*shape)
    assert gradcheck(lambda t: fn(t, axis=axis), [x])
    np.testing.assert_allclose(fn(dt.tensor(x), dim=axis).numpy(), ref(x.reshape(shape or (1,)), axis).reshape(shape),
                               rtol=1e-12, atol=1e-15)


def test_softmax_is_stable_and_keeps_float32():
    x = dt.tensor(np.array([[1000.0, 1000.0, -1000.0]], np.float32))
    p = F.softmax(x)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.numpy(), [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(F.log_softmax(x).numpy(), [[-math.log(2), -math.log(2), -2000 - math.log(2)]],
                               rtol=1e-6)
    assert gradcheck(lambda t: F.log_softmax(t.T, axis=0), [randn(3, 4)[:, ::2].T])
    with pytest.raises(ValueError, match=r"softmax: axis 2 .*\(2, 3\)"):
        F.softmax(dt.tensor(np.ones((2, 3))), axis=2)


# -- losses ----------------------------------------------------------------
def test_cross_entropy_value_grad_and_dtype():
    logits = randn(5, 4)
    labels = np.array([0, 3, 1, 1, 2])
    expected = -ref_log_softmax(logits)[np.arange(5), labels].mean()
    x = dt.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, labels)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    loss.backward()
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(x.grad.numpy(), (np.exp(ref_log_softmax(logits)) - onehot) / 5, rtol=1e-12)
    assert gradcheck(lambda t: F.cross_entropy(t, labels), [logits])
    assert gradcheck(lambda t: F.cross_entropy(t.T, labels), [randn(4, 5)])
    for red in ("sum", "none"):
        assert gradcheck(lambda t: F.cross_entropy(t, labels, reduction=red), [logits])
    np.testing.assert_allclose(F.cross_entropy(dt.tensor(logits), dt.tensor(labels), reduction="none").numpy(),
                               -ref_log_softmax(logits)[np.arange(5), labels], rtol=1e-12)
    x32 = dt.tensor(logits.astype(np.float32), requires_grad=True)
    l32 = F.cross_entropy(x32, labels.astype(np.int32))
    l32.backward()
    assert l32.dtype == np.float32 and x32.grad.dtype == np.float32
    np.testing.assert_allclose(l32.item(), expected, rtol=1e-5)
    # a single sample: logits (C,), scalar label
    np.testing.assert_allclose(F.cross_entropy(dt.tensor(logits[1]), np.array(3)).item(),
                               -ref_log_softmax(logits[1])[3], rtol=1e-12)


def test_cross_entropy_large_logits_are_stable():
    x = dt.tensor(np.array([[1e4, 0.0], [0.0, -1e4]], np.float32), requires_grad=True)
    loss = F.cross_entropy(x, np.array([1, 1]))
    np.testing.assert_allclose(loss.item(), (1e4 + 1e4) / 2, rtol=1e-6)
    loss.backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_cross_entropy_errors():
    x = dt.tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: label 4 .*out of range for 4 classes"):
        F.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: label -1"):
        F.cross_entropy(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: .*\(3, 4\).*\(2,\)"):
        F.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(TypeError, match="cross_entropy: labels must be integer"):
        F.cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="avg")


def test_mse_loss():
    a, b = randn(2, 3), randn(2, 3)
    np.testing.assert_allclose(F.mse_loss(dt.tensor(a), dt.tensor(b)).item(), ((a - b) ** 2).mean(), rtol=1e-12)
    assert gradcheck(F.mse_loss, [a, b])
    assert gradcheck(F.mse_loss, [randn(2, 3), randn(1, 3)])
    assert gradcheck(F.mse_loss, [randn(2, 3), randn(3)])
    assert gradcheck(lambda x, y: F.mse_loss(x, y, reduction="sum"), [randn(), randn()])
    assert gradcheck(lambda x, y: F.mse_loss(x.T, y, reduction="none"), [randn(3, 2), randn(2, 3)])
    assert F.mse_loss(dt.tensor(a.astype(np.float32)), dt.tensor(b.astype(np.float32))).dtype == np.float32
    with pytest.raises(ValueError, match=r"mse_loss.*\(2, 3\).*\(4,\)"):
        F.mse_loss(dt.tensor(a), dt.tensor(np.zeros(4)))


# -- layers ----------------------------------------------------------------
@pytest.mark.parametrize("xshape", [(3,), (2, 3), (2, 2, 3)])
def test_linear(xshape):
    x, w, b = randn(*xshape), randn(4, 3), randn(4)
    np.testing.assert_allclose(F.linear(dt.tensor(x), dt.tensor(w), dt.tensor(b)).numpy(), x @ w.T + b, rtol=1e-12)
    assert gradcheck(F.linear, [x, w, b])
    assert gradcheck(lambda x, w: F.linear(x, w), [x, w])
    assert gradcheck(F.linear, [randn(3, 2).T, randn(3, 4).T, b])   # non-contiguous input and weight


def test_linear_float32_and_errors():
    x = dt.tensor(randn(5, 3).astype(np.float32), requires_grad=True)
    w = dt.tensor(randn(4, 3).astype(np.float32), requires_grad=True)
    b = dt.tensor(randn(4).astype(np.float32), requires_grad=True)
    out = F.linear(x, w, b)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"linear: input of shape \(5, 4\) does not match weight of shape \(4, 3\)"):
        F.linear(dt.tensor(np.ones((5, 4), np.float32)), w)
    with pytest.raises(ValueError, match=r"linear: bias of shape \(3,\)"):
        F.linear(x, w, dt.tensor(np.ones(3, np.float32)))


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 2), ((2, 1), (0, 1))])
def test_conv2d(stride, padding):
    x, w, b = randn(2, 2, 5, 5), randn(3, 2, 3, 3), randn(3)
    out = F.conv2d(dt.tensor(x), dt.tensor(w), dt.tensor(b), stride=stride, padding=padding)
    np.testing.assert_allclose(out.numpy(), ref_conv2d(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])


def test_conv2d_noncontiguous_no_bias_and_float32():
    x = randn(2, 5, 4, 3).transpose(0, 3, 2, 1)       # (2, 3, 4, 5), non-contiguous
    w = randn(2, 3, 2, 3)
    np.testing.assert_allclose(F.conv2d(dt.tensor(x), dt.tensor(w)).numpy(), ref_conv2d(x, w, None, 1, 0),
                               rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, w: F.conv2d(x, w, padding=1), [x, w])
    x32 = dt.tensor(x.astype(np.float32), requires_grad=True)
    w32 = dt.tensor(w.astype(np.float32), requires_grad=True)
    out = F.conv2d(x32, w32)
    out.sum().backward()
    assert out.dtype == x32.grad.dtype == w32.grad.dtype == np.float32


def test_conv2d_errors():
    x = dt.tensor(np.ones((1, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels .* weight expects 1 .*\(8, 1, 5, 5\)"):
        F.conv2d(x, dt.tensor(np.ones((8, 1, 5, 5))))
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D.*\(3, 8, 8\)"):
        F.conv2d(dt.tensor(np.ones((3, 8, 8))), dt.tensor(np.ones((8, 3, 5, 5))))
    with pytest.raises(ValueError, match="conv2d: kernel size 9"):
        F.conv2d(x, dt.tensor(np.ones((2, 3, 9, 9))))
    with pytest.raises(ValueError, match="conv2d: stride"):
        F.conv2d(x, dt.tensor(np.ones((2, 3, 3, 3))), stride=0)


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1)])
def test_pooling(k, s, p):
    x = randn(2, 2, 5, 6)
    stride = k if s is None else s
    np.testing.assert_allclose(F.max_pool2d(dt.tensor(x), k, s, p).numpy(),
                               ref_pool(x, k, stride, p, np.max, -np.inf), rtol=1e-12)
    np.testing.assert_allclose(F.avg_pool2d(dt.tensor(x), k, s, p).numpy(),
                               ref_pool(x, k, stride, p, np.mean, 0.0), rtol=1e-12)
    assert gradcheck(lambda t: F.max_pool2d(t, k, s, p), [x])
    assert gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [x])


def test_pooling_noncontiguous_float32_and_errors():
    x = randn(2, 6, 4, 3).transpose(0, 3, 2, 1)
    assert gradcheck(lambda t: F.max_pool2d(t, 2), [x])
    assert gradcheck(lambda t: F.avg_pool2d(t, (2, 3), stride=(1, 2)), [x])
    x32 = dt.tensor(x.astype(np.float32), requires_grad=True)
    out = F.max_pool2d(x32, 2)
    out.sum().backward()
    assert out.dtype == x32.grad.dtype == np.float32
    assert x32.grad.numpy().sum() == out.numel()      # every window routes its gradient once
    with pytest.raises(ValueError, match=r"max_pool2d: input must be 4-D"):
        F.max_pool2d(dt.tensor(np.ones((4, 4))), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding"):
        F.avg_pool2d(dt.tensor(np.ones((1, 1, 4, 4))), 2, padding=2)


def test_dropout():
    x = np.ones((200, 50), np.float32)
    dt.manual_seed(0)
    t = dt.tensor(x, requires_grad=True)
    out = F.dropout(t, p=0.25)
    vals = out.numpy()
    assert out.dtype == np.float32
    assert set(np.unique(vals)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((vals == 0).mean() - 0.25) < 0.02
    out.sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), vals)    # gradient uses the same mask
    dt.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(dt.tensor(x), p=0.25).numpy(), vals)   # reproducible
    assert F.dropout(t, p=0.5, training=False) is t
    np.testing.assert_array_equal(F.dropout(t, p=1.0).numpy(), 0)
    with pytest.raises(ValueError, match="dropout: probability"):
        F.dropout(t, p=1.5)
    # gradcheck with a fixed mask: reseed before every forward
    def fn(u):
        dt.manual_seed(1)
        return F.dropout(u, p=0.3)
    assert gradcheck(fn, [randn(3, 4)])


@pytest.mark.parametrize("xshape,ns", [((3,), 3), ((2, 3), (3,)), ((2, 3, 4), (3, 4))])
def test_layer_norm(xshape, ns):
    x = randn(*xshape)
    nst = (ns,) if isinstance(ns, int) else ns
    w, b = randn(*nst), randn(*nst)
    axes = tuple(range(x.ndim - len(nst), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(dt.tensor(x), ns, dt.tensor(w), dt.tensor(b)).numpy(), ref,
                               rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, ns, w, b), [x, w, b])
    assert gradcheck(lambda x: F.layer_norm(x, ns), [x])


def test_layer_norm_noncontiguous_float32_and_errors():
    assert gradcheck(lambda x, w: F.layer_norm(x, 3, w), [randn(3, 2).T, randn(3)])
    x32 = dt.tensor(randn(4, 5).astype(np.float32), requires_grad=True)
    w32 = dt.tensor(np.ones(5, np.float32), requires_grad=True)
    out = F.layer_norm(x32, 5, w32)
    out.sum().backward()
    assert out.dtype == x32.grad.dtype == w32.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(4,\) .*\(4, 5\)"):
        F.layer_norm(x32, 4)


def test_embedding():
    w = randn(5, 3)
    idx = np.array([[0, 4, 0], [2, 0, 1]])
    out = F.embedding(dt.tensor(idx), dt.tensor(w))
    np.testing.assert_array_equal(out.numpy(), w[idx])
    assert gradcheck(lambda w: F.embedding(idx, w), [w])
    t = dt.tensor(w, requires_grad=True)
    F.embedding(idx, t).sum().backward()
    np.testing.assert_array_equal(t.grad.numpy()[:, 0], [3, 1, 1, 0, 1])   # repeats accumulate
    with pytest.raises(ValueError, match=r"embedding: index 5 is out of range for 5 embeddings"):
        F.embedding(np.array([1, 5]), t)
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        F.embedding(np.array([1.0]), t)


# -- joining and selecting ---------------------------------------------------
def test_concatenate_and_stack():
    a, b, c = randn(2, 3), randn(1, 3), randn(4, 3)
    np.testing.assert_array_equal(F.concatenate([dt.tensor(a), dt.tensor(b)]).numpy(), np.concatenate([a, b]))
    assert gradcheck(lambda x, y, z: F.concatenate([x, y, z], axis=0), [a, b, c])
    assert gradcheck(lambda x, y: F.cat([x, y.T], dim=-1), [randn(3, 2), randn(1, 3)])
    assert gradcheck(lambda x, y: F.stack([x, y], axis=1), [a, randn(2, 3)])
    assert gradcheck(lambda x, y: F.stack((x, y), dim=-1), [randn(3), randn(3)])
    assert gradcheck(lambda x, y: F.stack([x, y]), [randn(), randn()])
    np.testing.assert_array_equal(F.stack([dt.tensor(a), dt.tensor(a)], axis=2).numpy(), np.stack([a, a], axis=2))
    with pytest.raises(ValueError, match=r"concatenate: tensor 1 has shape \(2, 4\)"):
        F.concatenate([dt.tensor(a), dt.tensor(np.ones((2, 4)))])
    with pytest.raises(ValueError, match=r"stack: tensor 1 has shape \(1, 3\)"):
        F.stack([dt.tensor(a), dt.tensor(b)])


def test_where():
    x, y = randn(2, 3), randn(2, 3)
    cond = x > y
    np.testing.assert_array_equal(F.where(cond, dt.tensor(x), dt.tensor(y)).numpy(), np.maximum(x, y))
    assert gradcheck(lambda a, b: F.where(cond, a, b), [x, y])
    assert gradcheck(lambda a, b: F.where(cond, a, b), [randn(1, 3), randn(3)])       # broadcast
    assert gradcheck(lambda a: F.where(cond, a, 0.0), [randn(2, 3)])
    assert gradcheck(lambda a: F.where(dt.tensor(cond), a.T, 1.0), [randn(3, 2)])     # cond as a Tensor
    with pytest.raises(TypeError, match="where: condition must be boolean"):
        F.where(np.ones((2, 3)), dt.tensor(x), dt.tensor(y))


def test_small_cnn_end_to_end_gradcheck():
    """conv -> relu -> max_pool -> flatten -> linear -> cross_entropy, all parameters at once."""
    x = randn(2, 1, 6, 6)
    labels = np.array([1, 0])

    def net(w1, b1, w2):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2)
        return F.cross_entropy(F.linear(h.reshape(2, -1), w2), labels)

    assert gradcheck(net, [randn(2, 1, 3, 3) * 0.5, randn(2), randn(2, 18) * 0.5])


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1)])
def test_max_pool_nan_propagates_like_pytorch(k, s):
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 1, 1] = np.nan
    t = dt.tensor(x, requires_grad=True)
    out = F.max_pool2d(t, k, s)
    assert np.isnan(out.numpy()[0, 0, 0, 0]) and not np.isnan(out.numpy()[0, 1]).any()
    out.sum().backward()
    assert np.isnan(t.grad.numpy()).sum() == 0   # the gradient goes to the NaN's position, no NaN created
    assert t.grad.numpy()[0, 0, 1, 1] >= 1


def test_every_function_keeps_float32():
    f = lambda *s: dt.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
    x4, x2 = f(2, 3, 6, 6), f(4, 5)
    outs = {
        "relu": F.relu(x2), "gelu": F.gelu(x2), "tanh": F.tanh(x2), "sigmoid": F.sigmoid(x2),
        "softmax": F.softmax(x2), "log_softmax": F.log_softmax(x2),
        "cross_entropy": F.cross_entropy(x2, np.array([0, 1, 2, 3])), "mse_loss": F.mse_loss(x2, f(4, 5)),
        "linear": F.linear(x2, f(3, 5), f(3)), "conv2d": F.conv2d(x4, f(2, 3, 3, 3), f(2), padding=1),
        "max_pool2d": F.max_pool2d(x4, 3, 2, 1), "avg_pool2d": F.avg_pool2d(x4, 2),
        "dropout": F.dropout(x2, 0.5), "layer_norm": F.layer_norm(x2, 5, f(5), f(5)),
        "embedding": F.embedding(np.array([1, 0]), x2), "concatenate": F.concatenate([x2, x2]),
        "stack": F.stack([x2, x2]), "where": F.where(x2.numpy() > 0, x2, 0.0),
    }
    for name, out in outs.items():
        assert out.dtype == np.float32, name
        out.sum().backward()
    for t in (x4, x2):
        assert t.grad.dtype == np.float32


def test_embedding_and_stack_noncontiguous():
    idx = np.array([2, 0, 2])
    assert gradcheck(lambda w: F.embedding(idx, w.T), [randn(4, 3)])
    assert gradcheck(lambda a, b: F.stack([a.T, b[::2]], axis=1), [randn(3, 2), randn(4, 3)])
