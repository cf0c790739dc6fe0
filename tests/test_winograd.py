"""Winograd F(2x2, 3x3) convolution: the transform kernels against numpy references (float32 and
float64, every output written), their adjoints by the dot-product identity, the op's Winograd path
against its im2col path and PyTorch-style float64 gradchecks through it, and the per-shape choice."""
import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F
import disttrain.ops.conv as conv_op
from disttrain.autograd import gradcheck
from disttrain.kernels import winograd as KW

rng = np.random.default_rng(2015)

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def randn(*shape):
    return rng.standard_normal(shape)


def tiles(h, w, ph, pw):
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    return oh, ow, (oh + 1) // 2, (ow + 1) // 2


# -- numpy references --------------------------------------------------------
def ref_input_transform(x, ph, pw, th, tw):
    """V (16, C, B*th*tw): B^T d B of each 4x4 patch of the zero-padded input, tile-major per image."""
    b, c, h, w = x.shape
    xp = np.zeros((b, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    d = np.empty((b, c, th, tw, 4, 4))
    for ty in range(th):
        for tx in range(tw):
            d[:, :, ty, tx] = xp[:, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]
    v = BT @ d @ BT.T
    return v.transpose(4, 5, 1, 0, 2, 3).reshape(16, c, b * th * tw)


def ref_output_transform(m, bias, b, th, tw, oh, ow):
    o = m.shape[1]
    t = m.reshape(4, 4, o, b, th, tw).transpose(3, 2, 4, 5, 0, 1)     # (B, O, th, tw, 4, 4)
    y = AT @ t @ AT.T                                                  # (B, O, th, tw, 2, 2)
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(b, o, 2 * th, 2 * tw)
    return y[:, :, :oh, :ow] + bias[None, :, None, None]


SHAPES = [  # (B, C, H, W, ph, pw): even/odd outputs, padding 0/1/2 and uneven, one tile, batch 1
    (2, 3, 6, 6, 0, 0), (3, 2, 7, 9, 1, 1), (1, 5, 5, 4, 0, 1), (2, 1, 3, 3, 0, 0),
    (2, 2, 4, 5, 2, 1), (1, 3, 11, 8, 1, 0), (2, 2, 3, 3, 2, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_transform_kernels_match_numpy_and_adjoints_are_exact(shape, dtype):
    b, c, h, w, ph, pw = shape
    o = 4
    oh, ow, th, tw = tiles(h, w, ph, pw)
    t = b * th * tw
    tol = 1e-5 if dtype == np.float32 else 1e-12
    x = randn(b, c, h, w).astype(dtype)
    # input transform into a V buffer wider than the block (the op's last, partial block): the
    # block's columns all written, the rest untouched
    v = np.full((16, c, t + 5), np.nan, dtype)
    KW.input_transform(x, ph, pw, th, tw, v)
    np.testing.assert_allclose(v[:, :, :t], ref_input_transform(x.astype(float), ph, pw, th, tw),
                               rtol=tol, atol=tol)
    assert np.isnan(v[:, :, t:]).all()
    vt = np.full((16, t + 2, c), np.nan, dtype)                    # the transposed variant
    KW.input_transform_t(x, ph, pw, th, tw, vt)
    np.testing.assert_array_equal(vt[:, :t], v[:, :, :t].transpose(0, 2, 1))
    assert np.isnan(vt[:, t:]).all()
    # output transform with bias, every output element written
    m = randn(16, o, t).astype(dtype)
    bias = randn(o).astype(dtype)
    y = np.full((b, o, oh, ow), np.nan, dtype)
    KW.output_transform(m, bias, th, tw, y)
    np.testing.assert_allclose(y, ref_output_transform(m.astype(float), bias, b, th, tw, oh, ow),
                               rtol=tol, atol=tol)
    # the adjoints: <T a, r> == <a, T* r> for random a, r (so backward is the exact transpose)
    dv = randn(16, c, t).astype(dtype)
    gx = np.full(x.shape, np.nan, dtype)
    KW.input_transform_adjoint(dv, ph, pw, th, tw, gx)
    lhs = float(np.sum(ref_input_transform(x.astype(float), ph, pw, th, tw) * dv))
    assert abs(lhs - float(np.sum(x.astype(float) * gx))) <= tol * 10 * max(1.0, abs(lhs))
    g = randn(b, o, oh, ow).astype(dtype)
    dm = np.full((16, o, t), np.nan, dtype)
    KW.output_transform_adjoint(g, th, tw, dm)
    lhs = float(np.sum(ref_output_transform(m.astype(float), np.zeros(o), b, th, tw, oh, ow) * g))
    assert abs(lhs - float(np.sum(m.astype(float) * dm))) <= tol * 10 * max(1.0, abs(lhs))


# -- the op ------------------------------------------------------------------
def conv_both_ways(x, w, b, padding, monkeypatch, needs=(True, True, True)):
    """Output and gradients of conv2d through the Winograd path and through im2col."""
    res = {}
    g = None
    for path in (True, False):
        monkeypatch.setattr(conv_op, "WINOGRAD", path)
        xt = dt.tensor(x, requires_grad=needs[0])
        wt = dt.tensor(w, requires_grad=needs[1])
        bt = None if b is None else dt.tensor(b, requires_grad=needs[2])
        out = F.conv2d(xt, wt, bt, 1, padding)
        if g is None:
            g = randn(*out.shape).astype(x.dtype)
        out.backward(dt.tensor(g))
        res[path] = [out.numpy()] + [None if t is None or t.grad is None else t.grad.numpy()
                                     for t in (xt, wt, bt)]
    return res[True], res[False]


OP_SHAPES = [  # (N, C, O, H, W, padding, bias)
    (2, 3, 5, 7, 9, 1, True), (1, 17, 16, 5, 4, 0, False), (3, 16, 20, 8, 8, 1, True),
    (2, 4, 3, 3, 3, 2, True), (4, 7, 6, 10, 7, (2, 1), False), (1, 1, 1, 3, 4, 0, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", OP_SHAPES)
def test_winograd_path_equals_im2col(shape, dtype, monkeypatch):
    n, c, o, h, w, padding, has_bias = shape
    x, wt = randn(n, c, h, w).astype(dtype), randn(o, c, 3, 3).astype(dtype)
    b = randn(o).astype(dtype) if has_bias else None
    wino, im2col = conv_both_ways(x, wt, b, padding, monkeypatch)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, r in zip(wino, im2col):
        if r is None:
            assert a is None
            continue
        assert a.dtype == dtype and a.shape == r.shape
        # relative to the largest entry: Winograd's rounding differs from direct summation's
        assert np.abs(a - r).max() <= tol * np.abs(r).max()


def test_winograd_blocks_partial_and_partial_grads(monkeypatch):
    # blocks of 2 images over a batch of 5 (the last block partial), and only some inputs needing a
    # gradient (backward skips V's recomputation or the input-gradient GEMMs)
    x, w, b = randn(5, 3, 6, 7), randn(4, 3, 3, 3), randn(4)
    monkeypatch.setattr(conv_op, "WINOGRAD_BLOCK_BYTES", 2 * 16 * (3 + 4) * 3 * 3 * 8)
    assert conv_op._block_images(5, 3, 4, 9, 8) == 2
    for needs in ((True, True, True), (False, True, True), (True, False, False)):
        wino, im2col = conv_both_ways(x, w, b, 1, monkeypatch, needs)
        for a, r in zip(wino, im2col):
            assert (a is None) == (r is None)
            if r is not None:
                np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_empty_batch_both_paths(monkeypatch):
    x, w, b = np.zeros((0, 8, 6, 6), np.float32), randn(8, 8, 3, 3).astype(np.float32), randn(8)
    wino, im2col = conv_both_ways(x, w, b.astype(np.float32), 1, monkeypatch)
    for a, r in zip(wino, im2col):
        np.testing.assert_array_equal(a, r)
    assert wino[0].shape == (0, 8, 6, 6) and not wino[2].any()


@pytest.mark.parametrize("padding", [0, 1, (2, 1)])
def test_winograd_gradcheck_float64(padding, monkeypatch):
    monkeypatch.setattr(conv_op, "WINOGRAD", True)
    monkeypatch.setattr(conv_op, "WINOGRAD_BLOCK_BYTES", 1)        # one image per block
    calls = []
    forward = conv_op._winograd_forward
    monkeypatch.setattr(conv_op, "_winograd_forward", lambda *a: calls.append(1) or forward(*a))
    x, w, b = randn(2, 3, 5, 6), randn(4, 3, 3, 3), randn(4)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding), [x, w, b])
    assert gradcheck(lambda x, w: F.conv2d(x, w, None, 1, padding), [x, w])
    assert calls                                                    # the path was taken


def test_use_winograd_choice(monkeypatch):
    assert conv_op.use_winograd(32, 64, 3, 3, 1, 1)
    assert conv_op.use_winograd(8, 16, 3, 3, 1, 1)
    assert not conv_op.use_winograd(1, 32, 3, 3, 1, 1)          # conv 1->32: im2col is already fast
    assert not conv_op.use_winograd(3, 16, 3, 3, 1, 1)
    assert not conv_op.use_winograd(32, 4, 3, 3, 1, 1)
    assert not conv_op.use_winograd(64, 64, 3, 3, 2, 2)         # stride 2
    assert not conv_op.use_winograd(64, 64, 5, 5, 1, 1)         # LeNet's 5x5
    assert not conv_op.use_winograd(64, 64, 3, 1, 1, 1)
    monkeypatch.setattr(conv_op, "WINOGRAD", True)
    assert conv_op.use_winograd(1, 1, 3, 3, 1, 1)
    assert not conv_op.use_winograd(1, 1, 3, 3, 1, 2)
    monkeypatch.setattr(conv_op, "WINOGRAD", False)
    assert not conv_op.use_winograd(64, 64, 3, 3, 1, 1)
