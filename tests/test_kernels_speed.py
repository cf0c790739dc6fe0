"""The cache-blocked convolution kernels and the fused masked/causal softmax: numpy
references as the oracle (kernels called directly, float32 and float64), float64
gradchecks of the ops, and clear errors."""
import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F
from disttrain.autograd import gradcheck
from disttrain.kernels import conv as KC
from disttrain.kernels import softmax as KS
from disttrain.ops import masked_softmax

rng = np.random.default_rng(14)


def randn(*shape):
    return rng.standard_normal(shape)


# -- numpy references --------------------------------------------------------
def ref_im2col(x, kh, kw, sh, sw, ph, pw):
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.empty((c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i:i + sh * oh:sh, j:j + sw * ow:sw][:, :oh, :ow]
    return cols.reshape(c * kh * kw, oh * ow)


def ref_masked_softmax(x, mask, causal):
    s = x.astype(np.float64)
    if mask is not None:
        s = s + (np.where(mask, 0.0, -np.inf) if mask.dtype == bool else mask)
    if causal:
        tq, tk = x.shape[-2:]
        s = np.where(np.tril(np.ones((tq, tk), bool)), s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


GEOMETRIES = [(3, 3, 1, 1, 0, 0), (3, 3, 1, 1, 1, 1), (3, 2, 2, 1, 1, 0), (5, 5, 2, 3, 2, 2), (1, 1, 1, 1, 0, 0),
              (2, 3, 3, 2, 1, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kh,kw,sh,sw,ph,pw", GEOMETRIES)
def test_im2col_col2im_match_numpy(dtype, kh, kw, sh, sw, ph, pw):
    x = randn(3, 7, 8).astype(dtype)
    ref = ref_im2col(x, kh, kw, sh, sw, ph, pw)
    oh, ow = (7 + 2 * ph - kh) // sh + 1, (8 + 2 * pw - kw) // sw + 1
    cols = np.full((2,) + ref.shape, np.nan, dtype)      # every entry must be written, zeros included
    KC.im2col(np.stack([x, 2 * x]), kh, kw, sh, sw, ph, pw, oh, ow, cols)
    np.testing.assert_array_equal(cols[0], ref)
    np.testing.assert_array_equal(cols[1], 2 * ref)
    # col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>, and equals the scatter of the reference
    c = randn(*ref.shape).astype(dtype)
    gx = np.full((1,) + x.shape, np.nan, dtype)
    KC.col2im(c[None], kh, kw, sh, sw, ph, pw, oh, ow, gx)
    gx = gx[0]
    ref_gx = np.zeros((3, 7 + 2 * ph, 8 + 2 * pw))
    c5 = c.reshape(3, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            ref_gx[:, i:i + sh * oh:sh, j:j + sw * ow:sw][:, :oh, :ow] += c5[:, i, j]
    ref_gx = ref_gx[:, ph:ph + 7, pw:pw + 8]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, ref_gx, rtol=tol, atol=tol)


@pytest.mark.parametrize("padding", [0, 1, (2, 0)])
def test_conv2d_batch_gradcheck_and_float32(padding, monkeypatch):
    import disttrain.ops.conv as conv_op
    # columns rebuilt in backward, in small groups: the padded float64 cases run in groups of 2 images,
    # the last one partial (the other tests run these small layers with the columns kept)
    monkeypatch.setattr(conv_op, "KEEP_BYTES", 0)
    monkeypatch.setattr(conv_op, "COLS_BYTES", 2 * 2 * 9 * 30 * 8)
    # several images (the op loops over them), the 1x1 path and a padded one
    x, w, b = randn(3, 2, 6, 5), randn(4, 2, 3, 3), randn(4)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding), [x, w, b])
    assert gradcheck(lambda x, w: F.conv2d(x, w), [x, randn(3, 2, 1, 1)])
    x32 = dt.tensor(x.astype(np.float32), requires_grad=True)
    w32 = dt.tensor(w.astype(np.float32), requires_grad=True)
    out = F.conv2d(x32, w32, padding=padding)
    g = randn(*out.shape)
    out.backward(dt.tensor(g.astype(np.float32)))
    x64 = dt.tensor(x, requires_grad=True)
    w64 = dt.tensor(w, requires_grad=True)
    F.conv2d(x64, w64, padding=padding).backward(dt.tensor(g))
    assert out.dtype == x32.grad.dtype == w32.grad.dtype == np.float32
    np.testing.assert_allclose(x32.grad.numpy(), x64.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w32.grad.numpy(), w64.grad.numpy(), rtol=1e-4, atol=1e-4)


# -- masked / causal softmax -------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_causal_and_masked_softmax_kernels_match_numpy(dtype):
    x = randn(4, 5, 7).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    mask = np.where(randn(1, 5, 7) > 0.5, -np.inf, randn(1, 5, 7)).astype(dtype)
    mask[:, :, 0] = 0                                           # every row keeps a key
    for scale in (1.0, 0.3):
        for causal in (False, True):
            out = np.full(x.shape, np.nan, dtype)
            KS.scaled_softmax_forward(x, scale, causal, out)
            np.testing.assert_allclose(out, ref_masked_softmax(scale * x, None, causal), rtol=tol, atol=tol)
            out = np.full(x.shape, np.nan, dtype)
            KS.masked_softmax_forward(x, mask, scale, causal, out)
            np.testing.assert_allclose(out, ref_masked_softmax(scale * x, mask, causal), rtol=tol, atol=tol)
            g = randn(*x.shape).astype(dtype)
            y = ref_masked_softmax(scale * x, None, causal).astype(dtype)
            gin = np.full(x.shape, np.nan, dtype)
            KS.scaled_softmax_backward(g, y, scale, causal, gin)
            ref = scale * y * (g - (g * y).sum(axis=-1, keepdims=True))
            np.testing.assert_allclose(gin, ref, rtol=10 * tol, atol=10 * tol)


def test_masked_softmax_op_values_and_gradcheck():
    x = randn(2, 3, 4, 4)
    np.testing.assert_allclose(masked_softmax(dt.tensor(x), causal=True).numpy(),
                               ref_masked_softmax(x, None, True), rtol=1e-12, atol=1e-15)
    keep = np.array([[True, True, False, True]])                 # boolean: True keeps the key
    np.testing.assert_allclose(masked_softmax(dt.tensor(x), keep).numpy(), ref_masked_softmax(x, keep, False),
                               rtol=1e-12, atol=1e-15)
    add = randn(2, 1, 4, 4)                                     # per-sample additive mask, with a gradient
    np.testing.assert_allclose(masked_softmax(dt.tensor(x), add, True).numpy(),
                               ref_masked_softmax(x, add, True), rtol=1e-12, atol=1e-15)
    assert gradcheck(lambda t: masked_softmax(t, causal=True), [x])
    assert gradcheck(lambda t: masked_softmax(t), [randn(3, 5)])
    assert gradcheck(lambda t: masked_softmax(t, keep, True), [x])
    assert gradcheck(lambda t, m: masked_softmax(t, m, True), [x, add])
    assert gradcheck(lambda t, m: masked_softmax(t, m), [randn(3, 2, 5), randn(2, 5)])
    assert gradcheck(lambda t, m: masked_softmax(t, m, True, 0.25), [x, add])
    np.testing.assert_allclose(masked_softmax(dt.tensor(x), add, True, 0.25).numpy(),
                               ref_masked_softmax(0.25 * x, add, True), rtol=1e-12, atol=1e-15)
    # every key of a row dropped: NaN, as in PyTorch
    assert np.isnan(masked_softmax(dt.tensor(x), np.zeros((4, 4), bool)).numpy()).all()


def test_masked_softmax_errors():
    with pytest.raises(ValueError, match=r"masked_softmax: mask of shape \(3, 3\) does not broadcast .*\(2, 4, 4\)"):
        masked_softmax(dt.tensor(np.zeros((2, 4, 4))), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"masked_softmax: scores must be at least 2-D.*\(4,\)"):
        masked_softmax(dt.tensor(np.zeros(4)), causal=True)
    with pytest.raises(ValueError, match=r"masked_softmax: scale must be a positive finite number, got -1"):
        masked_softmax(dt.tensor(np.zeros((2, 2))), scale=-1)


# -- GELU in float32: the rational erf --------------------------------------
def test_float32_gelu_matches_float64_erf():
    import math
    from disttrain.kernels.activation import gelu_backward, gelu_forward
    x = np.concatenate([np.linspace(-8, 8, 4001), randn(1000) * 3])
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    dref = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
                     for v in x])
    x32 = x.astype(np.float32)
    out = np.empty_like(x32)
    gelu_forward(x32, out, False)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-6)
    gin = np.empty_like(x32)
    gelu_backward(np.ones_like(x32), x32, gin, False)
    np.testing.assert_allclose(gin, dref, rtol=2e-6, atol=2e-6)


def test_vecmath_against_math():
    import math
    from disttrain.kernels.vecmath import erf32, exp_neg
    xs = np.linspace(-6, 6, 2401)
    assert max(abs(erf32(v) - math.erf(v)) for v in xs) < 1e-7
    us = np.concatenate([np.linspace(0, 1, 501), np.linspace(0, 103, 2061)])
    assert max(abs(exp_neg(u) - math.exp(-u)) / math.exp(-u) for u in us) < 3e-8
    assert exp_neg(np.inf) == 0.0 and np.float32(exp_neg(104.0)) == 0 and np.isnan(exp_neg(np.nan))
    # float32 softmax through it: a masked (-inf) key gets exactly 0
    x = randn(2, 3, 4).astype(np.float32)
    mask = np.zeros((1, 3, 4), np.float32)
    mask[0, :, 2] = -np.inf
    out = np.empty_like(x)
    KS.masked_softmax_forward(x, mask, 1.0, False, out)
    assert (out[:, :, 2] == 0).all()
    np.testing.assert_allclose(out, ref_masked_softmax(x, mask, False), rtol=1e-6, atol=1e-7)
