"""Tasks a config can name: ``[task] name = "classification"``: the loss and the metrics of a job.

A task turns (model output, target) into the loss the trainer backpropagates and into
per-batch sums from which it computes its metrics. The trainer never looks inside: a new task
(e.g. a contrastive loss) is one `register_task` in a module listed in ``[job] imports``::

    @register_task("hinge", params=[Key("margin", "float", 1.0, "margin", low=0.0)])
    class Hinge(Task):
        def loss(self, output, target): ...

Sums are what makes the metrics exact across ranks and across a resume: each rank adds the
sums of its own batches, the ranks' sums are added at the log/eval step (one allreduce), and a
checkpoint keeps every rank's partial sums of the current logging interval.
"""
import math

import numpy as np

from .config import Key
from .registry import Registry

TASKS = Registry("task")


def register_task(name, params=()):
    """Class decorator registering a `Task` subclass under ``name``; ``params``: the `Key`s [task] takes."""
    return TASKS.decorator(name, params)


def build_task(section):
    """The task object for a validated [task] section."""
    return TASKS[section.name].target(section)


class Task:
    """Loss and metrics of a job. ``stats(output, target)`` gives the numbers summed over batches
    and ranks (exact integers where possible); ``metrics(loss, stats)`` names what is reported;
    ``weight(target)`` is what a mean-reduced loss averaged over (for validation averages)."""
    primary = "loss"          # the metric "best" tracks in the summary
    higher_is_better = False
    n_stats = 0               # how many numbers stats() returns
    integer_labels = True     # targets are class indices (False: float targets, e.g. regression)

    def __init__(self, section=None):
        self.cfg = section

    def loss(self, output, target):
        raise NotImplementedError

    def weight(self, target):
        return len(target.data)

    def stats(self, output, target):
        return ()

    def metrics(self, loss, stats):
        return {"loss": loss}

    def metric_names(self):
        return list(self.metrics(1.0, [1] * self.n_stats))

    def describe(self, metrics, prefix=""):
        """A short text of the metrics besides the loss, for log lines."""
        return ""

    def better(self, value, best):
        if value is None or not math.isfinite(value):      # a NaN/inf metric is never the best
            return False
        return best is None or (value > best if self.higher_is_better else value < best)


_CE_KEYS = [
    Key("label_smoothing", "float", 0.0, "classification/language_model: cross-entropy label smoothing "
        "(0: none).", low=0.0, high=1.0),
    Key("ignore_index", "int", -100, "classification/language_model: targets equal to this are left out of "
        "the loss and the metrics."),
]


@register_task("classification", params=_CE_KEYS)
class Classification(Task):
    """Cross-entropy over class logits (N, C); accuracy = share of argmax hits. Targets equal to
    ignore_index count for nothing (loss, accuracy and the validation average)."""
    primary = "accuracy"
    higher_is_better = True
    n_stats = 2
    class_axis = 1

    def __init__(self, section=None):
        from .. import nn
        super().__init__(section)
        self.ignore = section.ignore_index if section is not None else -100
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=self.ignore,
                                           label_smoothing=section.label_smoothing if section is not None else 0.0)

    def loss(self, output, target):
        return self.loss_fn(output, target)

    def weight(self, target):
        return int((target.data != self.ignore).sum())

    def stats(self, output, target):
        keep = target.data != self.ignore
        hits = (output.data.argmax(axis=self.class_axis) == target.data) & keep
        return int(hits.sum()), int(keep.sum())

    def metrics(self, loss, stats):
        correct, samples = stats
        return {"loss": loss, "accuracy": correct / samples if samples else float("nan")}

    def describe(self, m, prefix=""):
        return f"{prefix}accuracy {100 * m['accuracy']:.2f}%" if prefix else f"acc {100 * m['accuracy']:.2f}%"


@register_task("language_model", params=_CE_KEYS)
class LanguageModel(Classification):
    """Next-token cross-entropy over logits (N, T, V) and targets (N, T), averaged over the tokens;
    metrics: token accuracy and perplexity exp(loss)."""
    primary = "loss"
    higher_is_better = False
    class_axis = -1

    def loss(self, output, target):
        v = output.shape[-1]
        return self.loss_fn(output.reshape(-1, v), target.reshape(-1))

    def metrics(self, loss, stats):
        m = super().metrics(loss, stats)
        m["perplexity"] = math.exp(min(loss, 700.0)) if math.isfinite(loss) else loss
        return m

    def describe(self, m, prefix=""):
        return f"{prefix}ppl {m['perplexity']:.3f}"


@register_task("regression")
class Regression(Task):
    """Mean squared error between output and a float target of the same shape; metric: mse."""
    n_stats = 2
    integer_labels = False

    def loss(self, output, target):
        from ..nn import functional as F
        return F.mse_loss(output.reshape(target.shape), target)

    def stats(self, output, target):
        diff = output.data.reshape(target.shape).astype(np.float64) - target.data
        return float((diff * diff).sum()), int(diff.size)

    def metrics(self, loss, stats):
        sq, n = stats
        return {"loss": loss, "mse": sq / n if n else float("nan")}

    def describe(self, m, prefix=""):
        return f"{prefix}mse {m['mse']:.4g}"
