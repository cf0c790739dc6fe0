"""The backward engine: order, accumulation, memory, retain_graph, errors, no_grad."""
import weakref

import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import Function


def test_chain_of_10000_ops_backprops_iteratively():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0 + 0.0      # 20,000 nodes: recursion would overflow
    y.sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), [1.0, 1.0])


def _diamond_grads():
    rng = np.random.default_rng(1)
    x = dt.tensor(rng.standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    w = dt.tensor(rng.standard_normal((5, 3)).astype(np.float32), requires_grad=True)
    h = (x @ w).tanh()
    z = (h * h + h.exp() * 0.1 - (x @ w) / 3.0).mean(axis=0).sum() + (x * x).sum() * 1e-3
    z.backward()
    return np.asarray(x.grad).copy(), np.asarray(w.grad).copy()


def test_determinism_bitwise():
    a = _diamond_grads()
    b = _diamond_grads()
    for u, v in zip(a, b):
        assert u.tobytes() == v.tobytes()


def test_accumulation_for_tensor_used_several_times():
    x = dt.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x * x + x * 3.0 + x             # d/dx = 2x + 4
    h = y * 1.0                          # non-leaf used twice
    (h + h * h).sum().backward()         # d/dy = 1 + 2y
    xv = x.data
    yv = xv * xv + 4 * xv
    np.testing.assert_allclose(np.asarray(x.grad), (1 + 2 * yv) * (2 * xv + 4))


def test_intermediate_gradient_freed_as_soon_as_consumed():
    # The gradient of a non-leaf is dropped as soon as its node has run: by the
    # time the leaf's gradient is final, the weak reference to it is dead.
    x = dt.tensor(np.ones(1000), requires_grad=True)
    mid = x * 2.0
    out = mid.exp().sum()
    refs = []
    mid.register_hook(lambda g: refs.append(weakref.ref(g.data)) or None)
    alive_when_leaf_final = []
    x.register_post_accumulate_grad_hook(lambda t: alive_when_leaf_final.append(refs[0]() is not None))
    out.backward()
    assert len(refs) == 1 and alive_when_leaf_final == [False]


def test_saved_arrays_released_and_second_backward_raises():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * x
    node = y.grad_fn
    assert len(node.saved_tensors) == 2
    z = y.sum()
    z.backward()
    assert node._saved == ()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        z.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        node.saved_tensors


def test_saved_arrays_are_garbage_after_backward():
    class Keep(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a * 1.0)
            ctx.extra = np.ones(3)
            return a * 2.0

        @staticmethod
        def backward(ctx, g):
            return g * 2.0

    x = dt.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = Keep.apply(x)
    saved, extra = weakref.ref(y.grad_fn._saved[0]), weakref.ref(y.grad_fn.extra)
    y.sum().backward()
    assert y.grad_fn is not None          # the graph is still there ...
    assert saved() is None and extra() is None   # ... but what forward kept is gone
    np.testing.assert_allclose(np.asarray(x.grad), [2.0, 2.0, 2.0])


def test_retain_graph_keeps_saved_arrays():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * x
    saved = weakref.ref(y.grad_fn.saved_tensors[0])
    y.sum().backward(retain_graph=True)
    assert saved() is not None


def test_retain_graph_allows_second_backward():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    z = (x * x).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(np.asarray(x.grad), [4.0, 8.0])


def test_backward_needs_gradient_for_non_scalar_and_matching_shape():
    x = dt.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2, 3\)"):
        y.backward()
    with pytest.raises(RuntimeError, match=r"\(3,\) does not match tensor shape \(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(np.asarray(x.grad), np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="does not require grad"):
        dt.tensor([1.0]).sum().backward()


def test_leaf_as_root():
    x = dt.tensor(np.array(3.0), requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


class BadArity(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a * b

    @staticmethod
    def backward(ctx, g):
        return g


class BadShape(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g.sum(axis=0)


def test_error_names_op_and_arity():
    BadArity.__name__ = "Mul"
    a = dt.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"^Mul\.backward returned 1 gradient for 2 inputs$"):
        BadArity.apply(a, a).sum().backward()


def test_error_names_op_and_shape():
    BadShape.__name__ = "Add"
    a = dt.tensor(np.ones((2, 3)), requires_grad=True)
    b = dt.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient shape \(3,\) does not match input shape \(2, 3\) in Add"):
        BadShape.apply(a, b).sum().backward()


def test_no_grad_context_and_decorator():
    x = dt.tensor(np.ones(2), requires_grad=True)
    with dt.no_grad():
        y = x * 2
        assert not dt.is_grad_enabled()
        with dt.enable_grad():
            z = x * 2
    assert dt.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @dt.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad and dt.is_grad_enabled()
    with dt.set_grad_enabled(False):
        assert not (x + 1).requires_grad
    with pytest.raises(ZeroDivisionError):
        with dt.no_grad():
            1 / 0
    assert dt.is_grad_enabled()


def test_only_inputs_requiring_grad_get_gradients():
    x = dt.tensor(np.ones(2), requires_grad=True)
    c = dt.tensor(np.full(2, 3.0))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(np.asarray(x.grad), [3.0, 3.0])


def test_grad_is_own_writeable_contiguous_array():
    # A leaf's .grad never aliases an array someone else can see or mutate.
    a = dt.tensor(np.ones(3), requires_grad=True)
    b = dt.tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()           # Add hands the same array to both inputs
    assert not np.shares_memory(a.grad.data, b.grad.data)
    s = dt.tensor(np.ones((2, 3)), requires_grad=True)
    (s.T * 1.0).sum().backward()       # Transpose gives a view as gradient
    g = s.grad.data
    assert g.flags.c_contiguous and g.flags.writeable and g.base is None
    kept = []
    x = dt.tensor(np.ones(3), requires_grad=True)
    x.register_hook(lambda g: kept.append(g.data) or None)
    (x * 2.0).sum().backward()
    assert not np.shares_memory(kept[0], x.grad.data)
    kept[0][:] = 100.0
    np.testing.assert_array_equal(np.asarray(x.grad), [2.0, 2.0, 2.0])


def test_seed_gradient_is_copied():
    x = dt.tensor(np.ones(3), requires_grad=True)
    seed = np.array([1.0, 2.0, 3.0])
    x.backward(seed)
    seed[:] = 0
    np.testing.assert_array_equal(np.asarray(x.grad), [1.0, 2.0, 3.0])


def test_multiple_roots():
    from disttrain.autograd import backward
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y1, y2 = x * 2.0, x * x
    backward([y1, y2], [np.ones(2), np.ones(2)])
    np.testing.assert_allclose(np.asarray(x.grad), [4.0, 6.0])


def test_fresh_gradient_is_taken_without_copy():
    # When nothing else can see the array a backward made, the leaf keeps it as
    # its .grad (no copy); the aliasing cases are covered above.
    made = []

    class Double(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2.0

        @staticmethod
        def backward(ctx, g):
            out = g * 2.0
            made.append(id(out))       # an id, not a reference
            return out

    x = dt.tensor(np.ones(4), requires_grad=True)
    (Double.apply(x) * 1.0).sum().backward()
    assert id(x.grad.data) == made[0]


def test_backward_frees_activations_held_only_by_the_graph():
    import gc
    import weakref
    x = dt.tensor(np.ones((4, 3)), requires_grad=True)
    h = (x * 2.0).tanh()
    ref = weakref.ref(h)
    loss = (h * h).sum()
    del h
    gc.collect()
    assert ref() is not None          # the tape holds it until backward
    loss.backward()
    gc.collect()
    assert ref() is None              # backward released it although `loss` is still held
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
