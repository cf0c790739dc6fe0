"""Extensions: what a config job does around its optimizer steps, called by `Trainer` at events.

Events (every rank calls every extension at the same events, so an extension may run
collectives; only rank 0 writes shared files, and never inside a collective):

- ``initialize(trainer)``: once, after setup and resume, before the first step;
- ``after_backward(trainer)``: the step's gradients are final and averaged over the ranks, the
  optimizer has not stepped yet (non-finite check, gradient clipping);
- ``after_step(trainer)``: the optimizer stepped and ``trainer.step`` counts it (schedule, log,
  progress, evaluation, checkpoint);
- ``finalize(trainer)``: always, at the end (also when a step raised; ``trainer.finished`` tells).

`default_extensions` lists the job's extensions in the order they run (the order matters: a
checkpoint saves the schedule's state after it stepped, the log record is written before the
evaluation's). Add your own with ``trainer.extend(MyExtension())`` or ``Trainer(...,
extensions=[...])``; `Trainer`'s docstring lists the attributes an extension can use.
"""
import os
import signal
import time

import numpy as np

from . import checkpoint as ckpt


class Extension:
    """Base class: every event is a no-op; override the ones you need."""

    def initialize(self, trainer):
        pass

    def after_backward(self, trainer):
        pass

    def after_step(self, trainer):
        pass

    def finalize(self, trainer):
        pass


def default_extensions(trainer):
    cfg = trainer.cfg
    exts = [NonFiniteCheck()]
    if cfg.train.grad_clip > 0:
        exts.append(GradClip(cfg.train.grad_clip))
    exts += [ScheduleStep(), LogReport(cfg.logging.log_interval), ProgressReport(),
             Evaluator(cfg.train.eval_interval)]
    if cfg.checkpoint.enabled:
        exts.append(Checkpointer(cfg.checkpoint.interval, cfg.checkpoint.keep_last))
    exts += [TimelineWriter(), FaultInjection.from_env()]
    return exts


def _end_of_epoch(trainer):
    return trainer.step % trainer.spe == 0


def _epoch(trainer):
    return (trainer.step - 1) // trainer.spe + 1


class NonFiniteCheck(Extension):
    """Stop (or, with [train] skip_nonfinite_steps, skip the update of) a step whose averaged gradients
    are NaN/inf, before the optimizer applies them (`nonfinite.NonFiniteGuard`: every rank holds the
    same averaged gradients, so every rank reaches the same verdict without a collective)."""

    def after_backward(self, trainer):
        # A sharded optimizer reduces the gradients inside its step: each rank holds only its own, so the
        # ranks must agree on the verdict (one tiny allreduce).
        agree = trainer.cfg.distributed.shard_optimizer and trainer.world > 1
        if not trainer.guard.check(trainer.step + 1, trainer.model.parameters(), trainer.lr, agree=agree):
            trainer.apply_update = False


class GradClip(Extension):
    """Clip the global gradient 2-norm to `max_norm` ([train] grad_clip). After DDP's allreduce the
    gradients are the same on every rank, so every rank computes the same norm and scale."""

    def __init__(self, max_norm):
        self.max_norm = float(max_norm)
        self.last_norm = None

    def after_backward(self, trainer):
        from ..nn.utils import clip_grad_norm_
        self.last_norm = float(clip_grad_norm_(trainer.model.parameters(), self.max_norm))


class ScheduleStep(Extension):
    """Advance the learning-rate schedule once per optimizer step."""

    def after_step(self, trainer):
        if trainer.schedule is not None:
            trainer.schedule.step()


class LogReport(Extension):
    """Every `interval` steps (and at the last): add the ranks' sums of the interval, write a train
    record to metrics.jsonl (rank 0) and start a new interval. The record is also
    ``trainer.last_train`` for the progress display."""

    def __init__(self, interval):
        self.interval = interval

    def initialize(self, trainer):
        self.t_interval, self.sync_s, self.steps = time.perf_counter(), 0.0, 0

    def after_backward(self, trainer):
        stats = trainer.ddp.last_sync_stats
        if stats:
            self.sync_s += stats.get("wait_s", 0.0)

    def after_step(self, trainer):
        from .. import distributed as dist
        self.steps += 1
        step = trainer.step
        if step % self.interval != 0 and step != trainer.total:
            return
        sums = np.array(trainer.interval.state(), dtype=np.float64)
        dist.all_reduce(sums, op="sum")
        trainer.guard.check_interval_sums(step, sums, trainer.lr)     # a NaN loss never reaches the log
        now = time.perf_counter()
        t = trainer.cfg.train
        rate = self.steps * t.batch_size * t.grad_accum_steps * trainer.world / max(now - self.t_interval, 1e-9)
        rec = {"kind": "train", "step": step, "epoch": _epoch(trainer)}
        rec.update(trainer.task.metrics(sums[0] / sums[1], list(sums[2:])))
        rec.update({"lr": trainer.lr, "samples_per_s": rate, "sync_s": self.sync_s, "time": now - trainer.t_start})
        if trainer.guard.skip_limit:
            rec["skipped_steps"] = trainer.guard.skipped
        trainer.metrics.write(rec)
        trainer.last_train = rec
        trainer.interval = trainer.new_interval()
        self.t_interval, self.sync_s, self.steps = now, 0.0, 0

    def finalize(self, trainer):
        trainer.metrics.close()


