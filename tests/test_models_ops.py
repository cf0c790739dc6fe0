"""Attention, batch norm, cross-entropy options and gradient clipping: float64 gradchecks and
equality with PyTorch's definitions (written out in numpy here; torch is never needed)."""
import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F
from disttrain import nn
from disttrain.autograd import gradcheck

rng = np.random.default_rng(0)


# -- scaled_dot_product_attention ----------------------------------------------------------------
def sdpa_reference(q, k, v, mask=None, causal=False, scale=None):
    """torch.nn.functional.scaled_dot_product_attention's documented reference implementation."""
    L, S = q.shape[-2], k.shape[-2]
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    bias = np.zeros((L, S))
    if causal:
        bias[~np.tril(np.ones((L, S), bool))] = -np.inf
    if mask is not None:
        bias = np.where(mask, 0.0, -np.inf) if mask.dtype == bool else bias + mask
    w = q @ np.swapaxes(k, -1, -2) * scale + bias
    w = np.exp(w - w.max(axis=-1, keepdims=True))
    return (w / w.sum(axis=-1, keepdims=True)) @ v


@pytest.mark.parametrize("L,S", [(5, 5), (3, 6), (6, 4)])
@pytest.mark.parametrize("kind", ["plain", "causal", "bool_mask", "float_mask", "scale"])
def test_attention_matches_reference_and_gradchecks(kind, L, S):
    q, k, v = rng.standard_normal((2, 3, L, 4)), rng.standard_normal((2, 3, S, 4)), rng.standard_normal((2, 3, S, 2))
    kw = {}
    if kind == "causal":
        kw["is_causal"] = True
    elif kind == "bool_mask":
        mask = rng.random((L, S)) > 0.4
        mask[:, 0] = True
        kw["attn_mask"] = mask
    elif kind == "float_mask":
        kw["attn_mask"] = rng.standard_normal((2, 1, L, S))
    elif kind == "scale":
        kw["scale"] = 0.3
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    ref = sdpa_reference(q, k, v, kw.get("attn_mask"), kw.get("is_causal", False), kw.get("scale"))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-13)
    if kind == "float_mask":      # the additive mask gets a gradient too
        assert gradcheck(lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m),
                         (q, k, v, kw["attn_mask"]))
    else:
        assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **kw), (q, k, v))


def test_attention_float32_causal_kernel_and_dropout():
    q = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), sdpa_reference(*(q.astype(np.float64),) * 3, causal=True), rtol=2e-5,
                               atol=2e-6)
    qd = q.astype(np.float64)

    def dropped(a, b, c):
        dt.manual_seed(3)        # the same dropout mask at every evaluation
        return F.scaled_dot_product_attention(a, b, c, is_causal=True, dropout_p=0.3)
    assert gradcheck(dropped, (qd, qd * 0.5, qd + 1))
    # dropout zeroes attention weights and scales the rest by 1/(1-p): with v = identity rows the
    # output rows are the dropped weights
    eye = np.broadcast_to(np.eye(7), (2, 2, 7, 7))
    dt.manual_seed(1)
    w = F.scaled_dot_product_attention(qd, qd, eye, dropout_p=0.5).numpy()
    full = sdpa_reference(qd, qd, eye)
    kept = w != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(w[kept], 2 * full[kept], rtol=1e-12)


def test_attention_errors_name_shapes():
    q = np.zeros((1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"q \(1, 2, 3, 4\), k \(1, 2, 3, 5\)"):
        F.scaled_dot_product_attention(q, np.zeros((1, 2, 3, 5)), q)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool), is_causal=True)


# -- batch norm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 2)])
def test_batch_norm_gradcheck_train_and_eval(shape):
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    assert gradcheck(lambda a, c, d: F.batch_norm(a, rm.copy(), rv.copy(), c, d, training=True), (x, w, b))
    rm2, rv2 = rng.standard_normal(3), rng.random(3) + 0.5
    assert gradcheck(lambda a, c, d: F.batch_norm(a, rm2, rv2, c, d, training=False), (x, w, b))


