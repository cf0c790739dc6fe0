"""The training loop of a config job, the same code on every rank.

`Trainer` sets the job up (data, model, DDP, optimizer, schedule, task) and runs the loop; what
happens around an optimizer step is done by **extensions** (`training/extensions.py`) called at
events: ``initialize`` (before the first step), ``after_backward`` (gradients final and averaged,
before the optimizer step: non-finite check, clipping), ``after_step`` (after the step count
advanced: schedule, log, progress, evaluate, checkpoint) and ``finalize`` (always, at the end).
The loss and metrics come from the task (`training/tasks.py`), the data from a registered source
(`training/data.py`), the schedule from `training/schedules.py`; none of them is named here.

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
import io
import os
import time

import numpy as np

from . import checkpoint as ckpt
from . import extensions as ext
from .config import import_job_modules
from .data import load_job_data
from .metrics import MetricsWriter, strict, truncate_after, write_json
from .models import build_model
from .nonfinite import NonFiniteGuard
from .progress import Progress, resolve_mode
from .schedules import build_schedule   # noqa: F401  (re-exported: build_schedule(cfg, optimizer, total))
from .tasks import build_task


def _seed_for(seed, rank, step):
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def build_optimizer(cfg, params, ddp=None):
    from .. import optim
    from .config import OPTIMIZER_FIXED
    hp = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.optimizer.as_dict().items()
          if k not in OPTIMIZER_FIXED and v is not None}
    if ddp is not None and cfg.distributed.shard_optimizer:      # (config checks refuse weight_decay_1d = false)
        from ..distributed import ShardedOptimizer
        return ShardedOptimizer(ddp, cfg.optimizer.name, shared_memory="auto" if cfg.distributed.shared_memory
                                else False, **hp)
    if not cfg.optimizer.weight_decay_1d and hp.get("weight_decay"):
        # two groups: matrices and embeddings decay, biases and norm weights do not (nanoGPT's grouping)
        params = list(params)
        groups = [{"params": [p for p in params if p.data.ndim >= 2]},
                  {"params": [p for p in params if p.data.ndim < 2], "weight_decay": 0.0}]
        params = [g for g in groups if g["params"]]
    return optim.create(cfg.optimizer.name, params, **hp)


def build_ddp(cfg, model, run_dir):
    """The DDP wrapper of the [distributed] section (and the timeline path pattern, or None)."""
    from .. import distributed as dist
    from ..distributed import comm_hooks
    timeline = os.path.join(run_dir, "timeline", "rank{rank}.json") if cfg.distributed.timeline else None
    if timeline:     # each rank writes its own file (and may be on another host)
        os.makedirs(os.path.dirname(timeline), exist_ok=True)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=cfg.distributed.bucket_cap_mb,
                                       find_unused_parameters=cfg.distributed.find_unused_parameters,
                                       timeline=timeline)
    if cfg.distributed.comm_hook != "none":     # the registry's hook, with [distributed.comm_hook_args]
        ddp.register_comm_hook(*comm_hooks.create_comm_hook(cfg.distributed.comm_hook,
                                                            **cfg.distributed.comm_hook_args))
    return ddp, timeline


def _gather_arrays(arrays, parse):
    """Every rank's {name: array}, as a list by rank where `parse` (None elsewhere). Each rank's arrays
    travel as .npz bytes through two allgathers (sizes, then the padded bytes): nothing is pickled."""
    from .. import distributed as dist
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = np.frombuffer(buf.getvalue(), np.uint8)
    sizes = dist.all_gather(np.array([data.size], np.int64))[:, 0]
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    every = dist.all_gather(padded)
    if not parse:
        return None
    out = []
    for r, n in enumerate(sizes):
        with np.load(io.BytesIO(every[r, :int(n)].tobytes()), allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


class Interval:
    """This rank's running sums of one logging interval: loss sum, batch count and the task's
    stats. Each rank sums its own batches and the ranks' sums are added at the log step, so a
    checkpoint inside an interval must keep every rank's partial sums (as exact numbers) for the
    resumed run to log the same numbers."""

    def __init__(self, state=None, n_stats=2):
        state = list(state) if state is not None else [0.0, 0] + [0] * n_stats
        self.loss_sum, self.batches = float(state[0]), int(state[1])
        self.stats = [int(v) if float(v).is_integer() else float(v) for v in state[2:]]

    def add(self, loss, stats):
        self.loss_sum += loss
        self.batches += 1
        self.stats = [a + b for a, b in zip(self.stats, stats)]

    def state(self):
        return [self.loss_sum, self.batches] + list(self.stats)

    def gather(self):
        """Every rank's sums, one row per rank (a collective: call it on every rank)."""
        from .. import distributed as dist
        return dist.all_gather(np.array(self.state(), dtype=np.float64)).tolist()


