"""Learning-rate schedules: values per step, wrapping, state dicts, argument checks."""
import math

import numpy as np
import pytest

import disttrain as dt
from disttrain import optim


def make_opt(lr=1.0, groups=1):
    params = [{"params": [dt.Tensor(np.zeros(1), requires_grad=True)], "lr": lr * (i + 1)} for i in range(groups)]
    return optim.SGD(params, lr=lr)


def trace(sched, steps):
    lrs = [sched.get_last_lr()]
    for _ in range(steps):
        sched.step()
        lrs.append(sched.get_last_lr())
    return lrs


def test_step_lr():
    opt = make_opt(1.0, groups=2)
    lrs = trace(optim.StepLR(opt, step_size=2, gamma=0.5), 5)
    assert lrs == [[1.0, 2.0], [1.0, 2.0], [0.5, 1.0], [0.5, 1.0], [0.25, 0.5], [0.25, 0.5]]
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.5]


def test_cosine_annealing():
    opt = make_opt(0.1)
    lrs = [v[0] for v in trace(optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.01), 4)]
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-15)
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(0.055) and lrs[4] == pytest.approx(0.01)


def test_linear_warmup_standalone_and_wrapping_cosine():
    opt = make_opt(1.0)
    lrs = [v[0] for v in trace(optim.LinearWarmup(opt, warmup_steps=4, start_factor=0.2), 6)]
    np.testing.assert_allclose(lrs, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])

    opt = make_opt(1.0)
    cosine = optim.CosineAnnealingLR(opt, T_max=2)
    warm = optim.LinearWarmup(opt, warmup_steps=2, start_factor=0.0, then=cosine)
    lrs = [v[0] for v in trace(warm, 4)]
    np.testing.assert_allclose(lrs, [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-15)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same optimizer"):
        optim.LinearWarmup(make_opt(), 2, then=cosine)


def test_schedule_state_dict_resumes():
    opt = make_opt(1.0)
    warm = optim.LinearWarmup(opt, 3, then=optim.StepLR(opt, step_size=2, gamma=0.1))
    for _ in range(4):
        warm.step()
    sd = warm.state_dict()
    assert sd["last_epoch"] == 4 and sd["then"]["last_epoch"] == 1
    assert all(isinstance(v, (int, float, tuple, dict)) for v in sd.values())

    opt2 = make_opt(1.0)
    warm2 = optim.LinearWarmup(opt2, 3, then=optim.StepLR(opt2, step_size=2, gamma=0.1))
    warm2.load_state_dict(sd)
    assert warm2.get_last_lr() == warm.get_last_lr() and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert trace(warm2, 3) == trace(warm, 3)


@pytest.mark.parametrize("make,fragment", [
    (lambda o: optim.StepLR(o, step_size=0), "step_size=0"),
    (lambda o: optim.StepLR(o, step_size=1.5), "step_size=1.5"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=0), "T_max=0"),
    (lambda o: optim.LinearWarmup(o, warmup_steps=5, start_factor=2.0), "start_factor=2.0"),
    (lambda o: optim.LinearWarmup(o, warmup_steps=-1), "warmup_steps=-1"),
])
def test_bad_schedule_arguments(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make(make_opt())