def test_batchnorm_modules_follow_pytorch():
    bn = nn.BatchNorm2d(3, momentum=0.2).double()
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64
    x = rng.standard_normal((4, 3, 2, 5)) * 3 - 1
    out = bn(dt.tensor(x)).numpy()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    ref = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    n = x.size / 3
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.8 + 0.2 * var * n / (n - 1), rtol=1e-12)   # unbiased
    assert int(bn.num_batches_tracked.numpy()) == 1
    bn.eval()
    y = rng.standard_normal((2, 3, 2, 5))
    np.testing.assert_allclose(bn(dt.tensor(y)).numpy(), (y - bn.running_mean.numpy()[None, :, None, None]) /
                               np.sqrt(bn.running_var.numpy()[None, :, None, None] + 1e-5), rtol=1e-10)
    # momentum=None: the cumulative average of the batches' statistics
    cma = nn.BatchNorm1d(2, momentum=None, affine=False).double()
    batches = [rng.standard_normal((5, 2)) for _ in range(3)]
    for xb in batches:
        cma(dt.tensor(xb))
    np.testing.assert_allclose(cma.running_mean.numpy(), np.mean([xb.mean(axis=0) for xb in batches], axis=0))
    # no running statistics: batch statistics in eval mode too
    free = nn.BatchNorm1d(2, track_running_stats=False).double().eval()
    assert "running_mean" not in free.state_dict()
    np.testing.assert_allclose(free(dt.tensor(batches[0])).numpy().mean(axis=0), 0, atol=1e-12)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-d input"):
        nn.BatchNorm2d(3)(dt.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(2)(dt.tensor(np.zeros((1, 2))))


def test_convert_sync_batchnorm_keeps_parameters_and_one_process_equals_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).double()
    before = model.state_dict()
    x = rng.standard_normal((3, 1, 5, 5))
    ref = model(dt.tensor(x)).numpy()
    model.load_state_dict(before)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted[1], nn.SyncBatchNorm) and list(converted.state_dict()) == list(before)
    np.testing.assert_allclose(converted(dt.tensor(x)).numpy(), ref, rtol=1e-12)


