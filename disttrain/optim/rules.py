"""UPDATE rules: ``update(theta, grad, state, hp)`` changes ``theta`` (and ``state``) in place.

A rule sees plain numpy arrays: ``theta`` is the parameter's array, ``grad``
its gradient (read only: it may be a view into a communication bucket),
``state`` the parameter's own dict (numpy arrays and plain scalars, so it can
be checkpointed) and ``hp`` the hyperparameters of its parameter group.

The built-in rules follow torch.optim's documented algorithms. Each has a
fused Numba kernel (`update`) and a plain numpy version (`reference`), which
the tests use as the oracle for the kernel.
"""
import math
import numbers

import numpy as np

from ..ops._arrays import lazy_kernels

# Imported (with numba) when the first fused update runs, so `import disttrain.optim` stays light.
_kernels = lazy_kernels("optim")


class UpdateRule:
    """Base class of update rules.

    Subclasses set ``defaults`` (hyperparameter name -> default, or REQUIRED)
    and implement ``update``; ``init_state`` builds a parameter's state before
    its first update; ``validate`` raises ValueError for bad hyperparameters.
    ``state_like_param`` names state arrays that have the parameter's shape
    (checked when an optimizer state dict is loaded).
    """

    name = None
    defaults = {}
    state_like_param = ()

    def validate(self, hp):
        pass

    def init_state(self, theta, hp):
        return {}

    def update(self, theta, grad, state, hp):
        raise NotImplementedError

    def reference(self, theta, grad, state, hp):
        """The plain numpy version of ``update`` (the same unless a rule has a fused kernel)."""
        return self.update(theta, grad, state, hp)

    def update_group(self, items, hp):
        """``update`` of every ``(theta, grad, state)`` in ``items``, in order, all with the same ``hp``
        (what ``Optimizer.step`` calls per parameter group; each ``theta`` C-contiguous and writeable).
        A rule may override it to pay its per-call setup once per group instead of once per parameter."""
        update = self.update
        for theta, grad, state in items:
            update(theta, grad, state, hp)

    def update_scaled(self, theta, grad, state, hp, scale):
        """``update`` with the gradient multiplied by ``scale`` (the sharded optimizer folds the
        1/world_size average in here). Built-in rules pass it to their kernels; any other rule
        gets a scaled copy of the gradient."""
        if scale != 1:
            grad = grad * grad.dtype.type(scale)
        return self.update(theta, grad, state, hp)

    def __repr__(self):
        return f"<update rule {self.name!r}>"


class _Required:
    def __repr__(self):
        return "<required>"


REQUIRED = _Required()


class FunctionRule(UpdateRule):
    """Wraps a plain function ``fn(theta, grad, state, hp)``; its state dict starts empty."""

    def __init__(self, fn, name=None, defaults=None):
        self.fn = fn
        self.name = name or fn.__name__
        self.defaults = dict(defaults or {})
        self.__doc__ = fn.__doc__

    def update(self, theta, grad, state, hp):
        return self.fn(theta, grad, state, hp)


# -- hyperparameter checks (messages name the optimizer, the key and the value) --------
def check_number(rule, hp, key, low=None, low_open=False, high=None, high_open=False):
    value = hp[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{rule}: invalid {key}={value!r} (must be a finite number)")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{rule}: invalid {key}={value!r} (must be {'>' if low_open else '>='} {low})")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{rule}: invalid {key}={value!r} (must be {'<' if high_open else '<='} {high})")


def check_betas(rule, hp):
    betas = hp["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{rule}: invalid betas={betas!r} (must be a pair (beta1, beta2))")
    for i, b in enumerate(betas):
        check_number(rule, {f"betas[{i}]": b}, f"betas[{i}]", low=0.0, high=1.0, high_open=True)


def _flat(arr):
    """A flat view for the kernels (a copy only for read-only inputs such as a strided gradient)."""
    return arr if arr.ndim == 1 else arr.reshape(-1)


def _flat_inplace(arr, what):
    # reshape(-1) of a non-contiguous array is a copy: the kernel's update would be lost.
    if not arr.flags.c_contiguous:
        raise ValueError(f"fused update needs a C-contiguous {what} array, got strides {arr.strides} "
                         f"for shape {arr.shape}")
    return arr if arr.ndim == 1 else arr.reshape(-1)


_CAST_CACHE_SIZE = 256
_CASTS = {}          # (dtype, values) -> values cast to dtype (a pure function: one memo for every rule)


def _cast_scalars(dtype, values, cache=_CASTS):
    """``values`` (a tuple of Python/numpy numbers) cast to ``dtype``'s scalar type, memoised.

    The hyperparameters rarely change between steps (a scheduler changes lr at most once a step),
    while casting them anew costs as much as a small parameter's whole update.
    """
    key = (dtype, values)
    try:
        out = cache.get(key)
    except TypeError:                     # an unhashable value (e.g. a 0-d array): no memo
        return tuple([dtype.type(v) for v in values])
    if out is None:
        if len(cache) >= _CAST_CACHE_SIZE:
            cache.clear()
        out = cache[key] = tuple([dtype.type(v) for v in values])
    return out


