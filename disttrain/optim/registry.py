"""Update rules by name, so a config can say ``name = "lion"``."""
import inspect

from .rules import UpdateRule, FunctionRule, SGDRule, AdamRule, AdamWRule
from .adaptive_rules import RMSpropRule, AdadeltaRule

_RULES = {}


def _normalise(name):
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an update rule name must be a non-empty string, got {name!r}")
    return name.strip().lower()


def register_rule(name, rule=None, *, defaults=None, override=False):
    """Register an update rule under ``name`` (case-insensitive).

    ``rule`` is a function ``fn(theta, grad, state, hp)`` (state starts as an
    empty dict), an `UpdateRule` subclass or instance, or any object with
    ``update(theta, grad, state, hp)`` (``init_state``, ``validate`` and
    ``defaults`` are optional). Without ``rule`` this is a decorator::

        @dt.optim.register_rule("signsgd", defaults={"lr": 0.01})
        def signsgd(theta, grad, state, hp):
            theta -= hp["lr"] * np.sign(grad)

    Returns the decorated object unchanged.
    """
    key = _normalise(name)

    def register(obj):
        if key in _RULES and not override:
            raise ValueError(f"an update rule named {key!r} is already registered (pass override=True to replace it)")
        _RULES[key] = _as_rule(key, obj, defaults)
        return obj

    return register if rule is None else register(rule)


def _as_rule(key, obj, defaults):
    if inspect.isclass(obj):
        obj = obj()
    if isinstance(obj, UpdateRule):
        rule = obj
    elif hasattr(obj, "update") and callable(obj.update):
        rule = _Adapter(obj)
    elif callable(obj):
        return FunctionRule(obj, key, defaults)
    else:
        raise TypeError(f"register_rule({key!r}): expected a function or an object with update(), "
                        f"got {type(obj).__name__}")
    if rule.name is None:
        rule.name = key
    if defaults is not None:
        rule.defaults = dict(defaults)
    return rule


class _Adapter(UpdateRule):
    """A duck-typed rule object (update, optional init_state/validate/defaults)."""

    def __init__(self, obj):
        self.obj = obj
        self.name = getattr(obj, "name", None)
        self.defaults = dict(getattr(obj, "defaults", {}) or {})
        self.state_like_param = tuple(getattr(obj, "state_like_param", ()))

    def validate(self, hp):
        if hasattr(self.obj, "validate"):
            self.obj.validate(hp)

    def init_state(self, theta, hp):
        return self.obj.init_state(theta, hp) if hasattr(self.obj, "init_state") else {}

    def update(self, theta, grad, state, hp):
        return self.obj.update(theta, grad, state, hp)


def get_rule(name):
    """The registered `UpdateRule` for ``name``; ValueError listing the known names otherwise."""
    key = _normalise(name)
    try:
        return _RULES[key]
    except KeyError:
        raise ValueError(f"unknown optimizer rule {name!r}; known rules: {', '.join(sorted(_RULES))}") from None


def available_rules():
    return sorted(_RULES)


for _rule in (SGDRule(), AdamRule(), AdamWRule(), RMSpropRule(), AdadeltaRule()):
    _RULES[_rule.name] = _rule
