"""The training loop of a config job, the same code on every rank.

Determinism (what makes resume bitwise): data order comes from the sampler's (seed, epoch);
dropout draws from disttrain's generator reseeded from (seed, rank, step) before every step,
so no generator state has to travel between ranks; the position in an epoch follows from the
step count. A checkpoint therefore holds parameters, buffers, optimizer and schedule state,
the step and every rank's metric accumulators, and nothing else is needed to continue exactly.
Collectives (allreduce of metrics, evaluation, gathering the interval sums for a checkpoint) run
on every rank at the same steps; rank 0 alone writes files, and never calls a collective while
doing so.
"""
import contextlib
import json
import os
import signal
import time

import numpy as np

from . import checkpoint as ckpt
from .config import import_job_modules
from .data import load_job_data
from .metrics import MetricsWriter, truncate_after
from .models import build_model
from .progress import Progress, resolve_mode


def _seed_for(seed, rank, step):
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def build_optimizer(cfg, params):
    from .. import optim
    hp = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.optimizer.as_dict().items()
          if k != "name" and v is not None}
    return optim.create(cfg.optimizer.name, params, **hp)


def build_schedule(cfg, optimizer, total_steps):
    from .. import optim
    s = cfg.schedule
    after = max(1, total_steps - s.warmup_steps)
    main = None
    if s.name == "step":
        main = optim.StepLR(optimizer, s.step_size, s.gamma)
    elif s.name == "cosine":
        main = optim.CosineAnnealingLR(optimizer, s.t_max or after, s.min_lr)
    if s.warmup_steps:
        return optim.LinearWarmup(optimizer, s.warmup_steps, s.warmup_start_factor, then=main)
    return main


class _Interval:
    """This rank's running sums of one logging interval. Each rank sums its own batches and the
    ranks' sums are added at the log step, so a checkpoint inside an interval must keep every
    rank's partial sums (as exact floats) for the resumed run to log the same numbers."""

    def __init__(self, state=None):
        loss_sum, batches, correct, samples = state if state is not None else (0.0, 0, 0, 0)
        self.loss_sum, self.batches, self.correct, self.samples = \
            float(loss_sum), int(batches), int(correct), int(samples)

    def state(self):
        return [self.loss_sum, self.batches, self.correct, self.samples]

    def gather(self):
        """Every rank's sums, one row per rank (a collective: call it on every rank)."""
        from .. import distributed as dist
        return dist.all_gather(np.array(self.state(), dtype=np.float64)).tolist()


