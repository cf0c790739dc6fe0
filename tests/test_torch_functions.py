"""Top-level PyTorch names: factories, functions, dtypes, grad modes, autograd.grad, save/load."""
import os

import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck
from disttrain.serialization import SaveError

rng = np.random.default_rng(1)


def test_factories_dtypes_and_shapes():
    assert dt.zeros(2, 3).shape == (2, 3) and dt.zeros((2, 3)).dtype == np.float32
    assert dt.ones(4, dtype=dt.float64).dtype == np.float64 and dt.empty(2, 2).shape == (2, 2)
    assert dt.full((2,), 7).dtype == np.int64 and dt.full((2,), 0.5).dtype == np.float32
    assert dt.full((2, 2), True).dtype == np.bool_
    np.testing.assert_array_equal(dt.arange(5).numpy(), np.arange(5))
    assert dt.arange(5).dtype == np.int64 and dt.arange(0.0, 1.0, 0.25).dtype == np.float32
    np.testing.assert_array_equal(dt.arange(0, 10, 3, dtype=dt.long).numpy(), [0, 3, 6, 9])
    np.testing.assert_allclose(dt.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    x = dt.tensor(np.ones((2, 3), np.float64))
    assert dt.zeros_like(x).dtype == np.float64 and dt.ones_like(x, dtype=dt.int32).dtype == np.int32
    np.testing.assert_array_equal(dt.full_like(x, 3).numpy(), np.full((2, 3), 3.0))
    assert dt.ones(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="sizes must be non-negative ints"):
        dt.zeros(-1)
    assert (dt.float32, dt.float64, dt.long, dt.int64, dt.bool) == (np.float32, np.float64, np.int64, np.int64,
                                                                    np.bool_)
    assert dt.float is np.float32 and dt.double is np.float64 and dt.int is np.int32
    assert dt.get_default_dtype() is np.float32 and dt.is_floating_point(x)


def test_random_factories_are_seeded():
    dt.manual_seed(3)
    a = (dt.randn(3, 4), dt.rand(5), dt.randint(0, 10, (6,)), dt.randint(4, (2, 2)), dt.randperm(5))
    dt.manual_seed(3)
    b = (dt.randn(3, 4), dt.rand(5), dt.randint(0, 10, (6,)), dt.randint(4, (2, 2)), dt.randperm(5))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert a[0].dtype == np.float32 and a[2].dtype == np.int64 and a[2].numpy().max() < 10
    assert 0 <= a[1].numpy().min() and a[1].numpy().max() < 1 and sorted(a[4].tolist()) == list(range(5))


def test_cat_stack_flatten_where():
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((1, 3))
    np.testing.assert_array_equal(dt.cat([dt.tensor(a), dt.tensor(b)]).numpy(), np.concatenate([a, b]))
    np.testing.assert_array_equal(dt.cat((dt.tensor(a), dt.tensor(a)), dim=1).numpy(), np.concatenate([a, a], 1))
    np.testing.assert_array_equal(dt.stack([dt.tensor(a), dt.tensor(a)], dim=2).numpy(), np.stack([a, a], 2))
    assert dt.flatten(dt.tensor(np.zeros((2, 3, 4))), 1).shape == (2, 12)
    c = a > 0
    np.testing.assert_array_equal(dt.where(dt.tensor(c), dt.tensor(a), 0.0).numpy(), np.where(c, a, 0.0))
    assert dt.where(dt.tensor(c), dt.tensor(a.astype(np.float32)), 0.0).dtype == np.float32
    rows, cols = dt.where(dt.tensor(c))
    np.testing.assert_array_equal(rows.numpy(), np.nonzero(c)[0])
    assert gradcheck(lambda x, y: dt.cat([x, y], dim=0) * 2, (a, b))
    assert gradcheck(lambda x: dt.where(dt.tensor(c), x, 1.0), (a,))


def test_tril_triu():
    a = rng.standard_normal((2, 4, 5))
    np.testing.assert_array_equal(dt.tril(dt.tensor(a)).numpy(), np.tril(a))
    np.testing.assert_array_equal(dt.triu(dt.tensor(a), 1).numpy(), np.triu(a, 1))
    np.testing.assert_array_equal(dt.tril(dt.tensor(a), -1).numpy(), np.tril(a, -1))
    assert gradcheck(lambda x: dt.tril(x), (a,)) and gradcheck(lambda x: dt.triu(x, -1), (a,))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        dt.tril(dt.ones(3))


def test_topk():
    a = rng.standard_normal((3, 6))
    v, i = dt.topk(dt.tensor(a), 2)
    np.testing.assert_array_equal(i.numpy(), np.argsort(-a, 1)[:, :2])
    np.testing.assert_array_equal(v.numpy(), -np.sort(-a, 1)[:, :2])
    r = dt.topk(dt.tensor(a), 3, dim=0, largest=False)
    np.testing.assert_array_equal(r.values.numpy(), np.sort(a, 0)[:3])
    with pytest.raises(ValueError, match="k=7 is out of range"):
        dt.topk(dt.tensor(a), 7)
    assert gradcheck(lambda x: dt.topk(x, 2)[0], (a,))


def test_multinomial():
    dt.manual_seed(0)
    p = dt.tensor(np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]))
    s = dt.multinomial(p, 1)
    assert s.shape == (2, 1) and s.dtype == np.int64 and s.numpy()[0, 0] == 1 and s.numpy()[1, 0] in (0, 2)
    counts = np.bincount(dt.multinomial(dt.tensor(np.array([1.0, 3.0])), 4000, replacement=True).numpy(), minlength=2)
    assert 0.7 < counts[1] / 4000 < 0.8
    assert sorted(dt.multinomial(dt.ones(4), 4).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="without replacement"):
        dt.multinomial(p, 3)
    with pytest.raises(ValueError, match="non-negative"):
        dt.multinomial(dt.tensor(np.array([-1.0, 2.0])), 1)


