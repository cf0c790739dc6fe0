"""PyTorch-named modules, losses, optimizers and schedules (values, gradchecks, errors)."""
import math

import numpy as np
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F
from disttrain.autograd import gradcheck
from disttrain.optim import lr_scheduler

rng = np.random.default_rng(2)


def test_module_dict_and_parameter_list():
    d = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.ReLU()})
    d["c"] = nn.Linear(3, 1)
    assert list(d) == ["a", "b", "c"] and len(d) == 3 and "a" in d and d.a is d["a"]
    assert list(d.state_dict()) == ["a.weight", "a.bias", "c.weight", "c.bias"]
    with pytest.raises(KeyError, match="no module 'z'"):
        d["z"]
    with pytest.raises(TypeError, match="expected a Module"):
        d["x"] = 3
    d.pop("c")
    assert list(d.keys()) == ["a", "b"]
    pl = nn.ParameterList([nn.Parameter(dt.ones(2)), dt.zeros(3)])
    pl.append(nn.Parameter(dt.ones(1)))
    assert len(pl) == 3 and [p.shape for p in pl] == [(2,), (3,), (1,)]
    assert list(pl.state_dict()) == ["0", "1", "2"] and all(p.requires_grad for p in pl.parameters())

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleDict(dict(inp=nn.Linear(4, 4)))
            self.gains = nn.ParameterList([nn.Parameter(dt.ones(4))])
    assert list(M().state_dict()) == ["layers.inp.weight", "layers.inp.bias", "gains.0"]