def train(cfg, run_dir, resume=False):
    """Run the job described by `cfg` on this rank; returns the summary dict (rank 0) or None."""
    import disttrain as dt
    from .. import distributed as dist
    from ..data import ArrayDataset, DataLoader
    from ..data.sampler import DistributedSampler
    from ..distributed import comm_hooks
    from .. import nn

    t_start = time.perf_counter()
    dist.init(stall_timeout=cfg.distributed.stall_timeout, stall_abort=cfg.distributed.stall_abort,
              check_collectives=cfg.distributed.check_collectives)
    rank, world = dist.get_rank(), dist.get_world_size()
    is_main = rank == 0
    import_job_modules(cfg.job.imports, cfg.source)
    seed = cfg.train.seed
    dtype = np.dtype(cfg.train.dtype)

    data = load_job_data(cfg.data, seed, dtype)
    dt.manual_seed(seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes, dtype)
    timeline = os.path.join(run_dir, "timeline", "rank{rank}.json") if cfg.distributed.timeline else None
    if timeline:     # each rank writes its own file (and may be on another host)
        os.makedirs(os.path.dirname(timeline), exist_ok=True)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cfg.distributed.bucket_cap_mb,
                                       find_unused_parameters=cfg.distributed.find_unused_parameters,
                                       timeline=timeline)
    if cfg.distributed.comm_hook != "none":
        ddp.register_comm_hook(None, {"fp16": comm_hooks.fp16_compress_hook,
                                      "bf16": comm_hooks.bf16_compress_hook}[cfg.distributed.comm_hook])
    optimizer = ddp.trace_optimizer(build_optimizer(cfg, model.parameters()))

    t = cfg.train
    sampler = DistributedSampler(len(data.x_train), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    loader = DataLoader(ArrayDataset(data.x_train, data.y_train), batch_size=t.batch_size, sampler=sampler)
    spe = len(loader) // t.grad_accum_steps
    if spe == 0:
        raise SystemExit(f"{cfg.source}: [train] batch_size {t.batch_size} x grad_accum_steps {t.grad_accum_steps}"
                         f" leaves no full optimizer step in one epoch of this rank's {len(sampler)} samples; "
                         "lower them.")
    total = t.epochs * spe if not t.max_steps else min(t.max_steps, t.epochs * spe)
    schedule = build_schedule(cfg, optimizer, total)
    loss_fn = nn.CrossEntropyLoss()

    step, interval, best, last_eval, wall_before = 0, _Interval(), None, None, 0.0
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if resume:
        step, interval, best, last_eval, wall_before = _resume(ckpt_dir, model, optimizer, schedule, world)
        if is_main:
            truncate_after(metrics_path, step)
    metrics = MetricsWriter(metrics_path, enabled=is_main)
    progress = Progress(resolve_mode(cfg.logging.progress, rank), total, spe, t.epochs)
    if is_main:
        progress.log(f"{cfg.job.name}: {world} rank(s), {data.description}; {total} steps of "
                     f"{t.batch_size * world * t.grad_accum_steps} samples" +
                     (f"; resumed at step {step}" if resume else ""))
    _maybe_fault_setup()

    def evaluate():
        model.eval()
        xs, ys = data.x_val[rank::world], data.y_val[rank::world]
        sums = np.zeros(3)
        with dt.no_grad():
            for i in range(0, len(xs), 1024):
                xb, yb = dt.tensor(xs[i:i + 1024]), dt.tensor(ys[i:i + 1024])
                logits = model(xb)
                sums[0] += float(loss_fn(logits, yb).item()) * len(yb)
                sums[1] += int((logits.data.argmax(axis=1) == yb.data).sum())
                sums[2] += len(yb)
        model.train()
        dist.all_reduce(sums, op="sum")
        return (sums[0] / sums[2], sums[1] / sums[2]) if sums[2] else (float("nan"), float("nan"))

    samples_per_step = t.batch_size * t.grad_accum_steps
    t_interval, sync_s, steps_in_interval = time.perf_counter(), 0.0, 0
    model.train()
    epoch = step // spe
    try:
        while step < total:
            loader.set_epoch(epoch)
            batches = iter(loader)
            for _ in range((step % spe) * t.grad_accum_steps):    # resume: skip what was consumed
                next(batches)
            while step < total and step // spe == epoch:
                dt.manual_seed(_seed_for(seed, rank, step))
                lr = optimizer.param_groups[0]["lr"]
                for micro in range(t.grad_accum_steps):
                    xb, yb = next(batches)
                    last = micro == t.grad_accum_steps - 1
                    with (contextlib.nullcontext() if last else ddp.no_sync()):
                        logits = ddp(xb)
                        loss = loss_fn(logits, yb)
                        (loss * (1.0 / t.grad_accum_steps) if t.grad_accum_steps > 1 else loss).backward()
                    interval.loss_sum += float(loss.item())
                    interval.batches += 1
                    interval.correct += int((logits.data.argmax(axis=1) == yb.data).sum())
                    interval.samples += len(yb.data)
                if ddp.last_sync_stats:
                    sync_s += ddp.last_sync_stats.get("wait_s", 0.0)
                optimizer.step()
                optimizer.zero_grad()
                if schedule is not None:
                    schedule.step()
                step += 1
                steps_in_interval += 1
                end_of_epoch = step % spe == 0
                final = step == total
                if step % cfg.logging.log_interval == 0 or final:
                    sums = np.array(interval.state(), dtype=np.float64)
                    dist.all_reduce(sums, op="sum")
                    now = time.perf_counter()
                    rate = steps_in_interval * samples_per_step * world / max(now - t_interval, 1e-9)
                    rec = {"kind": "train", "step": step, "epoch": (step - 1) // spe + 1,
                           "loss": sums[0] / sums[1], "accuracy": sums[2] / sums[3], "lr": lr,
                           "samples_per_s": rate, "sync_s": sync_s, "time": now - t_start}
                    metrics.write(rec)
                    progress.update(step, rec["loss"], rate)
                    if progress.mode == "plain":
                        progress.log(f"step {step}/{total} epoch {rec['epoch']}/{t.epochs} loss {rec['loss']:.4f} "
                                     f"acc {100 * rec['accuracy']:.2f}% lr {lr:.4g} {rate:,.0f} samples/s")
                    interval = _Interval()
                    t_interval, sync_s, steps_in_interval = now, 0.0, 0
                else:
                    progress.update(step)
                if len(data.x_val) and ((cfg.train.eval_interval and step % cfg.train.eval_interval == 0) or
                                        (not cfg.train.eval_interval and end_of_epoch) or final):
                    vloss, vacc = evaluate()
                    last_eval = {"step": step, "val_loss": vloss, "val_accuracy": vacc}
                    best = vacc if best is None or vacc > best else best
                    metrics.write({"kind": "eval", "step": step, "epoch": (step - 1) // spe + 1, "val_loss": vloss,
                                   "val_accuracy": vacc, "time": time.perf_counter() - t_start})
                    progress.log(f"eval step {step}: val_loss {vloss:.4f} val_accuracy {100 * vacc:.2f}%")
                c = cfg.checkpoint
                if c.enabled and ((c.interval and step % c.interval == 0) or (not c.interval and end_of_epoch)
                                  or final):
                    per_rank_interval = interval.gather()      # on every rank, outside the rank-0 branch
                    if is_main:
                        ckpt.save(ckpt_dir, step, model, optimizer, {
                            "model_name": cfg.model.name, "world_size": world, "epoch": step // spe,
                            "position_in_epoch": (step % spe) * t.grad_accum_steps,
                            "schedule": schedule.state_dict() if schedule is not None else None,
                            "interval": per_rank_interval, "best_val_accuracy": best, "last_eval": last_eval,
                            "seed": seed, "wall_time_s": wall_before + time.perf_counter() - t_start},
                        keep_last=c.keep_last)
                _maybe_fault(rank, step)
            epoch += 1
    finally:
        progress.close()
        metrics.close()
    if timeline:
        ddp.save_timeline()
    if not is_main:
        return None
    wall = wall_before + time.perf_counter() - t_start    # over all segments of a resumed run
    summary = {"name": cfg.job.name, "world_size": world, "steps": step, "epochs": step / spe,
               "final_val_loss": last_eval and last_eval["val_loss"],
               "final_val_accuracy": last_eval and last_eval["val_accuracy"], "best_val_accuracy": best,
               "wall_time_s": wall, "checkpoint": ckpt.latest(ckpt_dir) if cfg.checkpoint.enabled else None}
    with open(os.path.join(run_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    if summary["final_val_accuracy"] is not None:
        progress_line = (f"done: val_accuracy {100 * summary['final_val_accuracy']:.2f}% after {step} steps in "
                         f"{wall:.1f} s; run dir {run_dir}")
    else:
        progress_line = f"done: {step} steps in {wall:.1f} s; run dir {run_dir}"
    if cfg.logging.progress != "none":
        print(progress_line, flush=True)
    return summary


def _resume(ckpt_dir, model, optimizer, schedule, world):
    from .. import distributed as dist
    # Every rank must read the same file: rank 0 chooses, the others follow.
    found = np.array([-1], dtype=np.int64)
    if dist.get_rank() == 0:
        path = ckpt.latest(ckpt_dir)
        if path is not None:
            found[0] = ckpt.list_checkpoints(ckpt_dir)[-1][0]
    dist.broadcast(found, src=0)
    if found[0] < 0:
        raise ckpt.CheckpointError(f"--resume: no checkpoint in {ckpt_dir}")
    path = ckpt.path_for(ckpt_dir, int(found[0]))
    arrays, optim_state, meta = ckpt.read(path)
    ckpt.check_compatible(path, meta, model, world)
    model.load_state_dict(arrays)
    optimizer.load_state_dict(optim_state)
    if schedule is not None and meta.get("schedule") is not None:
        schedule.load_state_dict(meta["schedule"])
    # Each rank continues its own partial sums of the logging interval the checkpoint fell in.
    saved = meta["interval"]
    if saved and not isinstance(saved[0], list):      # older checkpoints held rank 0's sums only
        saved = [saved] + [None] * (world - 1)
    return (int(meta["step"]), _Interval(saved[dist.get_rank()]), meta.get("best_val_accuracy"),
            meta.get("last_eval"), float(meta.get("wall_time_s", 0.0)))


_FAULT = {}


def _maybe_fault_setup():
    # Fault injection for the resume test: DTRUN_TEST_KILL_AT_STEP="RANK:STEP" makes that rank
    # SIGKILL itself right after finishing STEP (and its checkpoint, if one was due).
    spec = os.environ.get("DTRUN_TEST_KILL_AT_STEP", "")
    if ":" in spec:
        r, s = spec.split(":", 1)
        _FAULT["rank"], _FAULT["step"] = int(r), int(s)


def _maybe_fault(rank, step):
    if _FAULT and _FAULT["rank"] == rank and _FAULT["step"] == step:
        os.kill(os.getpid(), signal.SIGKILL)
