"""Tensor methods with PyTorch's semantics: values against numpy, float64 gradchecks."""
import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def test_size_numel_dim():
    t = dt.tensor(np.zeros((2, 3, 4)))
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and t.nelement() == 24 and t.dim() == 3
    with pytest.raises(IndexError, match=r"size: dimension 3 is out of range for a tensor of shape \(2, 3, 4\)"):
        t.size(3)


def test_transpose_two_ints_swaps_numpy_forms_permute():
    a = randn(2, 3, 4)
    t = dt.tensor(a)
    np.testing.assert_array_equal(t.transpose(1, 2).numpy(), a.swapaxes(1, 2))
    np.testing.assert_array_equal(t.transpose(-1, 0).numpy(), a.swapaxes(-1, 0))
    m = dt.tensor(randn(2, 3))
    np.testing.assert_array_equal(m.transpose(0, 1).numpy(), m.numpy().T)     # the old trap: was unchanged
    np.testing.assert_array_equal(t.transpose().numpy(), a.transpose())        # numpy forms keep numpy meaning
    np.testing.assert_array_equal(t.transpose((2, 0, 1)).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.permute((1, 2, 0)).numpy(), a.transpose(1, 2, 0))
    np.testing.assert_array_equal(m.t().numpy(), m.numpy().T)
    np.testing.assert_array_equal(t.mT.numpy(), a.swapaxes(-2, -1))
    with pytest.raises(ValueError, match="not a permutation"):
        t.permute(0, 0, 1)
    assert gradcheck(lambda x: x.transpose(0, 2) * 2, (a,))
    assert gradcheck(lambda x: x.permute(1, 2, 0).sum(0), (a,))


def test_max_min_dim_return_values_and_indices():
    a = randn(3, 4)
    t = dt.tensor(a, requires_grad=True)
    v, i = t.max(1)
    np.testing.assert_array_equal(v.numpy(), a.max(1))
    np.testing.assert_array_equal(i.numpy(), a.argmax(1))
    r = t.min(dim=0, keepdim=True)
    assert r.values.shape == (1, 4) and r.indices.shape == (1, 4)
    np.testing.assert_array_equal(r.indices.numpy()[0], a.argmin(0))
    np.testing.assert_array_equal(t.max(axis=1).numpy(), a.max(1))          # numpy spelling: values only
    np.testing.assert_array_equal(t.max(axis=0, keepdims=True).numpy(), a.max(0, keepdims=True))
    assert t.max().item() == a.max()
    np.testing.assert_array_equal(t.max(dt.tensor(np.zeros((3, 4)))).numpy(), np.maximum(a, 0))
    with pytest.raises(TypeError, match="both dim=1 and axis=0"):
        t.max(1, axis=0)
    # The gradient goes to the selected element only (ties included), as in PyTorch.
    tie = dt.tensor(np.array([[1.0, 3.0, 3.0]]), requires_grad=True)
    tie.max(1).values.sum().backward()
    np.testing.assert_array_equal(tie.grad.numpy(), [[0, 1, 0]])
    assert gradcheck(lambda x: x.max(1).values, (a,))
    assert gradcheck(lambda x: x.min(0, keepdim=True)[0], (a,))


def test_reductions_dim_keepdim_and_arg():
    a = randn(2, 3, 4)
    t = dt.tensor(a)
    np.testing.assert_allclose(t.sum(dim=1, keepdim=True).numpy(), a.sum(1, keepdims=True))
    np.testing.assert_allclose(t.sum((0, 2)).numpy(), a.sum((0, 2)))
    np.testing.assert_allclose(t.sum(dim=[0, 2]).numpy(), a.sum((0, 2)))
    np.testing.assert_allclose(t.mean(-1).numpy(), a.mean(-1))
    np.testing.assert_array_equal(t.argmax(dim=2, keepdim=True).numpy(), a.argmax(2)[..., None])
    np.testing.assert_array_equal(t.argmin(1).numpy(), a.argmin(1))
    assert t.argmax().item() == a.argmax()
    assert gradcheck(lambda x: x.mean(dim=1, keepdim=True), (a,))


