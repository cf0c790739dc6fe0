"""Optimizers built from pluggable UPDATE rules.

``Optimizer.step()`` calls ``rule.update(theta, grad, state, hp)`` on every
parameter with a gradient (through ``rule.update_group``, which a rule may
override to do its per-call setup once per parameter group). Built-in rules: "sgd", "adam", "adamw", "rmsprop", "adadelta" (fused
Numba kernels; numpy references with ``fused=False``). Register your own with
`register_rule` and build it by name with `create`.
"""
from .rules import UpdateRule, FunctionRule, REQUIRED, SGDRule, AdamRule, AdamWRule
from .registry import register_rule, get_rule, available_rules
from .adaptive_rules import RMSpropRule, AdadeltaRule
from .optimizer import Optimizer, SGD, Adam, AdamW, RMSprop, Adadelta, create
from .schedule import LRScheduler, StepLR, CosineAnnealingLR, LinearWarmup
from . import schedule, lr_scheduler

__all__ = [
    "UpdateRule", "FunctionRule", "REQUIRED", "SGDRule", "AdamRule", "AdamWRule", "register_rule", "get_rule",
    "available_rules", "Optimizer", "SGD", "Adam", "AdamW", "create", "LRScheduler", "StepLR",
    "CosineAnnealingLR", "LinearWarmup", "schedule", "lr_scheduler", "RMSprop", "Adadelta", "RMSpropRule",
    "AdadeltaRule",
]
