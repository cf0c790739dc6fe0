"""Hooks the distributed layer builds on: tensor hooks, post-accumulate-grad hooks, callbacks."""
import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import queue_callback, in_backward


def test_leaf_hook_sees_and_replaces_gradient():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []

    def hook(g):
        seen.append(np.array(g.data))
        return g * 10.0            # a Tensor is accepted as replacement

    x.register_hook(hook)
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(seen[0], [3.0, 3.0])
    np.testing.assert_array_equal(np.asarray(x.grad), [30.0, 30.0])


def test_non_leaf_hook_replaces_gradient_flowing_on():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    seen = []
    h.register_hook(lambda g: seen.append(np.array(g.data)) or np.zeros(2))
    h2 = h * 1.0
    (h2 * 4.0).sum().backward()
    np.testing.assert_array_equal(seen[0], [4.0, 4.0])
    np.testing.assert_array_equal(np.asarray(x.grad), [0.0, 0.0])
    assert h.grad is None            # non-leaf gradients are not kept


def test_hook_with_wrong_shape_is_an_error():
    x = dt.tensor(np.ones(2), requires_grad=True)
    x.register_hook(lambda g: np.ones(3))
    with pytest.raises(RuntimeError, match=r"hook.*\(3,\).*\(2,\)"):
        (x * 1.0).sum().backward()


def test_handles_remove_hooks():
    x = dt.tensor(np.ones(2), requires_grad=True)
    calls = []
    h1 = x.register_hook(lambda g: calls.append("pre") or None)
    h2 = x.register_post_accumulate_grad_hook(lambda t: calls.append("post"))
    y = x * 2.0
    h3 = y.register_hook(lambda g: calls.append("mid") or None)
    (y * 1.0).sum().backward()
    assert calls == ["mid", "pre", "post"]
    for h in (h1, h2, h3):
        h.remove()
    h1.remove()                      # removing twice is harmless
    calls.clear()
    y = x * 2.0
    (y * 1.0).sum().backward()
    assert calls == []
    with x.register_post_accumulate_grad_hook(lambda t: calls.append("ctx")):
        (x * 1.0).sum().backward()
    (x * 1.0).sum().backward()
    assert calls == ["ctx"]


def test_post_accumulate_hooks_fire_once_in_ready_order_with_final_grads():
    # Three "layers": w3 is used last in forward, so its gradient is ready first.
    # w1 is used twice (in layer 1 and in a skip term), so its gradient is only
    # final once both edges are visited.
    rng = np.random.default_rng(0)
    x = dt.tensor(rng.standard_normal((4, 3)))
    w1 = dt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    w2 = dt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    w3 = dt.tensor(rng.standard_normal((3, 1)), requires_grad=True)
    fired = []
    for name, w in [("w1", w1), ("w2", w2), ("w3", w3)]:
        w.register_post_accumulate_grad_hook(
            lambda t, name=name: fired.append((name, np.array(t.grad.data))))
    h1 = (x @ w1).tanh()
    h2 = (h1 @ w2).tanh()
    out = (h2 @ w3).sum() + (w1 * w1).sum() * 0.1
    out.backward()
    assert [n for n, _ in fired] == ["w3", "w2", "w1"]
    for (name, g), w in zip(fired, (w3, w2, w1)):
        np.testing.assert_array_equal(g, np.asarray(w.grad))   # the final gradient


def test_post_accumulate_hook_sees_accumulated_grad_across_backwards():
    x = dt.tensor(np.array([1.0]), requires_grad=True)
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.item()))
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    assert seen == [2.0, 5.0]


def test_post_accumulate_hook_only_on_leaves():
    x = dt.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        dt.tensor(np.ones(2)).register_hook(lambda g: None)


def test_queued_callback_runs_once_at_the_end():
    a = dt.tensor(np.ones(2), requires_grad=True)
    b = dt.tensor(np.ones(2), requires_grad=True)
    events = []

    def post(t):
        events.append("hook")
        if "queued" not in events:
            events.append("queued")
            queue_callback(lambda: events.append(("end", a.grad is not None and b.grad is not None)))

    a.register_post_accumulate_grad_hook(post)
    b.register_post_accumulate_grad_hook(post)
    (a * b).sum().backward()
    assert events == ["hook", "queued", "hook", ("end", True)]
    assert not in_backward()
    with pytest.raises(RuntimeError, match="during a backward pass"):
        queue_callback(lambda: None)


def test_callback_may_queue_another():
    x = dt.tensor(np.ones(1), requires_grad=True)
    order = []
    x.register_post_accumulate_grad_hook(
        lambda t: queue_callback(lambda: (order.append(1), queue_callback(lambda: order.append(2)))))
    (x * 1.0).sum().backward()
    assert order == [1, 2]


def test_callbacks_are_dropped_after_an_error():
    x = dt.tensor(np.ones(1), requires_grad=True)
    ran = []

    def bad(t):
        queue_callback(lambda: ran.append(1))
        raise ValueError("boom")

    h = x.register_post_accumulate_grad_hook(bad)
    with pytest.raises(ValueError, match="boom"):
        (x * 1.0).sum().backward()
    assert ran == [] and not in_backward()
    h.remove()
    (x * 1.0).sum().backward()
    assert ran == []


def test_retain_grad_on_non_leaf():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3.0
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(np.asarray(h.grad), 2 * h.data)


def test_leaf_hook_runs_once_with_summed_gradient():
    x = dt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(np.array(g.data)) or None)
    (x * 2.0 + x * x + x).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 3.0 + 2 * x.data)


def test_hook_on_op_output_made_leaf_under_no_grad():
    x = dt.tensor(np.ones(2), requires_grad=True)
    with dt.no_grad():
        y = x * 2.0                  # an op output that is a plain leaf
    y.requires_grad_()
    seen = []
    y.register_hook(lambda g: seen.append(1) or None)
    y.register_post_accumulate_grad_hook(lambda t: seen.append(2))
    (y * 3.0).sum().backward()
    assert seen == [1, 2] and x.grad is None
    np.testing.assert_array_equal(np.asarray(y.grad), [3.0, 3.0])
