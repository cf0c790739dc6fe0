"""Config jobs end to end: the launcher side (check everything, create the run directory)
and the rank side (`run_from_run_dir`, what `python -m mpi4py -m launch.rank config DIR` calls).

Run directory: config.toml (resolved: every key), metrics.jsonl, checkpoints/step-*.npz,
summary.json, timeline/rank*.json (with [distributed] timeline = true).
"""
import glob
import os
import time

from . import checkpoint as ckpt
from .config import RESUMABLE_CHANGES, ConfigError, differences, dump_toml, load_config

USER_ERRORS = (ConfigError, ckpt.CheckpointError)


def _user_errors():
    from .data import DataError
    from .models import ModelShapeError
    return USER_ERRORS + (DataError, ModelShapeError)


def default_run_dir(cfg):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(cfg.job.output_dir, f"{cfg.job.name}-{stamp}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def find_resume_dir(cfg):
    """The newest run directory of this job that holds a checkpoint."""
    dirs = [d for d in glob.glob(os.path.join(cfg.job.output_dir, f"{glob.escape(cfg.job.name)}-*"))
            if ckpt.list_checkpoints(os.path.join(d, "checkpoints"))]
    if not dirs:
        raise ConfigError(f"{cfg.source}: --resume: no run directory of job '{cfg.job.name}' with a checkpoint "
                          f"under {cfg.job.output_dir}/; pass --run-dir. Nothing was started.")
    return max(dirs, key=lambda d: os.path.getmtime(os.path.join(d, "checkpoints")))


def plan_run_dir(cfg, run_dir, resume):
    """Where the job will write, checked for resume (nothing is created here)."""
    if resume:
        run_dir = run_dir or find_resume_dir(cfg)
        saved_path = os.path.join(run_dir, "config.toml")
        if not os.path.isfile(saved_path):
            raise ConfigError(f"--resume: {run_dir} is not a run directory (no config.toml). Nothing was started.")
        saved = load_config(saved_path, check_files=False)
        changed = [f"[{s}] {k}" for s, k in differences(saved, cfg) if (s, k) not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"{cfg.source}: --resume: the config differs from the run's {saved_path} in "
                              f"{', '.join(changed)}; a resumed run must compute the same thing (only epochs, "
                              "max_steps, logging, checkpoint and timeline settings may change). Nothing was started.")
        if not ckpt.latest(os.path.join(run_dir, "checkpoints")):
            raise ConfigError(f"--resume: no checkpoint in {run_dir}/checkpoints. Nothing was started.")
        return run_dir
    if run_dir and os.path.exists(os.path.join(run_dir, "config.toml")):
        raise ConfigError(f"--run-dir {run_dir} already holds a run; pass --resume to continue it or choose "
                          "another directory. Nothing was started.")
    return run_dir or default_run_dir(cfg)


def preflight(cfg, run_dir, resume, world_size):
    """Build data and model once in the launcher, before any rank starts: data/model mismatches
    and unusable checkpoints become clear errors, and one tiny training step compiles the Numba
    kernels this job uses into the shared cache (ranks then only load them)."""
    import numpy as np
    import disttrain as dt
    from .config import import_job_modules
    from .data import load_job_data
    from .models import build_model
    from .tasks import build_task
    from .trainer import build_optimizer
    try:
        import_job_modules(cfg.job.imports, cfg.source)
        task = build_task(cfg.task)
        data = load_job_data(cfg.data, cfg.train.seed, np.dtype(cfg.train.dtype), integer_labels=task.integer_labels)
        per_rank = -(-len(data.x_train) // world_size)          # DistributedSampler pads to this
        if -(-per_rank // cfg.train.batch_size) < cfg.train.grad_accum_steps:
            raise ConfigError(f"{cfg.source}: [train] batch_size {cfg.train.batch_size} x grad_accum_steps "
                              f"{cfg.train.grad_accum_steps} leaves no full optimizer step in an epoch of "
                              f"{per_rank} samples per rank ({len(data.x_train)} on {world_size} ranks); lower "
                              "them. Nothing was started.")
        dt.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes, np.dtype(cfg.train.dtype))
        if resume:
            path = ckpt.latest(os.path.join(run_dir, "checkpoints"))
            _, _, meta = ckpt.read(path)
            ckpt.check_compatible(path, meta, model, world_size)
        opt = build_optimizer(cfg, model.parameters())
        n = min(len(data.x_train), cfg.train.batch_size, 8)
        task.loss(model(dt.tensor(data.x_train[:n])), dt.tensor(data.y_train[:n])).backward()
        opt.step()
        if len(data.x_val):
            with dt.no_grad():
                model.eval()
                model(dt.tensor(data.x_val[:n]))
    except _user_errors() as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.rstrip().endswith("Nothing was started.") else f"{msg}. Nothing was started.") \
            from None


def create_run_dir(cfg, run_dir):
    os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
    tmp = os.path.join(run_dir, ".config.toml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# resolved config of {cfg.source} (every key; defaults filled in)\n")
        f.write(dump_toml(cfg))
    os.replace(tmp, os.path.join(run_dir, "config.toml"))


def run_in_process(cfg, run_dir, resume):
    from .trainer import train
    try:
        return train(cfg, run_dir, resume)
    except _user_errors() as exc:
        raise SystemExit(f"dtrun: {exc}") from None


def run_from_run_dir(run_dir, resume=False):
    """Rank entry point: the job in RUN_DIR/config.toml."""
    try:
        cfg = load_config(os.path.join(run_dir, "config.toml"))
    except ConfigError as exc:
        raise SystemExit(f"dtrun: {exc}") from None
    return run_in_process(cfg, run_dir, resume)
