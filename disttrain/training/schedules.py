"""Learning-rate schedules a config can name: ``[schedule] name = "cosine"`` plus its keys.

Every schedule gets the common linear warm-up (``warmup_steps``, ``warmup_start_factor``).
A new one is one `register_schedule` in a module listed in ``[job] imports``::

    @register_schedule("exp", params=[Key("gamma", "float", 0.99, "factor per step", low=0.0)])
    def exp(section, optimizer, steps):      # steps: optimizer steps after the warm-up
        return MyExponentialLR(optimizer, section.gamma)   # step(), state_dict(), load_state_dict()

A builder returns a schedule object advanced once per optimizer step, or None (constant rate).
"""
from .config import Key
from .registry import Registry

SCHEDULES = Registry("schedule")


def register_schedule(name, params=()):
    """Decorator registering ``builder(section, optimizer, steps)`` as [schedule] name ``name``."""
    return SCHEDULES.decorator(name, params)


def build_schedule(cfg, optimizer, total_steps):
    """The job's schedule over `total_steps` optimizer steps (warm-up included), or None."""
    from .. import optim
    s = cfg.schedule
    main = SCHEDULES[s.name].target(s, optimizer, max(1, total_steps - s.warmup_steps))
    if s.warmup_steps:
        return optim.LinearWarmup(optimizer, s.warmup_steps, s.warmup_start_factor, then=main)
    return main


@register_schedule("constant")
def _constant(s, optimizer, steps):
    return None


@register_schedule("step", params=[
    Key("step_size", "int", 100, "step: multiply the learning rate by gamma every step_size steps.", low=1),
    Key("gamma", "float", 0.1, "step: the factor.", low=0.0)])
def _step(s, optimizer, steps):
    from .. import optim
    return optim.StepLR(optimizer, s.step_size, s.gamma)


@register_schedule("cosine", params=[
    Key("t_max", "int", 0, "cosine: steps of one half period (0: all training steps after warm-up).", low=0),
    Key("min_lr", "float", 0.0, "cosine: the lowest learning rate.", low=0.0)])
def _cosine(s, optimizer, steps):
    from .. import optim
    return optim.CosineAnnealingLR(optimizer, s.t_max or steps, s.min_lr)