class ProgressReport(Extension):
    """Rank 0's progress bar, or a plain log line per train record."""

    def after_step(self, trainer):
        rec, p = trainer.last_train, trainer.progress
        if rec is None or rec["step"] != trainer.step:
            p.update(trainer.step)
            return
        p.update(trainer.step, rec["loss"], rec["samples_per_s"])
        if p.mode == "plain":
            t = trainer.cfg.train
            shown = trainer.task.describe(rec)
            p.log(f"step {trainer.step}/{trainer.total} epoch {rec['epoch']}/{t.epochs} loss {rec['loss']:.4f} "
                  + (f"{shown} " if shown else "") + f"lr {rec['lr']:.4g} {rec['samples_per_s']:,.0f} samples/s")

    def finalize(self, trainer):
        trainer.progress.close()


class Evaluator(Extension):
    """Validate every `interval` steps (0: at the end of every epoch) and at the last step."""

    def __init__(self, interval):
        self.interval = interval

    def after_step(self, trainer):
        step = trainer.step
        if not len(trainer.data.x_val):
            return
        if not ((self.interval and step % self.interval == 0) or (not self.interval and _end_of_epoch(trainer))
                or step == trainer.total):
            return
        m = trainer.evaluate()
        val = {f"val_{k}": v for k, v in m.items()}
        trainer.last_eval = {"step": step, **val}
        primary = m[trainer.task.primary]
        if trainer.task.better(primary, trainer.best):
            trainer.best = primary
        trainer.metrics.write({"kind": "eval", "step": step, "epoch": _epoch(trainer), **val,
                               "time": time.perf_counter() - trainer.t_start})
        shown = trainer.task.describe(m, prefix="val_")
        trainer.progress.log(f"eval step {step}: val_loss {m['loss']:.4f}" + (f" {shown}" if shown else ""))


class Checkpointer(Extension):
    """Every `interval` steps (0: at the end of every epoch) and at the last step: rank 0 writes a
    checkpoint and keeps the newest `keep_last`."""

    def __init__(self, interval, keep_last):
        self.interval, self.keep_last = interval, keep_last

    def after_step(self, trainer):
        step = trainer.step
        if not ((self.interval and step % self.interval == 0) or (not self.interval and _end_of_epoch(trainer))
                or step == trainer.total):
            return
        per_rank_interval = trainer.interval.gather()      # on every rank, outside the rank-0 branch
        trainer.guard.check_interval_sums(step, per_rank_interval, trainer.lr)
        if trainer.cfg.distributed.shard_optimizer:
            trainer.optimizer.consolidate_state_dict(to=0)  # every rank sends its slices to rank 0
        hook_arrays = trainer.comm_hook_arrays()            # every rank's comm-hook state (PowerSGD's memories)
        if trainer.is_main:
            ckpt.save(trainer.ckpt_dir, step, trainer.model, trainer.optimizer,
                      trainer.checkpoint_meta(per_rank_interval), keep_last=self.keep_last, hook_arrays=hook_arrays)


class TimelineWriter(Extension):
    """Write this rank's DDP timeline ([distributed] timeline = true) when the job finished."""

    def finalize(self, trainer):
        if trainer.timeline and trainer.finished:
            trainer.ddp.save_timeline()


class FaultInjection(Extension):
    """For the resume tests: DTRUN_TEST_KILL_AT_STEP="RANK:STEP" makes that rank SIGKILL itself
    right after finishing STEP (and its checkpoint, if one was due)."""

    def __init__(self, rank=None, step=None):
        self.rank, self.step = rank, step

    @classmethod
    def from_env(cls):
        spec = os.environ.get("DTRUN_TEST_KILL_AT_STEP", "")
        if ":" in spec:
            r, s = spec.split(":", 1)
            return cls(int(r), int(s))
        return cls()

    def after_step(self, trainer):
        if self.rank == trainer.rank and self.step == trainer.step:
            os.kill(os.getpid(), signal.SIGKILL)