def _np_nll(logp, t, w=None, ignore=-100, reduction="mean"):
    w = np.ones(logp.shape[1]) if w is None else w
    keep = t != ignore
    safe = np.where(keep, t, 0)
    per = -logp[np.arange(len(t)), safe] * w[safe] * keep
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.sum() / (w[safe] * keep).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_values_and_gradcheck(reduction):
    x = rng.standard_normal((5, 4))
    t = np.array([0, 3, -100, 1, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    got = F.nll_loss(dt.tensor(x), t, weight=w, reduction=reduction)
    np.testing.assert_allclose(got.numpy(), _np_nll(x, t, w, reduction=reduction), rtol=1e-12)
    assert gradcheck(lambda a: F.nll_loss(a, t, weight=w, reduction=reduction), (x,))
    assert gradcheck(lambda a: F.nll_loss(F.log_softmax(a, dim=1), np.array([1, 0, 2, 2, 3])), (x,))


def test_nll_loss_module_and_errors():
    x = dt.tensor(np.log(np.full((2, 3), 1 / 3)))
    assert abs(nn.NLLLoss()(x, np.array([0, 2])).item() - math.log(3)) < 1e-12
    logp = dt.tensor(np.array([[-np.inf, 0.0]]))
    assert nn.NLLLoss(ignore_index=0, reduction="sum")(logp, np.array([0])).item() == 0   # no nan from -inf * 0
    with pytest.raises(ValueError, match=r"nll_loss: target 4 \(sample 1\) is out of range for 3 classes"):
        F.nll_loss(x, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"expected input \(N, C\) and target \(N,\)"):
        F.nll_loss(x, np.array([0, 1, 2]))


def test_dropout2d_zeroes_whole_channels():
    dt.manual_seed(0)
    x = dt.tensor(np.ones((4, 6, 3, 3)), requires_grad=True)
    y = nn.Dropout2d(0.5)(x)
    per_channel = y.numpy().reshape(4, 6, 9)
    assert set(np.unique(per_channel)) <= {0.0, 2.0}
    assert (per_channel.min(-1) == per_channel.max(-1)).all()        # a channel is all kept or all dropped
    assert 0 < (per_channel[:, :, 0] == 0).sum() < 24
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
    m = nn.Dropout2d(0.5).eval()
    assert m(x) is x


def test_conv2d_padding_same_and_valid():
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    conv = nn.Conv2d(3, 4, (3, 5), padding="same")
    assert conv.padding == (1, 2) and conv(dt.tensor(x)).shape == (2, 4, 7, 6)
    assert nn.Conv2d(3, 4, 3, padding="valid")(dt.tensor(x)).shape == (2, 4, 5, 4)
    with pytest.raises(ValueError, match="even kernel size"):
        nn.Conv2d(3, 4, 2, padding="same")
    with pytest.raises(ValueError, match="needs stride 1"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")


def test_mixed_float_dtypes_raise_like_pytorch():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"linear: input is float64 but the weight is float32.*\.float\(\)"):
        layer(dt.tensor(np.ones((2, 3))))
    assert layer(dt.tensor(np.ones((2, 3))).float()).dtype == np.float32
    with pytest.raises(TypeError, match="conv2d: input is float64"):
        nn.Conv2d(1, 1, 3)(dt.tensor(np.ones((1, 1, 4, 4))))
    with pytest.raises(TypeError, match="layer_norm: input is float64"):
        nn.LayerNorm(3)(dt.tensor(np.ones((2, 3))))
    assert layer.double()(dt.tensor(np.ones((2, 3)))).dtype == np.float64


def test_module_to_device():
    m = nn.Linear(2, 2)
    assert m.to("cpu") is m and m.cpu() is m and m.to(dt.device("cpu")) is m
    assert m.to("cpu", dt.float64).weight.dtype == np.float64
    with pytest.raises(RuntimeError, match="CPU only"):
        m.to("cuda")
    with pytest.raises(RuntimeError, match="CPU only"):
        m.to(0)
    with pytest.raises(RuntimeError, match="CPU only"):
        m.cuda()


def test_ddp_alias_accepts_cpu_device_arguments():
    import disttrain.distributed as dist
    from disttrain.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo")
    model = DDP(nn.Linear(2, 2), device_ids=None, output_device=None)
    assert isinstance(model, dist.DistributedDataParallel)
    DDP(nn.Linear(2, 2), device_ids=["cpu"])
    with pytest.raises(RuntimeError, match="CPU only"):
        DDP(nn.Linear(2, 2), device_ids=[0])
    assert dist.is_available() and dist.is_initialized()


@pytest.mark.parametrize("rule,hp", [
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=0.1)),
    ("adadelta", dict()),
    ("adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.1)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rmsprop_adadelta_kernels_match_numpy_references(rule, hp, dtype):
    theta0 = rng.standard_normal(50).astype(dtype)
    grads = [rng.standard_normal(50).astype(dtype) for _ in range(4)]
    out = []
    for fused in (True, False):
        p = dt.tensor(theta0.copy(), requires_grad=True)
        opt = dt.optim.create(rule, [p], **hp) if fused else dt.optim.create(rule, [p], fused=False, **hp)
        for g in grads:
            p.grad = g
            opt.step()
        out.append(p.numpy().copy())
        assert opt.state_dict()["state"][0]["step"] == 4
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out[0], out[1], rtol=tol, atol=tol)
    assert not np.allclose(out[0], theta0)


def test_rmsprop_adadelta_validation():
    p = [dt.tensor(np.ones(2), requires_grad=True)]
    with pytest.raises(ValueError, match=r"RMSprop: invalid lr=-1"):
        dt.optim.RMSprop(p, lr=-1)
    with pytest.raises(ValueError, match=r"Adadelta: invalid rho=1.5"):
        dt.optim.Adadelta(p, rho=1.5)
    assert {"rmsprop", "adadelta"} <= set(dt.optim.available_rules())


def _opt(lr=1.0, **extra):
    return dt.optim.SGD([dt.tensor(np.ones(1), requires_grad=True)], lr=lr, **extra)


def _lrs(opt, sched, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def test_schedulers_closed_forms():
    o = _opt()
    assert _lrs(o, lr_scheduler.MultiStepLR(o, [2, 3], 0.1), 4) == pytest.approx([1, 1, 0.1, 0.01])
    o = _opt()
    assert _lrs(o, lr_scheduler.ExponentialLR(o, 0.5), 3) == pytest.approx([1, 0.5, 0.25])
    o = _opt()
    assert _lrs(o, lr_scheduler.LambdaLR(o, lambda t: t + 1), 3) == pytest.approx([1, 2, 3])
    o = _opt()
    assert _lrs(o, lr_scheduler.LinearLR(o, 0.5, 1.0, total_iters=2), 4) == pytest.approx([0.5, 0.75, 1, 1])
    o = _opt()
    s = lr_scheduler.SequentialLR(o, [lr_scheduler.LinearLR(o, 0.5, total_iters=2),
                                      lr_scheduler.StepLR(o, 1, 0.5)], milestones=[2])
    assert _lrs(o, s, 5) == pytest.approx([0.5, 0.75, 1, 0.5, 0.25])
    o = _opt(momentum=0.9)
    s = lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="linear")
    lrs = _lrs(o, s, 10)
    assert lrs[0] == pytest.approx(0.04) and max(lrs) == pytest.approx(1.0) and lrs[-1] == pytest.approx(4e-6)
    with pytest.raises(ValueError, match="more than total_steps=10"):
        s.step()
    state = lr_scheduler.StepLR(o, 3).state_dict()
    assert state["step_size"] == 3


def test_reduce_lr_on_plateau():
    o = _opt()
    s = lr_scheduler.ReduceLROnPlateau(o, patience=1, factor=0.5, cooldown=1, min_lr=0.2)
    lrs = []
    for metric in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]:
        s.step(metric)
        lrs.append(o.param_groups[0]["lr"])
    assert lrs == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
    assert s.get_last_lr() == [0.25]
    s2 = lr_scheduler.ReduceLROnPlateau(_opt())
    s2.load_state_dict(s.state_dict())
    assert s2.best == 0.5 and s2.patience == 1
