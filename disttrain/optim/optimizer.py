"""`Optimizer`: parameter groups and per-parameter state around an UPDATE rule.

``step()`` hands each parameter's arrays to the rule:
``rule.update(p.data, p._grad, state[p], group_hyperparameters)``, or rather,
for the contiguous ones (nearly all), ``rule.update_group`` with the list of
them, whose default makes exactly those calls in order. The
gradient is only read, never replaced: under data parallelism it is a view
into the allreduced bucket.
"""
import numpy as np

from ..autograd.tensor import Tensor
from ..autograd.grad_mode import enable_grad
from .rules import REQUIRED
from .registry import get_rule


class Optimizer:
    """``Optimizer(params, rule, **hyperparameters)``.

    ``params``: an iterable of Tensors, or of dicts ``{"params": [...], **overrides}``
    (parameter groups). ``rule``: an `UpdateRule` or a registered rule name.
    ``fused=False`` uses the rule's plain numpy reference instead of its kernel.
    """

    def __init__(self, params, rule, fused=True, **hyperparameters):
        self.rule = get_rule(rule) if isinstance(rule, str) else rule
        self.fused = bool(fused)
        self.defaults = dict(self.rule.defaults)
        if self.rule.defaults:
            unknown = sorted(set(hyperparameters) - set(self.rule.defaults))
            if unknown:
                raise TypeError(f"{self._label()}: unknown hyperparameter(s) {', '.join(unknown)}; "
                                f"known: {', '.join(self.rule.defaults)}")
        self.defaults.update(hyperparameters)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{self._label()}: params must be an iterable of Tensors or dicts, got one Tensor "
                            "(pass [tensor] or model.parameters())")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._label()}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _label(self):
        return type(self).__name__ if type(self) is not Optimizer else f"Optimizer({self.rule.name!r})"

    # -- groups -------------------------------------------------------------
    def add_param_group(self, group):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{self._label()}: a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._label()}: parameter {i} of group {len(self.param_groups)} is a "
                                f"{type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{self._label()}: can't optimize a non-leaf Tensor (parameter {i}, shape {p.shape})")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError(f"{self._label()}: some parameters appear in more than one parameter group "
                             "(or twice in one)")
        full = {k: v for k, v in group.items() if k != "params"}
        for key, default in self.defaults.items():
            if default is REQUIRED and key not in full:
                raise TypeError(f"{self._label()}: hyperparameter {key!r} is required")
            full.setdefault(key, default)
        self.rule.validate(full)
        full["params"] = params
        self.param_groups.append(full)

    @staticmethod
    def hyperparameters(group):
        return {k: v for k, v in group.items() if k != "params"}

    # -- stepping -------------------------------------------------------------
    def _arrays(self, p, gi, pi):
        """(theta, grad) ready for a rule: theta updated in place, grad only read."""
        theta, grad = p.data, p._grad
        if grad.shape != theta.shape:
            raise ValueError(f"{self._label()}.step: gradient shape {grad.shape} does not match parameter "
                             f"shape {theta.shape} (parameter {pi} of group {gi})")
        if grad.dtype != theta.dtype:
            grad = grad.astype(theta.dtype)       # a copy; p._grad itself is left alone
        return theta, grad

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        update = self.rule.update if self.fused else self.rule.reference
        update_group = getattr(self.rule, "update_group", None) if self.fused else None
        states = self.state
        for gi, group in enumerate(self.param_groups):
            hp = self.hyperparameters(group)
            ready = []           # (theta, grad, state) for update_group, in parameter order
            pi = -1
            for p in group["params"]:
                pi += 1
                grad = p._grad
                if grad is None:
                    continue
                theta = p.data
                # (the usual case, same shape and dtype, checked inline; _arrays says what is wrong or casts)
                if grad.dtype is not theta.dtype or grad.shape != theta.shape:
                    theta, grad = self._arrays(p, gi, pi)
                state = states.get(p)
                if state is None:
                    state = states[p] = self.rule.init_state(theta, hp)
                flags = theta.flags
                if flags.c_contiguous and flags.writeable:
                    if update_group is not None:
                        ready.append((theta, grad, state))
                    else:
                        update(theta, grad, state, hp)
                else:  # rules (and kernels) work on contiguous arrays; write the result back
                    work = np.ascontiguousarray(theta)
                    update(work, np.ascontiguousarray(grad), state, hp)
                    theta[...] = work
            if ready:
                update_group(ready, hp)
        return loss

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p._grad = None
                elif p._grad is not None:
                    p._grad[...] = 0     # in place: bucket views stay valid

    # -- state dict -----------------------------------------------------------
    def state_dict(self):
        """{"state": {param index: {name: array or scalar}}, "param_groups": [{hp..., "params": [indices]}]}.

        Parameters are numbered across groups in order, as torch does; values are
        copies (numpy arrays and plain Python scalars/tuples only).
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            saved = {k: _plain(v) for k, v in self.hyperparameters(group).items()}
            saved["params"] = ids
            groups.append(saved)
        state = {}
        for p, st in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _plain(v) for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state saved by `state_dict` (checked before anything changes)."""
        label = self._label()
        try:
            saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{label}.load_state_dict: expected a dict with 'state' and 'param_groups'") from None
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{label}.load_state_dict: saved state has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        params = {}
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{label}.load_state_dict: group {gi} has {len(saved['params'])} parameters in the "
                                 f"saved state, {len(group['params'])} here")
            params.update(zip((int(i) for i in saved["params"]), group["params"]))
        new_state = {}
        for key, st in saved_state.items():
            try:
                p = params[int(key)]
            except (KeyError, ValueError):
                raise ValueError(f"{label}.load_state_dict: state for unknown parameter index {key!r}") from None
            entry = {}
            for name, value in st.items():
                if isinstance(value, (np.ndarray, Tensor)):
                    value = np.asarray(getattr(value, "data", value))
                    if name in self.rule.state_like_param and value.shape != p.data.shape:
                        raise ValueError(f"{label}.load_state_dict: state {name!r} of parameter {key} has shape "
                                         f"{value.shape}, the parameter has shape {p.data.shape}")
                    value = np.array(value, dtype=p.data.dtype if value.dtype.kind == "f" else value.dtype)
                entry[name] = value
            new_state[p] = entry
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            hp = {k: _restore(v) for k, v in saved.items() if k != "params"}
            full = {**self.hyperparameters(group), **hp}
            self.rule.validate(full)
            new_groups.append(full)
        for group, full in zip(self.param_groups, new_groups):
            group.update(full)
        self.state = new_state

    def __repr__(self):
        lines = [f"{self._label()} ("]
        for i, group in enumerate(self.param_groups):
            hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters(group).items())
            lines.append(f"  group {i}: {len(group['params'])} params, {hp}")
        return "\n".join(lines) + "\n)"


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return tuple(value)
    return value


