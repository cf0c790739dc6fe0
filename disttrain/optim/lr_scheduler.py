"""``torch.optim.lr_scheduler`` under its PyTorch module path.

The schedules are closed-form functions of the step count (``lr_at(t)``), as in
`disttrain.optim.schedule`: constructing one sets the lr of step 0, each
``step()`` advances one step, ``state_dict()`` holds plain numbers.
`ReduceLROnPlateau` reacts to a metric instead (``step(metric)``).
"""
import bisect
import math

from .schedule import LRScheduler, StepLR, CosineAnnealingLR, LinearWarmup, _check


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= t)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        ms = sorted(int(m) for m in milestones)
        _check("MultiStepLR", "gamma", gamma, 0.0)
        self.milestones = ms
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * self.gamma ** bisect.bisect_right(self.milestones, t) for base in self.base_lrs]

    def _config(self):
        return {"milestones": tuple(self.milestones), "gamma": self.gamma}


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** t."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        _check("ExponentialLR", "gamma", gamma, 0.0)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * self.gamma ** t for base in self.base_lrs]

    def _config(self):
        return {"gamma": self.gamma}


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(t) (one function, or one per parameter group). The functions are not
    part of ``state_dict()``: recreate the scheduler with them before loading."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(optimizer.param_groups)
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(lambdas) != n or not all(callable(f) for f in lambdas):
            raise ValueError(f"LambdaLR: expected one function or a list of {n} functions (one per parameter "
                             f"group), got {lr_lambda!r}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        return [base * f(t) for base, f in zip(self.base_lrs, self.lr_lambdas)]


class LinearLR(LRScheduler):
    """Factor from ``start_factor`` to ``end_factor`` linearly over ``total_iters`` steps, then held."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor!r} and {end_factor!r}")
        _check("LinearLR", "total_iters", total_iters, 1, integer=True)
        self.start_factor, self.end_factor, self.total_iters = float(start_factor), float(end_factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        f = self.start_factor + (self.end_factor - self.start_factor) * min(t, self.total_iters) / self.total_iters
        return [base * f for base in self.base_lrs]

    def _config(self):
        return {"start_factor": self.start_factor, "end_factor": self.end_factor, "total_iters": self.total_iters}


class SequentialLR(LRScheduler):
    """``schedulers[i]`` from ``milestones[i-1]`` on, each restarted at its own step 0."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers = list(schedulers)
        milestones = [int(m) for m in milestones]
        if len(milestones) != len(schedulers) - 1 or milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: expected {len(schedulers) - 1} increasing milestones for "
                             f"{len(schedulers)} schedulers, got {milestones}")
        for i, s in enumerate(schedulers):
            if getattr(s, "optimizer", None) is not optimizer or not hasattr(s, "lr_at"):
                raise ValueError(f"SequentialLR: scheduler {i} must be a schedule of the same optimizer")
        self.schedulers, self.milestones = schedulers, milestones
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        i = bisect.bisect_right(self.milestones, t)
        return self.schedulers[i].lr_at(t - (self.milestones[i - 1] if i else 0))

    def _config(self):
        return {"milestones": tuple(self.milestones)}


class OneCycleLR(LRScheduler):
    """The 1cycle policy: lr from max_lr/div_factor up to max_lr (``pct_start`` of the steps), then down to
    max_lr/(div_factor*final_div_factor); momentum (or Adam's beta1) cycles the other way."""

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: pass total_steps, or epochs and steps_per_epoch")
            total_steps = int(epochs) * int(steps_per_epoch)
        _check("OneCycleLR", "total_steps", total_steps, 1, integer=True)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        groups = optimizer.param_groups
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        self.total_steps = int(total_steps)
        self.anneal = anneal_strategy
        s = float(pct_start * total_steps)
        # (end step, lr start/end key, momentum start/end key) per phase, as torch defines them
        if three_phase:
            self.phases = [(s - 1, "initial", "max", "max_m", "base_m"),
                           (2 * s - 2, "max", "initial", "base_m", "max_m"),
                           (total_steps - 1, "initial", "min", "max_m", "max_m")]
        else:
            self.phases = [(s - 1, "initial", "max", "max_m", "base_m"),
                           (total_steps - 1, "max", "min", "base_m", "max_m")]
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum and not all("momentum" in g or "betas" in g for g in groups):
            raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with 'momentum' or 'betas'")
        self.points = []
        for g, mx in zip(groups, max_lrs):
            init = mx / div_factor
            g["initial_lr"] = init
            self.points.append({"initial": init, "max": mx, "min": init / final_div_factor,
                                "base_m": base_momentum, "max_m": max_momentum})
        super().__init__(optimizer, last_epoch)

    def _annealed(self, t, key):
        if t > self.total_steps:     # (torch allows one step past the last: its lr is never used)
            raise ValueError(f"OneCycleLR: stepped {t} times, more than total_steps={self.total_steps}")
        start = 0.0
        for i, phase in enumerate(self.phases):
            end = phase[0]
            if t <= end or i == len(self.phases) - 1:
                pct = (t - start) / (end - start) if end != start else 1.0
                a, b = (phase[1], phase[2]) if key == "lr" else (phase[3], phase[4])
                return [self._anneal(p[a], p[b], pct) for p in self.points]
            start = end

    def _anneal(self, a, b, pct):
        if self.anneal == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (b - a) * pct + a

    def lr_at(self, t):
        return self._annealed(t, "lr")

    def _apply(self):
        super()._apply()
        if self.cycle_momentum:
            for g, m in zip(self.optimizer.param_groups, self._annealed(self.last_epoch, "momentum")):
                if "betas" in g:
                    g["betas"] = (m, g["betas"][1])
                else:
                    g["momentum"] = m

    def _config(self):
        return {"total_steps": self.total_steps}


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when the metric passed to ``step(metric)`` has not improved
    for ``patience`` steps (then wait ``cooldown`` steps); never below ``min_lr``."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min'/'max' and threshold_mode 'rel'/'abs', "
                             f"got {mode!r}, {threshold_mode!r}")
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor!r}")
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        self.min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.eps = int(cooldown), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _better(self, a):
        if self.mode == "min":
            ref = self.best * (1 - self.threshold) if self.threshold_mode == "rel" else self.best - self.threshold
            return a < ref
        ref = self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        return a > ref

    def step(self, metrics):
        current = float(metrics)
        self.last_epoch += 1
        if self._better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g, low in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(g["lr"] * self.factor, low)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    _STATE = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "mode", "factor", "patience",
              "threshold", "threshold_mode", "cooldown", "eps")

    def state_dict(self):
        return {**{k: getattr(self, k) for k in self._STATE}, "min_lrs": tuple(self.min_lrs)}

    def load_state_dict(self, state):
        for k in self._STATE:
            if k in state:
                setattr(self, k, state[k])
        self.min_lrs = list(state.get("min_lrs", self.min_lrs))


__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR", "LinearLR", "CosineAnnealingLR",
           "SequentialLR", "OneCycleLR", "ReduceLROnPlateau", "LinearWarmup"]
