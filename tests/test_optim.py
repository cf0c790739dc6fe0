"""Optimizers: fused kernels vs numpy references, torch.optim's algorithms, state dicts,
registered rules, hyperparameter checks."""
import numpy as np
import pytest

import disttrain as dt
from disttrain import optim

CONFIGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, weight_decay=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.02, betas=(0.5, 0.9), weight_decay=0.3)),
]
ids = [f"{n}-{'-'.join(f'{k}{v}' for k, v in hp.items())}" for n, hp in CONFIGS]


def grads(shape, steps, dtype, seed=0):
    r = np.random.default_rng(seed)
    return [r.standard_normal(shape).astype(dtype) for _ in range(steps)]


def param(values):
    return dt.Tensor(np.array(values, copy=True), requires_grad=True)


def run(name, hp, theta0, gradients, fused=True):
    p = param(theta0)
    opt = optim.create(name, [p], **hp)
    opt.fused = fused
    for g in gradients:
        p._grad = g.copy()
        opt.step()
    return p.data, opt


# -- torch.optim's documented algorithms, written out independently (float64) --------
def torch_sgd(theta, gs, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    theta, b = theta.copy(), None
    for t, g in enumerate(gs, start=1):
        if weight_decay:
            g = g + weight_decay * theta
        if momentum:
            b = g if t == 1 else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        theta = theta - lr * g
    return theta


def torch_adam(theta, gs, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    b1, b2 = betas
    for t, g in enumerate(gs, start=1):
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta


def torch_reference(name, hp, theta, gs):
    if name == "sgd":
        return torch_sgd(theta, gs, **hp)
    defaults = dict(weight_decay=1e-2) if name == "adamw" else {}
    return torch_adam(theta, gs, **{**defaults, **hp}, decoupled=name == "adamw")


@pytest.mark.parametrize("name,hp", CONFIGS, ids=ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernel_equals_numpy_reference(name, hp, dtype):
    theta0 = np.random.default_rng(1).standard_normal((7, 5)).astype(dtype)
    gs = grads((7, 5), 6, dtype)
    fused, opt_f = run(name, hp, theta0, gs, fused=True)
    ref, opt_r = run(name, hp, theta0, gs, fused=False)
    assert fused.dtype == dtype
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fused, ref, **tol)
    assert not np.allclose(fused, theta0)
    (sf,), (sr,) = opt_f.state.values(), opt_r.state.values()
    assert sf.keys() == sr.keys()
    for k in sf:
        np.testing.assert_allclose(sf[k], sr[k], **tol)


@pytest.mark.parametrize("name,hp", CONFIGS, ids=ids)
def test_trajectory_equals_torch_algorithm(name, hp):
    theta0 = np.random.default_rng(2).standard_normal(11)
    gs = grads(11, 5, np.float64, seed=3)
    got, _ = run(name, hp, theta0, gs)
    np.testing.assert_allclose(got, torch_reference(name, hp, theta0, gs), rtol=1e-12, atol=1e-14)


def test_known_values():
    # SGD momentum by hand: buf1 = g1, buf2 = 0.9*g1 + g2
    p = param([1.0, 2.0])
    opt = optim.SGD([p], lr=0.5, momentum=0.9)
    for g in ([1.0, -1.0], [2.0, 0.0]):
        p.grad = np.array(g)
        opt.step()
    np.testing.assert_allclose(p.data, [1.0 - 0.5 * 1 - 0.5 * 2.9, 2.0 + 0.5 + 0.5 * 0.9])
    # Adam's first step moves every coordinate by lr * g / (|g| + eps)
    p = param([0.0, 0.0, 0.0])
    p.grad = np.array([3.0, -0.5, 1e-3])
    optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, -0.1 * np.array([3.0, -0.5, 1e-3]) / (np.abs([3.0, 0.5, 1e-3]) + 1e-8))
    # AdamW with a zero gradient only decays: theta * (1 - lr * wd)
    p = param([2.0])
    p.grad = np.array([0.0])
    optim.AdamW([p], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(p.data, [2.0 * (1 - 0.05)])


def test_gradient_is_read_never_replaced_and_missing_grads_are_skipped():
    a, b = param(np.ones((2, 3), np.float32)), param(np.ones(4, np.float32))
    bucket = np.arange(6, dtype=np.float32)         # as a DDP bucket: the gradient is a view
    a._grad = bucket[:6].reshape(2, 3)
    opt = optim.Adam([a, b], lr=0.1)
    opt.step()
    assert np.shares_memory(a._grad, bucket) and np.array_equal(bucket, np.arange(6))
    assert b._grad is None and np.all(b.data == 1) and b not in opt.state
    opt.zero_grad(set_to_none=False)
    assert np.shares_memory(a._grad, bucket) and not bucket.any()
    opt.zero_grad()
    assert a._grad is None


def test_param_groups_use_their_own_hyperparameters():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose([a.item(), b.item()], [0.9, 0.5])
    c = param([0.0])
    opt.add_param_group({"params": [c], "momentum": 0.9})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def _to_npz_and_back(tmp_path, sd):
    """Flatten an optimizer state dict into an .npz (arrays + plain scalars) and read it back."""
    flat = {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            flat[f"state/{i}/{k}"] = np.asarray(v)
    for gi, g in enumerate(sd["param_groups"]):
        for k, v in g.items():
            flat[f"group/{gi}/{k}"] = np.asarray(v)
    np.savez(tmp_path / "opt.npz", **flat)
    back = {"state": {}, "param_groups": [{} for _ in sd["param_groups"]]}
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as z:
        for key in z.files:
            kind, i, k = key.split("/")
            v = z[key]
            if kind == "state":
                back["state"].setdefault(int(i), {})[k] = v if v.ndim else v.item()
            else:
                back["param_groups"][int(i)][k] = v.tolist() if k == "params" else v
    return back


@pytest.mark.parametrize("name,hp", [CONFIGS[2], CONFIGS[5], CONFIGS[7]], ids=["sgd", "adam", "adamw"])
def test_state_dict_round_trip_continues_identically(tmp_path, name, hp):
    theta0 = [np.random.default_rng(5).standard_normal(s).astype(np.float32) for s in [(3, 4), (4,)]]
    gs = grads((3, 4), 6, np.float32), grads(4, 6, np.float32, seed=9)
    ps = [param(t) for t in theta0]
    opt = optim.create(name, ps, **hp)
    for t in range(3):
        for p, g in zip(ps, gs):
            p._grad = g[t]
        opt.step()
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1] and sd["param_groups"][0]["params"] == [0, 1]
    # a fresh optimizer over copies of the parameters, loaded from the .npz round trip
    qs = [param(p.data) for p in ps]
    opt2 = optim.create(name, qs, lr=1.0)       # wrong lr on purpose: the load restores it
    opt2.load_state_dict(_to_npz_and_back(tmp_path, sd))
    assert opt2.param_groups[0]["lr"] == hp["lr"]
    for t in range(3, 6):
        for p, q, g in zip(ps, qs, gs):
            p._grad, q._grad = g[t], g[t].copy()
        opt.step()
        opt2.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.data, q.data)
    # state_dict holds copies
    first = next(iter(sd["state"][0].values()))
    if isinstance(first, np.ndarray):
        first[...] = 7
        assert not np.any(next(iter(opt.state[ps[0]].values())) == 7)


def test_load_state_dict_errors_name_the_problem():
    p = param(np.zeros((2, 2)))
    opt = optim.Adam([p])
    p.grad = np.ones((2, 2))
    opt.step()
    sd = opt.state_dict()
    other = optim.Adam([param(np.zeros(3))])
    with pytest.raises(ValueError,
                       match=r"'exp_avg' of parameter 0 has shape \(2, 2\), the parameter has shape \(3,\)"):
        other.load_state_dict(sd)
    with pytest.raises(ValueError, match="saved state has 1 parameter groups, this optimizer has 2"):
        optim.Adam([{"params": [param([1.0])]}, {"params": [param([1.0])]}]).load_state_dict(sd)


def test_registered_function_rule_by_name():
    @optim.register_rule("test_signsgd", defaults={"lr": 0.01})
    def signsgd(theta, grad, state, hp):
        state["calls"] = state.get("calls", 0) + 1
        theta -= hp["lr"] * np.sign(grad)

    assert "test_signsgd" in optim.available_rules()
    p = param([1.0, 1.0, 1.0])
    opt = optim.create("Test_SignSGD", [p], lr=0.5)
    p.grad = np.array([2.0, -3.0, 0.0])
    opt.step()
    opt.step()
    np.testing.assert_allclose(p.data, [0.0, 2.0, 1.0])
    assert opt.state[p]["calls"] == 2 and opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        optim.create("test_signsgd", [p], momentum=0.9)
    with pytest.raises(ValueError, match="already registered"):
        optim.register_rule("test_signsgd", signsgd)


def test_registered_class_rule_lion():
    @optim.register_rule("test_lion")
    class Lion(optim.UpdateRule):
        defaults = dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)
        state_like_param = ("exp_avg",)

        def validate(self, hp):
            if hp["lr"] < 0:
                raise ValueError(f"Lion: invalid lr={hp['lr']}")

        def init_state(self, theta, hp):
            return {"exp_avg": np.zeros_like(theta)}

        def update(self, theta, grad, state, hp):
            b1, b2 = hp["betas"]
            m = state["exp_avg"]
            theta *= 1 - hp["lr"] * hp["weight_decay"]
            theta -= hp["lr"] * np.sign(b1 * m + (1 - b1) * grad)
            m *= b2
            m += (1 - b2) * grad

    p = param([0.0, 0.0])
    opt = optim.create("test_lion", [p], lr=0.1)
    p.grad = np.array([1.0, -2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.1, 0.1])
    np.testing.assert_allclose(opt.state[p]["exp_avg"], [0.01, -0.02])
    with pytest.raises(ValueError, match="Lion: invalid lr=-1"):
        optim.create("test_lion", [p], lr=-1)


