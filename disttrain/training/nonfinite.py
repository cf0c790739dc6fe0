"""Non-finite training is stopped, never trained on and never checkpointed.

Every optimizer step, after backward has averaged the gradients across ranks, `NonFiniteGuard.check`
computes the global gradient norm (one pass over the gradients; no extra collective: the averaged
gradients are the same on every rank, and a NaN/inf on any rank makes them NaN/inf on all, so every
rank decides the same). A non-finite norm stops the job on every rank with `NonFiniteError` (the
step, the last finite loss, what to try) before the optimizer applies it, or, with
``[train] skip_nonfinite_steps = N``, skips that update (gradients dropped, the model's buffers such as
BatchNorm's running statistics restored by the Trainer, the step counted) up to N
times. A loss that is non-finite while the gradients are finite is caught at the next metrics
allreduce or checkpoint gather (`check_interval_sums`), also on every rank at once, and a checkpoint
refuses non-finite state (`check_state_finite`), so `keep_last` never deletes a good checkpoint for
a bad one.
"""
import logging
import math
import os

import numpy as np


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf (the message says at which step and what to try)."""


def _hint(lr):
    lr_text = f" (now {lr:.4g})" if lr is not None else ""
    return (f"Try a lower [optimizer] lr{lr_text}, a warm-up ([schedule] warmup_steps), checking the data for "
            "NaN/inf values, or [train] skip_nonfinite_steps = N to skip up to N such steps.")


def grad_norm(params):
    """The L2 norm of all gradients (inf/nan if any gradient is non-finite); None when none exist."""
    total, any_grad = 0.0, False
    for p in params:
        g = p.grad
        if g is None:
            continue
        any_grad = True
        flat = np.asarray(getattr(g, "data", g)).ravel(order="K")      # a view for C- or F-ordered arrays
        with np.errstate(over="ignore", invalid="ignore"):
            sq = float(np.dot(flat, flat))
        if not math.isfinite(sq) and np.isfinite(flat).all():        # float32 overflow of the sum only
            sq = float(np.dot(flat.astype(np.float64), flat.astype(np.float64)))
        total += sq
    return math.sqrt(total) if any_grad else None


class NonFiniteGuard:
    """Per-step check of the loss and gradient norm; counts skipped steps (checkpointed)."""

    def __init__(self, skip_limit=0, skipped=0, last_finite=None, rank=0):
        self.skip_limit = int(skip_limit)
        self.skipped = int(skipped)
        self.rank = rank
        self.last_finite = last_finite          # (step, loss) of this rank's last finite loss
        self._local_bad = None                  # this rank's first non-finite loss of the current step
        # Fault injection for the tests: DTRUN_TEST_NAN_LOSS_AT="RANK:STEP[,STEP...]" makes that rank's
        # loss NaN at those (1-based) steps, so backward sends NaN gradients into the allreduce.
        r, _, steps = os.environ.get("DTRUN_TEST_NAN_LOSS_AT", "").partition(":")
        self._poison = {int(x) for x in steps.split(",") if x.strip().isdigit()} if r.strip() == str(rank) else set()

    def inject(self, loss, step):
        """The loss, made NaN at the steps DTRUN_TEST_NAN_LOSS_AT names for this rank (tests only)."""
        return loss * float("nan") if step in self._poison else loss

    def observe_loss(self, step, value):
        if math.isfinite(value):
            self.last_finite = (step, value)
        elif self._local_bad is None:
            self._local_bad = value

    def _last(self):
        if self.last_finite is None:
            return "no finite loss yet"
        return f"last finite loss {self.last_finite[1]:.6g} at step {self.last_finite[0]}"

    def check(self, step, params, lr=None, agree=False):
        """After backward, before the update of optimizer step `step` (1-based). Returns True to apply
        the update, False to skip it (gradients must then be dropped); raises NonFiniteError.
        ``agree``: the gradients differ per rank (not averaged yet), so a max-allreduce of the
        verdict makes every rank decide alike."""
        local_bad, self._local_bad = self._local_bad, None
        norm = grad_norm(params)
        if agree:
            from .. import distributed as dist
            flag = np.array([0.0 if norm is None or math.isfinite(norm) else 1.0])
            dist.all_reduce(flag, op="max")
            if flag[0] and (norm is None or math.isfinite(norm)):
                norm = float("nan")         # another rank's gradients are non-finite
        if norm is None or math.isfinite(norm):
            return True
        if self.skipped < self.skip_limit:
            self.skipped += 1
            if self.rank == 0:
                logging.getLogger("disttrain").warning(
                    f"disttrain: step {step}: the gradient norm is {norm}; update skipped ({self.skipped} of at most "
                    f"{self.skip_limit}, [train] skip_nonfinite_steps)")
            return False
        loss_text = f"; the loss on this rank was {local_bad}" if local_bad is not None else ""
        skipped = (f" after skipping {self.skipped} step(s) (skip_nonfinite_steps = {self.skip_limit})"
                   if self.skip_limit else "")
        raise NonFiniteError(f"training diverged at step {step}{skipped}: the gradient norm is {norm}"
                             f"{loss_text} ({self._last()}). The update was not applied and no checkpoint "
                             f"was written for it. {_hint(lr)}")

    def check_interval_sums(self, step, sums, lr=None):
        """`sums`: the ranks' summed (or gathered) logging-interval sums; loss sums come first."""
        values = np.asarray(sums, dtype=np.float64)
        if np.isfinite(values).all():
            return
        raise NonFiniteError(f"training diverged by step {step}: the training loss is not finite "
                             f"({self._last()} on this rank). No checkpoint was written for it. {_hint(lr)}")


def check_state_finite(arrays, step):
    """NonFiniteError naming the first array (of a checkpoint being written) holding NaN/inf."""
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise NonFiniteError(f"refusing to write the checkpoint of step {step}: {name} holds {bad} non-finite "
                                 f"value(s) (of {a.size}); nothing was written and the earlier checkpoints are kept. "
                                 f"{_hint(None)}")