# -- SGD ----------------------------------------------------------------------
class SGDRule(UpdateRule):
    """torch.optim.SGD: g += wd*theta; buf = mu*buf + (1-dampening)*g (buf = g on the first step);
    g = g + mu*buf (nesterov) or buf; theta -= lr*g."""

    name = "sgd"
    defaults = dict(lr=REQUIRED, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0)
    state_like_param = ("momentum_buffer",)

    def validate(self, hp):
        check_number("SGD", hp, "lr", low=0.0)
        check_number("SGD", hp, "momentum", low=0.0)
        check_number("SGD", hp, "dampening")
        check_number("SGD", hp, "weight_decay", low=0.0)
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True requires momentum > 0 and dampening = 0 "
                             f"(got momentum={hp['momentum']!r}, dampening={hp['dampening']!r})")

    def reference(self, theta, grad, state, hp):
        lr, mu, wd = hp["lr"], hp["momentum"], hp["weight_decay"]
        g = grad
        if wd != 0:
            g = g + wd * theta
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=theta.dtype, copy=True)
            else:
                buf *= mu
                buf += (1 - hp["dampening"]) * g
            g = g + mu * buf if hp["nesterov"] else buf
        theta -= lr * g

    def update(self, theta, grad, state, hp):
        self.update_scaled(theta, grad, state, hp, 1)

    def update_group(self, items, hp):
        cls = type(self)
        if cls.update is not SGDRule.update or cls.update_scaled is not SGDRule.update_scaled:
            return super().update_group(items, hp)      # a subclass changed the update: call it per parameter
        # update_scaled(..., 1) for many parameters at once: the scalars are cast once per dtype, not
        # per parameter (for B's MLP this loop is half the optimizer's time; the kernels the rest).
        if hp["momentum"] == 0:
            return super().update_group(items, hp)
        nesterov = bool(hp["nesterov"])
        values = (hp["lr"], hp["weight_decay"], hp["momentum"], 1 - hp["dampening"], 1)
        dtype = None
        for theta, grad, state in items:
            if theta.dtype is not dtype:
                dtype = theta.dtype
                scalars = _cast_scalars(dtype, values)
            _sgd_momentum(theta, grad, state, scalars, nesterov)

    def update_scaled(self, theta, grad, state, hp, scale):
        # (per parameter and step: for small parameters this Python is most of the update's time)
        mu = hp["momentum"]
        lr, wd, mu, one_minus_damp, scale = _cast_scalars(
            theta.dtype, (hp["lr"], hp["weight_decay"], mu, 1 - hp["dampening"], scale))
        if mu == 0:
            _kernels.sgd_update(_flat_inplace(theta, "parameter"), _flat(grad), lr, wd, scale)
            return
        _sgd_momentum(theta, grad, state, (lr, wd, mu, one_minus_damp, scale), bool(hp["nesterov"]))


def _sgd_momentum(theta, grad, state, scalars, nesterov):
    """The fused momentum step of one parameter; ``scalars`` = (lr, wd, mu, 1 - dampening, scale), already
    cast to theta's dtype. The momentum buffer is made on the first step (the kernel then copies g into it)."""
    buf = state.get("momentum_buffer")
    first = buf is None
    if first:
        buf = state["momentum_buffer"] = np.zeros(theta.shape, theta.dtype)
    lr, wd, mu, one_minus_damp, scale = scalars
    _kernels.sgd_momentum_update(
        _flat_inplace(theta, "parameter"), _flat(grad), _flat_inplace(buf, "momentum_buffer"),
        lr, wd, mu, one_minus_damp, nesterov, first, scale)


# -- Adam / AdamW -------------------------------------------------------------------
class AdamRule(UpdateRule):
    """torch.optim.Adam (L2 weight decay added to the gradient; amsgrad not supported)."""

    name = "adam"
    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    state_like_param = ("exp_avg", "exp_avg_sq")
    decoupled = False
    label = "Adam"

    def validate(self, hp):
        check_number(self.label, hp, "lr", low=0.0)
        check_betas(self.label, hp)
        check_number(self.label, hp, "eps", low=0.0, low_open=True)
        check_number(self.label, hp, "weight_decay", low=0.0)

    def init_state(self, theta, hp):
        return {"step": 0, "exp_avg": np.zeros(theta.shape, theta.dtype),
                "exp_avg_sq": np.zeros(theta.shape, theta.dtype)}

    def _scalars(self, state, hp):
        state["step"] = step = int(state["step"]) + 1
        beta1, beta2 = hp["betas"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        return beta1, beta2, hp["lr"] / bias_correction1, math.sqrt(bias_correction2)

    def reference(self, theta, grad, state, hp):
        beta1, beta2, step_size, bc2_sqrt = self._scalars(state, hp)
        lr, wd = hp["lr"], hp["weight_decay"]
        g = grad
        if self.decoupled:
            theta *= 1 - lr * wd
        elif wd != 0:
            g = g + wd * theta
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)                     # torch: exp_avg.lerp_(grad, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * (g * g)
        denom = np.sqrt(v) / bc2_sqrt + hp["eps"]
        theta -= step_size * (m / denom)

    def update(self, theta, grad, state, hp):
        self.update_scaled(theta, grad, state, hp, 1)

    def update_scaled(self, theta, grad, state, hp, scale):
        beta1, beta2, step_size, bc2_sqrt = self._scalars(state, hp)
        cast = theta.dtype.type
        lr, wd = hp["lr"], hp["weight_decay"]
        _kernels.adam_update(
            _flat_inplace(theta, "parameter"), _flat(grad), _flat_inplace(state["exp_avg"], "exp_avg"),
            _flat_inplace(state["exp_avg_sq"], "exp_avg_sq"),
            cast(1 - beta1), cast(beta2), cast(1 - beta2), cast(step_size), cast(bc2_sqrt), cast(hp["eps"]),
            cast(0 if self.decoupled else wd), cast(1 - lr * wd if self.decoupled else 1), self.decoupled, cast(scale))


class AdamWRule(AdamRule):
    """torch.optim.AdamW: theta *= 1 - lr*wd (decoupled), then the Adam step without L2."""

    name = "adamw"
    defaults = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    decoupled = True
    label = "AdamW"