def test_view_reshape_contiguous():
    a = randn(2, 3, 4)
    t = dt.tensor(a)
    assert t.view(6, 4).shape == (6, 4) and t.view(-1).shape == (24,) and t.view((4, 6)).shape == (4, 6)
    assert t.view(6, 4).numpy().base is not None                     # a view shares memory
    s = t.transpose(1, 2)
    with pytest.raises(RuntimeError, match=r"view: a tensor of shape \(2, 4, 3\).*contiguous\(\)\.view"):
        s.view(2, 12)
    assert not s.is_contiguous() and s.contiguous().is_contiguous()
    np.testing.assert_array_equal(s.contiguous().view(2, 12).numpy(), a.swapaxes(1, 2).reshape(2, 12))
    np.testing.assert_array_equal(s.reshape(2, 12).numpy(), a.swapaxes(1, 2).reshape(2, 12))
    # Splitting the last dimension of a slice is viewable, as in PyTorch.
    assert t[:, :, :2].view(2, 3, 2, 1).shape == (2, 3, 2, 1)
    np.testing.assert_array_equal(t.view_as(dt.tensor(np.zeros((4, 6)))).numpy(), a.reshape(4, 6))
    with pytest.raises(ValueError, match="cannot reshape"):
        t.view(5, 5)
    assert gradcheck(lambda x: x.transpose(0, 1).contiguous().view(-1), (a,))


def test_flatten_unsqueeze_squeeze():
    a = randn(2, 3, 4, 5)
    t = dt.tensor(a)
    assert t.flatten().shape == (120,) and t.flatten(1).shape == (2, 60) and t.flatten(1, 2).shape == (2, 12, 5)
    assert t.flatten(-2).shape == (2, 3, 20)
    assert dt.tensor(3.0).flatten().shape == (1,)
    assert t.unsqueeze(0).shape == (1, 2, 3, 4, 5) and t.unsqueeze(-1).shape == (2, 3, 4, 5, 1)
    assert t.unsqueeze(2).shape == (2, 3, 1, 4, 5)
    u = dt.tensor(np.zeros((1, 3, 1, 2)))
    assert u.squeeze().shape == (3, 2) and u.squeeze(0).shape == (3, 1, 2) and u.squeeze(1).shape == (1, 3, 1, 2)
    assert u.squeeze((0, 2)).shape == (3, 2)
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        t.flatten(2, 1)
    assert gradcheck(lambda x: x.flatten(1).unsqueeze(1).squeeze(1), (a,))


def test_split_chunk():
    a = randn(7, 3)
    t = dt.tensor(a)
    parts = t.split(3)
    assert [p.shape[0] for p in parts] == [3, 3, 1]
    np.testing.assert_array_equal(parts[2].numpy(), a[6:])
    parts = t.split([2, 5])
    assert [p.shape[0] for p in parts] == [2, 5]
    assert [p.shape[1] for p in t.split(2, dim=1)] == [2, 1]
    assert [p.shape[0] for p in t.chunk(3)] == [3, 3, 1]
    assert [p.shape[0] for p in dt.tensor(np.zeros(6)).chunk(4)] == [2, 2, 2]      # as PyTorch: 3 chunks
    with pytest.raises(ValueError, match=r"split: sizes \[2, 2\] do not add up to 7"):
        t.split([2, 2])
    assert gradcheck(lambda x: x.split(2, dim=0)[1].sum(1) * x.chunk(2, dim=1)[0][:2, 0], (a,))


def test_expand_repeat():
    a = randn(3, 1)
    t = dt.tensor(a)
    np.testing.assert_array_equal(t.expand(3, 4).numpy(), np.broadcast_to(a, (3, 4)))
    np.testing.assert_array_equal(t.expand(2, -1, 4).numpy(), np.broadcast_to(a, (2, 3, 4)))
    assert t.expand_as(dt.tensor(np.zeros((3, 5)))).shape == (3, 5)
    np.testing.assert_array_equal(t.repeat(2, 3).numpy(), np.tile(a, (2, 3)))
    np.testing.assert_array_equal(t.repeat(2, 1, 2).numpy(), np.tile(a, (2, 1, 2)))
    with pytest.raises(ValueError, match=r"expand: tensor of shape \(3, 1\) cannot be expanded to \(4, 4\)"):
        t.expand(4, 4)
    assert gradcheck(lambda x: x.expand(2, 3, 4), (a,))
    assert gradcheck(lambda x: x.repeat(2, 1, 3), (a,))