def _restore(value):
    # Values round-tripped through an .npz come back as 0-d/1-d arrays.
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else tuple(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class SGD(Optimizer):
    """torch.optim.SGD: ``SGD(params, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)``."""

    def __init__(self, params, lr=REQUIRED, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 fused=True):
        super().__init__(params, "sgd", fused=fused, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay, no amsgrad)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True):
        super().__init__(params, "adam", fused=fused, lr=lr, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay)


class AdamW(Optimizer):
    """torch.optim.AdamW (decoupled weight decay)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, fused=True):
        super().__init__(params, "adamw", fused=fused, lr=lr, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: ``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False)``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 fused=True):
        super().__init__(params, "rmsprop", fused=fused, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered)


class Adadelta(Optimizer):
    """torch.optim.Adadelta: ``Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0)``."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, fused=True):
        super().__init__(params, "adadelta", fused=fused, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


_BUILTIN_CLASSES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adadelta": Adadelta}


def create(name, params, **hyperparameters):
    """The optimizer for a registered rule name: ``create("adamw", model.parameters(), lr=3e-4)``."""
    rule = get_rule(name)
    cls = _BUILTIN_CLASSES.get(rule.name)
    if cls is not None and get_rule(rule.name) is rule:
        return cls(params, **hyperparameters)
    return Optimizer(params, rule, **hyperparameters)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "create"]