class Trainer:
    """One rank's job: ``Trainer(cfg, run_dir, resume).run()`` returns the summary (rank 0) or None.

    Attributes extensions use: cfg, rank, world, is_main, model, ddp, optimizer, schedule, task,
    data, step, total, spe (optimizer steps per epoch), interval, metrics, progress, t_start,
    best, last_eval, last_train (the newest train record), lr (the rate the last step used).
    """

    def __init__(self, cfg, run_dir, resume=False, extensions=None):
        import disttrain as dt
        from .. import distributed as dist
        self.t_start = time.perf_counter()
        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        dist.init(stall_timeout=cfg.distributed.stall_timeout, stall_abort=cfg.distributed.stall_abort,
                  check_collectives=cfg.distributed.check_collectives)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        import_job_modules(cfg.job.imports, cfg.source)
        self.seed = cfg.train.seed
        dtype = np.dtype(cfg.train.dtype)
        self.task = build_task(cfg.task)
        self.data = load_job_data(cfg.data, self.seed, dtype, integer_labels=self.task.integer_labels)
        dt.manual_seed(self.seed)
        self.model = build_model(cfg.model, self.data.input_shape, self.data.num_classes, dtype)
        if cfg.distributed.sync_batch_norm:
            from ..nn import SyncBatchNorm
            self.model = SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ddp, self.timeline = build_ddp(cfg, self.model, run_dir)
        # the config's comm hook's state (checkpointed when it has state_dict), taken before a sharded
        # optimizer installs its own reduction
        self.comm_hook_state = self.ddp.comm_hook_state if cfg.distributed.comm_hook != "none" else None
        self.optimizer = self.ddp.trace_optimizer(build_optimizer(cfg, self.model.parameters(), self.ddp))
        self._build_loader()
        self.schedule = build_schedule(cfg, self.optimizer, self.total)
        self.step, self.best, self.last_eval, self.wall_before = 0, None, None, 0.0
        self.interval = self.new_interval()
        self.guard = NonFiniteGuard(cfg.train.skip_nonfinite_steps, rank=self.rank)
        self.apply_update = True        # extensions (the non-finite check) may veto this step's update
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.metrics_path = os.path.join(run_dir, "metrics.jsonl")
        if resume:     # validated completely before anything in the run directory changes
            self._resume()
            if self.is_main:
                truncate_after(self.metrics_path, self.step)
        self.metrics = MetricsWriter(self.metrics_path, enabled=self.is_main)
        if self.is_main:
            self._write_files()
        t = cfg.train
        self.progress = Progress(resolve_mode(cfg.logging.progress, self.rank), self.total, self.spe, t.epochs)
        self.last_train, self.lr, self.finished = None, None, False
        self.extensions = list(ext.default_extensions(self) if extensions is None else extensions)

    # -- setup ---------------------------------------------------------------------------------
    def _build_loader(self):
        from ..data import DataLoader
        from ..data.sampler import DistributedSampler
        t, cfg = self.cfg.train, self.cfg
        dataset = self.data.train_dataset()
        self.n_train = len(dataset)
        self.sampler = DistributedSampler(len(dataset), num_replicas=self.world, rank=self.rank,
                                          shuffle=True, seed=self.seed)
        self.loader = DataLoader(dataset, batch_size=t.batch_size, sampler=self.sampler)
        self.spe = len(self.loader) // t.grad_accum_steps
        if self.spe == 0:
            raise SystemExit(f"{cfg.source}: [train] batch_size {t.batch_size} x grad_accum_steps "
                             f"{t.grad_accum_steps} leaves no full optimizer step in one epoch of this rank's "
                             f"{len(self.sampler)} samples; lower them.")
        self.total = t.epochs * self.spe if not t.max_steps else min(t.max_steps, t.epochs * self.spe)

    def _write_files(self):
        """The data source's files (e.g. the text source's vocab.json), written atomically."""
        for name, text in self.data.files.items():
            path = os.path.join(self.run_dir, name)
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)

    def new_interval(self, state=None):
        return Interval(state, n_stats=self.task.n_stats)

    def extend(self, extension):
        """Add an extension (called after the default ones at every event)."""
        self.extensions.append(extension)
        return extension

    def _call(self, event):
        for e in self.extensions:
            getattr(e, event)(self)

    # -- the loop ------------------------------------------------------------------------------
    def run(self):
        import disttrain as dt
        cfg, t = self.cfg, self.cfg.train
        if self.is_main:
            self.progress.log(f"{cfg.job.name}: {self.world} rank(s), {self.data.description}; {self.total} steps "
                              f"of {t.batch_size * self.world * t.grad_accum_steps} samples" +
                              (f"; resumed at step {self.step}" if self.resume else "") +
                              (f"; {self.optimizer!r}" if cfg.distributed.shard_optimizer else ""))
        self._call("initialize")
        self.model.train()
        epoch = self.step // self.spe
        try:
            while self.step < self.total:
                self.loader.set_epoch(epoch)
                batches = iter(self.loader)
                for _ in range((self.step % self.spe) * t.grad_accum_steps):   # resume: skip what was consumed
                    next(batches)
                while self.step < self.total and self.step // self.spe == epoch:
                    dt.manual_seed(_seed_for(self.seed, self.rank, self.step))
                    self.lr = self.optimizer.param_groups[0]["lr"]
                    kept = self._buffer_snapshot()
                    pending = self.forward_backward(batches)
                    self.apply_update = True
                    self._call("after_backward")
                    if self.apply_update:
                        self.optimizer.step()
                        for loss, stats in pending:     # a skipped step's batches are not logged
                            self.interval.add(loss, stats)
                    else:
                        self._restore_buffers(kept)
                    self.optimizer.zero_grad()
                    self.step += 1
                    self._call("after_step")
                epoch += 1
            self.finished = True
        finally:
            self._call("finalize")
        return self.summary()

    def _buffer_snapshot(self):
        """Copies of the model's buffers (BatchNorm's running statistics) when steps may be skipped: the
        forward of a skipped step has already folded its (possibly non-finite) batch statistics into them,
        so a skip puts them back. Nothing is copied when skip_nonfinite_steps is 0 (a bad step stops the job)."""
        if not self.guard.skip_limit:
            return None
        return [(b, b.data.copy()) for b in self.model.buffers() if b is not None]

    @staticmethod
    def _restore_buffers(kept):
        for b, saved in kept or ():
            np.copyto(b.data, saved)

    def forward_backward(self, batches):
        """One optimizer step's micro-batches: forward, task loss, backward (synced on the last).
        Returns [(loss, task stats)] per micro-batch, added to the interval once the update is applied."""
        t = self.cfg.train
        done = []
        for micro in range(t.grad_accum_steps):
            xb, yb = next(batches)
            last = micro == t.grad_accum_steps - 1
            with (contextlib.nullcontext() if last else self.ddp.no_sync()):
                out = self.ddp(xb)
                loss = self.guard.inject(self.task.loss(out, yb), self.step + 1)
                (loss * (1.0 / t.grad_accum_steps) if t.grad_accum_steps > 1 else loss).backward()
            value = float(loss.item())
            self.guard.observe_loss(self.step + 1, value)
            done.append((value, self.task.stats(out, yb)))
        return done

    def evaluate(self):
        """The task's validation metrics over every rank's share of the validation set (a collective)."""
        import disttrain as dt
        from .. import distributed as dist
        xs, ys = self.data.x_val[self.rank::self.world], self.data.y_val[self.rank::self.world]
        sums = np.zeros(2 + self.task.n_stats)
        self.model.eval()
        with dt.no_grad():
            for i in range(0, len(xs), 1024):
                xb, yb = dt.tensor(xs[i:i + 1024]), dt.tensor(ys[i:i + 1024])
                out = self.model(xb)
                w = self.task.weight(yb)
                sums[0] += float(self.task.loss(out, yb).item()) * w
                sums[1] += w
                sums[2:] += self.task.stats(out, yb)
        self.model.train()
        dist.all_reduce(sums, op="sum")
        if not sums[1]:
            return {k: float("nan") for k in self.task.metrics(0.0, [0] * self.task.n_stats)}
        return self.task.metrics(sums[0] / sums[1], list(sums[2:]))

    # -- resume / end --------------------------------------------------------------------------
    def _resume(self):
        from .resume import restore
        # Rank 0 reads the newest checkpoint and broadcasts its bytes; every rank validates the same
        # bytes (so every rank reaches the same verdict) before anything is loaded.
        meta = restore(self.ckpt_dir, self.model, self.optimizer, self.schedule, self.world, self.cfg,
                       self.n_train, self.rank, interval_len=2 + self.task.n_stats,
                       hook_state=self.comm_hook_state)
        # Each rank continues its own partial sums of the logging interval the checkpoint fell in.
        self.step = int(meta["step"])
        self.interval = self.new_interval(meta["interval"][self.rank])
        self.best = meta.get(f"best_val_{self.task.primary}")
        self.last_eval = meta.get("last_eval")
        self.wall_before = float(meta.get("wall_time_s", 0.0))
        self.guard.skipped = int(meta.get("skipped_steps", 0))

    def comm_hook_arrays(self):
        """Every rank's comm-hook state as {"rank<r>/<name>": array} on rank 0 (None elsewhere, and {} for
        a hook without state). Collective: every rank calls it (the Checkpointer does, at every checkpoint)."""
        state = self.comm_hook_state
        if state is None or not hasattr(state, "state_dict"):
            return {}
        per_rank = _gather_arrays(state.state_dict(), self.is_main)
        if per_rank is None:
            return None
        return {f"rank{r}/{k}": v for r, arrays in enumerate(per_rank) for k, v in arrays.items()}

    def checkpoint_meta(self, per_rank_interval):
        """What a checkpoint holds besides the model and optimizer (see `extensions.Checkpointer`)."""
        return {"model_name": self.cfg.model.name, "world_size": self.world, "epoch": self.step // self.spe,
                "position_in_epoch": (self.step % self.spe) * self.cfg.train.grad_accum_steps,
                "schedule": self.schedule.state_dict() if self.schedule is not None else None,
                "interval": per_rank_interval, f"best_val_{self.task.primary}": strict(self.best),
                "last_eval": strict(self.last_eval), "seed": self.seed,
                "wall_time_s": self.wall_before + time.perf_counter() - self.t_start,
                "skipped_steps": self.guard.skipped}

    def summary(self):
        """Rank 0 writes summary.json and prints the last line; returns the summary (None elsewhere)."""
        if not self.is_main:
            return None
        wall = self.wall_before + time.perf_counter() - self.t_start    # over all segments of a resumed run
        last = self.last_eval or {}
        summary = {"name": self.cfg.job.name, "world_size": self.world, "steps": self.step,
                   "epochs": self.step / self.spe, "final_val_loss": last.get("val_loss")}
        for name in self.task.metric_names():
            if name != "loss":
                summary[f"final_val_{name}"] = last.get(f"val_{name}")
        summary[f"best_val_{self.task.primary}"] = self.best
        summary.update({"wall_time_s": wall,
                        "checkpoint": ckpt.latest(self.ckpt_dir) if self.cfg.checkpoint.enabled else None})
        if self.guard.skip_limit:
            summary["skipped_steps"] = self.guard.skipped
        write_json(os.path.join(self.run_dir, "summary.json"), summary)
        primary = summary.get(f"final_val_{self.task.primary}")
        if primary is not None:
            shown = f"{100 * primary:.2f}%" if self.task.primary == "accuracy" else f"{primary:.4f}"
            line = (f"done: val_{self.task.primary} {shown} after {self.step} steps in {wall:.1f} s; "
                    f"run dir {self.run_dir}")
        else:
            line = f"done: {self.step} steps in {wall:.1f} s; run dir {self.run_dir}"
        if self.cfg.logging.progress != "none":
            print(line, flush=True)
        return summary


def train(cfg, run_dir, resume=False):
    """Run the job described by `cfg` on this rank; returns the summary dict (rank 0) or None."""
    return Trainer(cfg, run_dir, resume).run()
