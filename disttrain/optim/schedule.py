"""Learning-rate schedules: each is a closed-form function of the step count.

As in torch.optim.lr_scheduler, constructing a schedule sets every group's lr
to its value at step 0 and each ``step()`` (once per epoch or per batch, as
you choose) advances by one. ``lr_at(t)`` gives the per-group values at any
step, which is how `LinearWarmup` hands over to the schedule it wraps.
"""
import math
import numbers


def _check(name, key, value, low, low_open=False, integer=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or value < low or (low_open and value == low):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}: invalid {key}={value!r} (must be {kind} {'>' if low_open else '>='} {low})")


class LRScheduler:
    def __init__(self, optimizer, last_epoch=-1):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = None
        self.step()

    def lr_at(self, t):
        """Per-group learning rates at step ``t``."""
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self._apply()

    def _apply(self):
        lrs = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self):
        return list(self._last_lr)

    def _config(self):
        return {}

    def state_dict(self):
        """Plain scalars and tuples only (storable in an .npz)."""
        return {"last_epoch": self.last_epoch, "base_lrs": tuple(self.base_lrs), **self._config()}

    def load_state_dict(self, state):
        base_lrs = tuple(float(v) for v in state["base_lrs"])
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(base_lrs)} base learning rates saved, "
                             f"the optimizer has {len(self.optimizer.param_groups)} parameter groups")
        self.base_lrs = list(base_lrs)
        self.last_epoch = int(state["last_epoch"])
        self._apply()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check("StepLR", "step_size", step_size, 1, integer=True)
        _check("StepLR", "gamma", gamma, 0.0)
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * self.gamma ** (t // self.step_size) for base in self.base_lrs]

    def _config(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 (periodic past T_max)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _check("CosineAnnealingLR", "T_max", T_max, 1, integer=True)
        _check("CosineAnnealingLR", "eta_min", eta_min, 0.0)
        self.T_max = int(T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]

    def _config(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearWarmup(LRScheduler):
    """Ramp linearly from ``start_factor * base_lr`` (t = 0) to ``base_lr`` (t = warmup_steps),
    then hold it, or follow ``then`` (another schedule on the same optimizer) from its step 0.

    ``LinearWarmup(opt, 100, then=CosineAnnealingLR(opt, T_max=900))``.
    """

    def __init__(self, optimizer, warmup_steps, start_factor=0.1, then=None, last_epoch=-1):
        _check("LinearWarmup", "warmup_steps", warmup_steps, 1, integer=True)
        _check("LinearWarmup", "start_factor", start_factor, 0.0)
        if start_factor > 1:
            raise ValueError(f"LinearWarmup: invalid start_factor={start_factor!r} (must be <= 1)")
        if then is not None and getattr(then, "optimizer", None) is not optimizer:
            raise ValueError("LinearWarmup: the wrapped schedule `then` must drive the same optimizer")
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.then = then
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        if t < self.warmup_steps:
            f = self.start_factor + (1 - self.start_factor) * t / self.warmup_steps
            return [base * f for base in self.base_lrs]
        if self.then is not None:
            return self.then.lr_at(t - self.warmup_steps)
        return list(self.base_lrs)

    def step(self):
        super().step()
        if self.then is not None:   # keep the wrapped schedule's own counter in step
            self.then.last_epoch = max(self.last_epoch - self.warmup_steps, 0)
            self.then._last_lr = list(self._last_lr)

    def _config(self):
        cfg = {"warmup_steps": self.warmup_steps, "start_factor": self.start_factor}
        if self.then is not None:
            cfg["then"] = self.then.state_dict()
        return cfg

    def load_state_dict(self, state):
        if self.then is not None and "then" in state:
            self.then.base_lrs = [float(v) for v in state["then"]["base_lrs"]]
            self.then.last_epoch = int(state["then"]["last_epoch"])
        super().load_state_dict(state)


__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearWarmup"]