def test_method_wrappers():
    a = rng.standard_normal((2, 3))
    t = dt.tensor(a)
    np.testing.assert_allclose(dt.exp(t).numpy(), np.exp(a))
    v, i = dt.max(t, 1)
    np.testing.assert_array_equal(i.numpy(), a.argmax(1))
    np.testing.assert_array_equal(dt.maximum(t, dt.zeros_like(t)).numpy(), np.maximum(a, 0))
    assert dt.transpose(t, 0, 1).shape == (3, 2) and dt.numel(t) == 6 and dt.is_tensor(t)
    np.testing.assert_allclose(dt.clamp(t, min=0).numpy(), np.maximum(a, 0))
    assert dt.allclose(t, a) and dt.equal(t, dt.tensor(a)) and not dt.equal(t, dt.tensor(a + 1))


def test_set_grad_enabled_as_call_context_and_decorator():
    w = dt.tensor(np.ones(2), requires_grad=True)
    dt.set_grad_enabled(False)                 # a plain call takes effect (the old trap: it did nothing)
    try:
        assert not dt.is_grad_enabled() and not (w * 2).requires_grad
    finally:
        dt.set_grad_enabled(True)
    assert dt.is_grad_enabled()
    with dt.set_grad_enabled(False):
        assert not (w * 2).requires_grad
    assert dt.is_grad_enabled()

    @dt.set_grad_enabled(False)
    def f(x):
        return x * 2
    assert dt.is_grad_enabled() and not f(w).requires_grad
    with dt.inference_mode():
        assert not (w * 2).requires_grad
    with dt.no_grad(), dt.inference_mode(False):
        assert (w * 2).requires_grad

    @dt.inference_mode()
    def g(x):
        return x * 2
    assert not g(w).requires_grad and dt.is_grad_enabled()

    @dt.no_grad
    def h(x):
        return x * 2
    assert not h(w).requires_grad and dt.is_grad_enabled()