def test_unknown_rule_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown optimizer rule 'nope'; known rules: .*adam, adamw, .*sgd"):
        optim.create("nope", [param([1.0])])


@pytest.mark.parametrize("make,fragment", [
    (lambda p: optim.SGD(p, lr=-0.1), "lr=-0.1"),
    (lambda p: optim.SGD(p), "'lr' is required"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-1), "momentum=-1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov=True requires momentum > 0"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay=-0.0001"),
    (lambda p: optim.Adam(p, lr=float("nan")), "lr=nan"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"betas\[0\]=1.0"),
    (lambda p: optim.Adam(p, betas=(0.9, -0.1)), r"betas\[1\]=-0.1"),
    (lambda p: optim.Adam(p, betas=(0.9,)), "must be a pair"),
    (lambda p: optim.AdamW(p, eps=0.0), "eps=0.0"),
    (lambda p: optim.AdamW(p, weight_decay=-1), "weight_decay=-1"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
])
def test_bad_hyperparameters_raise_at_construction(make, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        make([param([1.0])] if "empty" not in fragment else [])


def test_optimizer_on_a_model_and_closure():
    from disttrain import nn
    model = nn.Linear(2, 1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = dt.tensor(np.array([[1.0, 2.0]], np.float32)), dt.tensor(np.array([[1.0]], np.float32))

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(20)]
    assert losses[-1] < 1e-3 * losses[0]


@pytest.mark.parametrize("name,hp", [CONFIGS[2], CONFIGS[6]], ids=["sgd-momentum", "adamw"])
def test_non_contiguous_parameters_are_updated(name, hp):
    base = np.random.default_rng(4).standard_normal((4, 3))
    g = np.random.default_rng(5).standard_normal((3, 4))
    results = []
    for data in (np.ascontiguousarray(base.T), base.T):      # the same values, C- and F-ordered
        p = dt.Tensor(data, requires_grad=True)
        opt = optim.create(name, [p], **hp)
        for _ in range(2):
            p._grad = g
            opt.step()
        results.append(p.data)
    assert results[1].base is base                           # updated in place, not replaced
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name,hp", CONFIGS, ids=ids)
def test_one_step_over_a_group_equals_per_parameter_updates(name, hp):
    # Optimizer.step hands a group's parameters to rule.update_group at once (SGD casts its
    # scalars once per group there): the result must be bit for bit that of rule.update per
    # parameter, for a group mixing shapes (2-D, 1-D, 0-d) and float32 with float64.
    r = np.random.default_rng(5)
    shapes = [((6, 4), np.float32), ((4,), np.float32), ((), np.float64), ((3, 2), np.float64), ((5,), np.float32)]
    theta0 = [r.standard_normal(s).astype(d) for s, d in shapes]
    gs = [[r.standard_normal(s).astype(d) for s, d in shapes] for _ in range(4)]
    params = [param(t) for t in theta0]
    opt = optim.create(name, params, **hp)
    rule = opt.rule
    hp_full = opt.hyperparameters(opt.param_groups[0])
    ref = [np.array(t, copy=True) for t in theta0]
    ref_state = [rule.init_state(t, hp_full) for t in ref]
    for step in gs:
        for p, g in zip(params, step):
            p._grad = g.copy()
        opt.step()
        for t, g, st in zip(ref, step, ref_state):
            rule.update(t, g, st, hp_full)
    for p, t, st in zip(params, ref, ref_state):
        assert p.data.dtype == t.dtype
        np.testing.assert_array_equal(p.data, t)
        for k, v in st.items():
            np.testing.assert_array_equal(opt.state[p][k], v)


def test_a_rule_subclass_overriding_update_is_called_per_parameter():
    calls = []

    class CountingSGD(optim.SGDRule):
        def update(self, theta, grad, state, hp):
            calls.append(theta.shape)
            super().update(theta, grad, state, hp)

    a, b = param(np.ones((2, 3))), param(np.ones(3))
    opt = optim.Optimizer([a, b], CountingSGD(), lr=0.5, momentum=0.9)
    a._grad, b._grad = np.full((2, 3), 2.0), np.full(3, 4.0)
    opt.step()
    assert calls == [(2, 3), (3,)]
    np.testing.assert_array_equal(a.data, np.zeros((2, 3)))          # 1 - 0.5 * 2 (first step: buf = grad)
    np.testing.assert_array_equal(b.data, np.full(3, -1.0))          # 1 - 0.5 * 4
