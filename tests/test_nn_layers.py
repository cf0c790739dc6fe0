"""Every layer: forward against a numpy reference, and a float64 gradcheck through the layer
with respect to its input and each of its parameters."""
import math

import numpy as np
import pytest

import disttrain as dt
from disttrain import nn
from disttrain.autograd import gradcheck
from disttrain.nn.utils import functional_call

rng = np.random.default_rng(0)


def check_layer(layer, x, extra=()):
    """gradcheck of layer(x, *extra) in float64 w.r.t. x (if float) and every parameter."""
    layer.double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.data.copy() for p in layer.parameters()]

    def fn(x, *ps):
        return functional_call(layer, dict(zip(names, ps)), x, *extra)

    fn.__name__ = type(layer).__name__
    assert gradcheck(fn, [x, *params], eps=1e-6, atol=1e-6, rtol=1e-4)


def out(layer, *args):
    with dt.no_grad():
        return layer(*args).numpy()


# -- numpy references ---------------------------------------------------------
def conv2d_ref(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return y + b[None, :, None, None]


def pool_ref(x, k, stride, padding, reduce):
    pad_value = -np.inf if reduce is np.max else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=pad_value)
    ho = (x.shape[2] + 2 * padding - k) // stride + 1
    wo = (x.shape[3] + 2 * padding - k) // stride + 1
    y = np.zeros(x.shape[:2] + (ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k], axis=(2, 3))
    return y


def gelu_ref(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def log_softmax_ref(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# -- layers with parameters ----------------------------------------------------
def test_linear():
    layer = nn.Linear(5, 3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    ref = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(out(layer, dt.tensor(x)), ref, rtol=1e-5, atol=1e-6)
    check_layer(layer, rng.standard_normal((4, 5)))
    check_layer(nn.Linear(3, 2, bias=False), rng.standard_normal((2, 3, 3)))    # batched leading dims


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv2d(stride, padding):
    layer = nn.Conv2d(2, 3, 3, stride=stride, padding=padding)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    ref = conv2d_ref(x, layer.weight.data, layer.bias.data, stride, padding)
    np.testing.assert_allclose(out(layer, dt.tensor(x)), ref, rtol=1e-4, atol=1e-5)
    check_layer(layer, rng.standard_normal((2, 2, 5, 5)))


def test_layer_norm():
    layer = nn.LayerNorm(4)
    layer.weight.data[...] = rng.standard_normal(4)
    layer.bias.data[...] = rng.standard_normal(4)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * layer.weight.data + layer.bias.data
    np.testing.assert_allclose(out(layer, dt.tensor(x)), ref, rtol=1e-4, atol=1e-5)
    check_layer(layer, rng.standard_normal((3, 4)))
    check_layer(nn.LayerNorm((2, 3)), rng.standard_normal((2, 2, 3)))


def test_embedding():
    layer = nn.Embedding(6, 3)
    idx = np.array([[0, 5, 2], [2, 2, 1]])
    np.testing.assert_array_equal(out(layer, idx), layer.weight.data[idx])
    layer.double()

    def fn(w):
        return functional_call(layer, {"weight": w}, idx)

    assert gradcheck(fn, [layer.weight.data.copy()], atol=1e-6, rtol=1e-4)
    # repeated indices accumulate: d sum(embed(idx)) / dW counts occurrences
    w = dt.tensor(layer.weight.data, requires_grad=True)
    functional_call(layer, {"weight": w}, idx).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], np.bincount(idx.ravel(), minlength=6))


# -- parameter-free layers --------------------------------------------------------
@pytest.mark.parametrize("layer,ref", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.GELU(), gelu_ref),
    (nn.Softmax(axis=-1), lambda x: np.exp(log_softmax_ref(x))),
    (nn.LogSoftmax(axis=0), lambda x: log_softmax_ref(x, axis=0)),
    (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1)),
    (nn.Identity(), lambda x: x),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_activation_and_shape_layers(layer, ref):
    x = rng.standard_normal((3, 2, 4))
    x[np.abs(x) < 1e-3] = 0.5           # keep ReLU's kink away from finite differences
    np.testing.assert_allclose(out(layer, dt.tensor(x.astype(np.float32))), ref(x).astype(np.float32),
                               rtol=1e-5, atol=1e-6)
    check_layer(layer, x)


@pytest.mark.parametrize("cls,reduce,padding", [(nn.MaxPool2d, np.max, 1), (nn.AvgPool2d, np.mean, 0)])
def test_pooling(cls, reduce, padding):
    layer = cls(2, stride=2, padding=padding)
    x = rng.permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4) / 10.0   # distinct values: no max ties
    np.testing.assert_allclose(out(layer, dt.tensor(x)), pool_ref(x, 2, 2, padding, reduce), rtol=1e-12)
    check_layer(layer, x)
    assert out(cls(3, stride=1), dt.tensor(x)).shape == (2, 3, 2, 2)


def test_dropout_gradient_follows_the_mask():
    layer = nn.Dropout(0.25)
    x = rng.standard_normal((6, 5))

    def fn(x):
        dt.manual_seed(3)              # the same mask on every call of the gradcheck
        return layer(x)

    assert gradcheck(fn, [x])
    dt.manual_seed(3)
    y = layer(dt.tensor(x)).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    layer.eval()
    np.testing.assert_array_equal(layer(dt.tensor(x)).numpy(), x)


def test_losses():
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    ce = nn.CrossEntropyLoss()
    expected = -log_softmax_ref(logits)[np.arange(5), labels].mean()
    np.testing.assert_allclose(out(ce, dt.tensor(logits), labels), expected, rtol=1e-12)
    assert gradcheck(lambda z: ce(z, labels), [logits])

    pred, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    mse = nn.MSELoss()
    np.testing.assert_allclose(out(mse, dt.tensor(pred), dt.tensor(target)), ((pred - target) ** 2).mean())
    assert gradcheck(lambda p, t: mse(p, t), [pred, target])
    np.testing.assert_allclose(out(nn.MSELoss(reduction="sum"), dt.tensor(pred), dt.tensor(target)),
                               ((pred - target) ** 2).sum())


def test_gradcheck_through_a_small_cnn():
    dt.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 3), nn.GELU())
    check_layer(model, rng.standard_normal((2, 1, 4, 4)))


def test_layer_norm_without_bias_scales_only():
    """nn.LayerNorm(..., bias=False) as PyTorch >= 2.1: a weight, no bias parameter or state-dict key."""
    rng = np.random.default_rng(5)
    layer = nn.LayerNorm(4, bias=False)
    assert layer.bias is None and list(layer.state_dict()) == ["weight"]
    layer.weight.data[...] = np.array([1.0, 2.0, -1.0, 0.5], np.float32)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(layer(dt.tensor(x)).numpy(), (x - mu) / np.sqrt(var + 1e-5) * layer.weight.data,
                               rtol=1e-5, atol=1e-6)
    check_layer(nn.LayerNorm(4, bias=False), rng.standard_normal((2, 4)))