def test_autograd_grad_leaves_dot_grad_alone():
    a = rng.standard_normal(3)
    x = dt.tensor(a, requires_grad=True)
    w = dt.tensor(np.full(3, 2.0), requires_grad=True)
    x.grad = np.full(3, 7.0)
    fired = []
    w.register_post_accumulate_grad_hook(lambda p: fired.append(1))
    h = x * w
    y = (h * h).sum()
    gx, gh = dt.autograd.grad(y, [x, h], retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), 2 * a * 4)
    np.testing.assert_allclose(gh.numpy(), 2 * a * 2)
    np.testing.assert_array_equal(x.grad.numpy(), 7.0)
    assert w.grad is None and not fired
    (gw,) = dt.autograd.grad(y, w, grad_outputs=dt.tensor(np.array(3.0)))
    np.testing.assert_allclose(gw.numpy(), 3 * 2 * a * a * 2)
    z = dt.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="input 0 .* was not used"):
        dt.autograd.grad((x * 2).sum(), [z])
    assert dt.autograd.grad((x * 2).sum(), [z, x], allow_unused=True)[0] is None
    with pytest.raises(NotImplementedError, match="create_graph"):
        dt.autograd.grad((x * 2).sum(), x, create_graph=True)


def test_save_load_roundtrip_without_pickle(tmp_path):
    model = dt.nn.Sequential(dt.nn.Linear(3, 2), dt.nn.ReLU())
    opt = dt.optim.Adam(model.parameters(), lr=0.1)
    model(dt.ones(4, 3)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3, "best": float("inf"),
           "tags": ["a", None, True], "shape": (2, 3), 5: np.float32(1.5), "t": dt.ones(2, requires_grad=True)}
    path = tmp_path / "ckpt.pt"                  # exactly this name (no .npz appended)
    dt.save(obj, path)
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    back = dt.load(str(path), map_location="cpu")
    assert list(back) == list(obj) and back["step"] == 3 and back["best"] == float("inf")
    assert back["tags"] == ["a", None, True] and back["shape"] == (2, 3) and back[5] == np.float32(1.5)
    assert isinstance(back["t"], dt.Tensor) and back["t"].requires_grad
    for k, v in obj["model"].items():
        np.testing.assert_array_equal(back["model"][k], v)
    assert list(back["optimizer"]["state"]) == [0, 1]            # int keys survive
    model2 = dt.nn.Sequential(dt.nn.Linear(3, 2), dt.nn.ReLU())
    model2.load_state_dict(back["model"])
    opt2 = dt.optim.Adam(model2.parameters(), lr=0.1)
    opt2.load_state_dict(back["optimizer"])
    with np.load(path, allow_pickle=False) as z:                 # a plain npz
        assert "__skeleton__" in z.files


def test_save_refuses_objects_and_load_refuses_foreign_files(tmp_path):
    with pytest.raises(SaveError, match=r"obj\['m'\]\[0\] is a disttrain.nn.linear.Linear, which cannot be saved"):
        dt.save({"m": [dt.nn.Linear(2, 2)]}, tmp_path / "x.pt")
    assert not os.listdir(tmp_path)                              # nothing half-written
    with pytest.raises(FileNotFoundError, match="directory .*nowhere does not exist"):
        dt.save({}, tmp_path / "nowhere" / "x.pt")
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a file written by dt.save"):
        dt.load(tmp_path / "other.npz")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a file written by dt.save"):
        dt.load(tmp_path / "junk.pt")


def test_accelerator_probes_answer_no():
    assert not dt.cuda.is_available() and dt.cuda.device_count() == 0
    assert not dt.accelerator.is_available() and not dt.backends.mps.is_available()
    with pytest.raises(RuntimeError, match="CPU only"):
        dt.cuda.set_device(0)
    assert dt.device("cpu") == dt.device("cpu:0") and repr(dt.device("cpu")) == "device(type='cpu')"
    with pytest.raises(RuntimeError, match="'cuda:1' is not available"):
        dt.device("cuda", 1)