# -- cross-entropy options -------------------------------------------------------------------------
def ce_reference(x, y, reduction, ignore_index, smoothing):
    """PyTorch's definition with the class axis at 1."""
    x = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    y = y.reshape(-1)
    keep = y != ignore_index
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    picked = x[np.arange(len(y)), np.where(keep, y, 0)]
    losses = ((1 - smoothing) * (lse - picked) + smoothing * (lse - x.mean(1))) * keep
    if reduction == "none":
        return losses
    return losses.sum() / (keep.sum() if reduction == "mean" else 1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_ignore_index_label_smoothing_and_spatial(reduction, smoothing):
    x = rng.standard_normal((3, 5, 4))            # (N, C, d1): e.g. tokens with the classes at axis 1
    y = rng.integers(0, 5, (3, 4))
    y[0, 1] = y[2, 3] = -1
    out = F.cross_entropy(x, y, reduction=reduction, ignore_index=-1, label_smoothing=smoothing)
    ref = ce_reference(x, y, reduction, -1, smoothing)
    np.testing.assert_allclose(out.numpy().reshape(-1) if reduction == "none" else out.numpy(), ref, rtol=1e-12)
    if reduction == "none":
        assert out.shape == (3, 4) and out.numpy()[0, 1] == 0
    assert gradcheck(lambda a: F.cross_entropy(a, y, reduction=reduction, ignore_index=-1,
                                               label_smoothing=smoothing), (x,))
    # the flattened token layout gives the same mean
    flat = F.cross_entropy(np.moveaxis(x, 1, -1).reshape(-1, 5), y.reshape(-1), ignore_index=-1,
                           label_smoothing=smoothing)
    if reduction == "mean":
        np.testing.assert_allclose(flat.numpy(), out.numpy(), rtol=1e-12)
    loss = nn.CrossEntropyLoss(ignore_index=-1, label_smoothing=smoothing)
    np.testing.assert_allclose(loss(dt.tensor(x), dt.tensor(y)).numpy(), ce_reference(x, y, "mean", -1, smoothing))


def test_cross_entropy_default_ignores_minus_100():
    x = rng.standard_normal((4, 3))
    y = np.array([0, -100, 2, 1])
    np.testing.assert_allclose(F.cross_entropy(x, y).numpy(), ce_reference(x, y, "mean", -100, 0.0))


# -- gradient clipping -----------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm(norm_type):
    ps = [dt.tensor(np.zeros((3, 4)), requires_grad=True), dt.tensor(np.zeros(5), requires_grad=True)]
    gs = [rng.standard_normal((3, 4)) * 3, rng.standard_normal(5) * 3]
    for p, g in zip(ps, gs):
        p.grad = g
    allg = np.concatenate([g.ravel() for g in gs])
    total = np.abs(allg).max() if norm_type == float("inf") else np.linalg.norm(allg, norm_type)
    norm = nn.utils.clip_grad_norm_(ps, 1.5, norm_type=norm_type)
    np.testing.assert_allclose(float(norm), total, rtol=1e-12)
    clipped = np.concatenate([p.grad.numpy().ravel() for p in ps])
    np.testing.assert_allclose(clipped, allg * 1.5 / (total + 1e-6), rtol=1e-12)
    # below the limit nothing changes
    assert float(nn.utils.clip_grad_norm_(ps, 100.0, norm_type=norm_type)) <= 1.5 + 1e-9
    np.testing.assert_array_equal(np.concatenate([p.grad.numpy().ravel() for p in ps]), clipped)


def test_clip_grad_nonfinite_and_value():
    p = dt.tensor(np.zeros(3), requires_grad=True)
    p.grad = np.array([1.0, np.inf, -2.0])
    with pytest.raises(RuntimeError, match="total norm"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    p.grad = np.array([0.5, -3.0, 2.0])
    nn.utils.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [0.5, -1.0, 1.0])


@pytest.mark.parametrize("ignore_index", [-100, 2, 4])
def test_cross_entropy_ignore_index_inside_and_outside_the_class_range(ignore_index):
    # An ignore_index outside [0, C) is first met by the kernel as an out-of-range label (then the
    # labels are masked and the kernel rerun); one inside [0, C) is masked before the kernel runs.
    x = rng.standard_normal((6, 5))
    y = np.array([1, 3, 0, 4, 2, 1])
    y[[2, 5]] = ignore_index
    for reduction in ("mean", "sum", "none"):
        out = F.cross_entropy(x, y, reduction=reduction, ignore_index=ignore_index)
        np.testing.assert_allclose(out.numpy(), ce_reference(x, y, reduction, ignore_index, 0.0), rtol=1e-12)
    assert gradcheck(lambda a: F.cross_entropy(a, y, ignore_index=ignore_index), (x,))
    a = dt.tensor(x, requires_grad=True)
    F.cross_entropy(a, y, ignore_index=ignore_index).backward()
    assert np.all(a.grad.numpy()[[2, 5]] == 0)
    # nothing ignored: the same as without ignore_index
    z = np.array([1, 3, 0, 4, 0, 1])
    z[z == ignore_index] = 1
    np.testing.assert_allclose(F.cross_entropy(x, z, ignore_index=ignore_index).numpy(),
                               ce_reference(x, z, "mean", -7, 0.0), rtol=1e-12)


def test_cross_entropy_out_of_range_label_is_named_even_next_to_ignored_ones():
    x = rng.standard_normal((4, 3))
    for y, bad in (([0, 7, -100, 1], "label 7 (sample 1)"), ([-100, 1, 5, 0], "label 5 (sample 2)"),
                   ([0, -100, 2, -3], "label -3 (sample 3)")):
        with pytest.raises(ValueError, match=r"cross_entropy: " + bad.replace("(", r"\(").replace(")", r"\)")):
            F.cross_entropy(x, np.array(y))