def test_masked_fill_clamp_comparisons():
    a = randn(3, 4)
    t = dt.tensor(a)
    mask = a > 0
    np.testing.assert_array_equal(t.masked_fill(dt.tensor(mask), -1.0).numpy(), np.where(mask, -1.0, a))
    row = np.array([True, False, True, False])
    np.testing.assert_array_equal(t.masked_fill(row, 0.0).numpy(), np.where(row, 0.0, a))
    f32 = dt.tensor(a.astype(np.float32)).masked_fill(dt.tensor(mask), float("-inf"))
    assert f32.dtype == np.float32 and np.isneginf(f32.numpy()[mask]).all()
    with pytest.raises(ValueError, match=r"mask of shape \(5,\) does not broadcast"):
        t.masked_fill(np.ones(5, bool), 0.0)
    with pytest.raises(TypeError, match="mask must be boolean"):
        t.masked_fill(np.ones((3, 4)), 0.0)
    np.testing.assert_array_equal(t.clamp(-0.5, 0.5).numpy(), np.clip(a, -0.5, 0.5))
    np.testing.assert_array_equal(t.clamp(min=0).numpy(), np.maximum(a, 0))
    np.testing.assert_array_equal(t.clip(max=0).numpy(), np.minimum(a, 0))
    for name, op in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                     ("gt", np.greater), ("ge", np.greater_equal)):
        np.testing.assert_array_equal(getattr(t, name)(0.1).numpy(), op(a, 0.1))
    assert gradcheck(lambda x: x.masked_fill(dt.tensor(mask), 2.0) * x, (a,))
    assert gradcheck(lambda x: x.clamp(-0.5, 0.5), (a,))
    c = dt.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    c.clamp(0, 1).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), [0, 1, 0])


def test_item_assignment_under_no_grad_only():
    w = dt.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match="item assignment on a tensor that requires grad"):
        w[w > 2] = 0.0
    with dt.no_grad():
        w[w > 2] = 0.0
    np.testing.assert_array_equal(w.numpy(), [[0, 1, 2], [0, 0, 0]])
    t = dt.tensor(np.zeros(4))
    with pytest.raises(RuntimeError, match="item assignment of a tensor that requires grad"):
        t[0] = w[0, 0]
    t[dt.tensor(np.array([1, 3]))] = 5
    np.testing.assert_array_equal(t.numpy(), [0, 5, 0, 5])
    t.zero_().add_(1).mul_(3)
    np.testing.assert_array_equal(t.numpy(), [3, 3, 3, 3])
    t.copy_(dt.tensor(np.arange(4.0))).masked_fill_(t.numpy() > 1, -1).clamp_(min=0)
    np.testing.assert_array_equal(t.numpy(), [0, 1, 0, 0])
    with pytest.raises(RuntimeError, match="read-only"):
        dt.tensor(np.ones((1, 2))).expand(3, 2).fill_(0)


def test_dtype_and_device_methods():
    t = dt.tensor(np.arange(3.0))
    assert t.float().dtype == np.float32 and t.long().dtype == np.int64 and t.int().dtype == np.int32
    assert t.bool().dtype == np.bool_ and t.half().dtype == np.float16 and t.double() is t
    assert t.to(dt.float32).dtype == np.float32 and t.to("cpu") is t
    assert t.to(dt.device("cpu"), dt.int64).dtype == np.int64
    assert t.to(dtype=dt.long, device="cpu").dtype == np.int64
    assert t.to(dt.tensor(np.zeros(1, np.float32))).dtype == np.float32
    assert t.type_as(dt.tensor(np.zeros(1, np.int32))).dtype == np.int32
    assert t.cpu() is t and t.device == dt.device("cpu") and t.device == "cpu" and not t.is_cuda
    assert str(t.device) == "cpu"
    for bad in ("cuda", "cuda:0", "mps", 0):
        with pytest.raises(RuntimeError, match="disttrain computes on the CPU only"):
            t.to(bad)
    with pytest.raises(RuntimeError, match="CPU only"):
        t.cuda()
    with pytest.raises(RuntimeError, match="CPU only"):
        dt.zeros(2, device="cuda")
    assert gradcheck(lambda x: x.to(dt.float64) * 3, (randn(3),))
    assert f"{dt.tensor(1.23456):.2f}" == "1.23"


def test_method_forms_of_ops():
    a, b = randn(2, 3), randn(3, 2)
    t = dt.tensor(a)
    np.testing.assert_allclose(t.matmul(dt.tensor(b)).numpy(), a @ b)
    np.testing.assert_allclose(t.add(1.0, alpha=2).numpy(), a + 2)
    np.testing.assert_allclose(t.sub(t).numpy(), 0)
    np.testing.assert_allclose(t.pow(2).numpy(), a ** 2)
    np.testing.assert_allclose(t.softmax(1).numpy().sum(1), 1)
    np.testing.assert_allclose(t.log_softmax(-1).exp().numpy().sum(1), 1)
    c = t.clone()
    assert c.numpy() is not t.numpy()
    np.testing.assert_array_equal(c.numpy(), a)
