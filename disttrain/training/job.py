"""Config jobs end to end: the launcher side (check everything, create the run directory)
and the rank side (`run_from_run_dir`, what `python -m mpi4py -m launch.rank config DIR` calls).

Run directory: config.toml (resolved: every key), .disttrain-run (the marker), metrics.jsonl,
checkpoints/step-*.npz, summary.json, timeline/rank*.json (with [distributed] timeline = true).
Only rank 0 (and the launcher) touch it, except each rank's own timeline file.
"""
import glob
import os
import time

from . import checkpoint as ckpt
from . import rundir
from .config import RESUMABLE_CHANGES, ConfigError, differences, load_config
from .nonfinite import NonFiniteError

USER_ERRORS = (ConfigError, ckpt.CheckpointError, NonFiniteError)


def _user_errors():
    from .data import DataError
    from .models import ModelShapeError
    return USER_ERRORS + (DataError, ModelShapeError)


def default_run_dir(cfg):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(cfg.job.output_dir, f"{cfg.job.name}-{stamp}")
    path, i = base, 1
    while os.path.lexists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def find_resume_dir(cfg):
    """The newest run directory of this job that holds a checkpoint."""
    try:
        dirs = [d for d in glob.glob(os.path.join(glob.escape(cfg.job.output_dir), f"{glob.escape(cfg.job.name)}-*"))
                if os.path.isdir(d) and rundir.is_run_dir(d) and ckpt.list_checkpoints(os.path.join(d, "checkpoints"))]
    except ckpt.CheckpointError:
        dirs = []
    if not dirs:
        raise ConfigError(f"{cfg.source}: --resume: no run directory of job '{cfg.job.name}' with a checkpoint "
                          f"under {cfg.job.output_dir}/; pass --run-dir. Nothing was started.")
    return max(dirs, key=lambda d: os.path.getmtime(os.path.join(d, "checkpoints")))


def plan_run_dir(cfg, run_dir, resume):
    """Where the job will write, checked (nothing is created here): a resume needs a run directory with
    an unchanged config and a checkpoint; a new run a new or empty directory in a writable place."""
    if resume:
        run_dir = run_dir or find_resume_dir(cfg)
        rundir.check_resume(run_dir)
        saved_path = os.path.join(run_dir, "config.toml")
        if not os.path.isfile(saved_path):
            raise ConfigError(f"--resume: {run_dir} is not a run directory (no config.toml). Nothing was started.")
        saved = load_config(saved_path, check_files=False)
        changed = [f"[{s}] {k}" for s, k in differences(saved, cfg) if (s, k) not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"{cfg.source}: --resume: the config differs from the run's {saved_path} in "
                              f"{', '.join(changed)}; a resumed run must compute the same thing (only epochs, "
                              "max_steps, logging, checkpoint and timeline settings may change). Nothing was started.")
        try:
            found = ckpt.latest(os.path.join(run_dir, "checkpoints"))
        except ckpt.CheckpointError as exc:
            raise ConfigError(f"--resume: {exc}. Nothing was started.") from None
        if not found:
            raise ConfigError(f"--resume: no checkpoint in {run_dir}/checkpoints. Nothing was started.")
        return run_dir
    if run_dir:
        rundir.check_new(run_dir, given=True)
        return run_dir
    if os.path.lexists(cfg.job.output_dir) and not os.path.isdir(cfg.job.output_dir):
        raise ConfigError(f"{cfg.source}: [job] output_dir {cfg.job.output_dir} is a file, not a directory. "
                          "Nothing was started.")
    rundir.check_writable(cfg.job.output_dir, "[job] output_dir")
    run_dir = default_run_dir(cfg)
    rundir.check_new(run_dir, given=False)
    return run_dir


def check_job(target, overrides=(), unset=(), run_dir=None, resume=False, world_size=1, dry_run=False):
    """Everything `dtrun run` checks before it launches (what `dtrun check` runs too): the config, the
    run directory, and (unless `dry_run`) the data, the model and the checkpoint to resume from.
    Returns (cfg, run_dir); raises ConfigError (the whole message) and writes nothing."""
    cfg = load_config(target, overrides, unset=unset)
    run_dir = plan_run_dir(cfg, run_dir, resume)
    if not dry_run:
        preflight(cfg, run_dir, resume, world_size)
    return cfg, run_dir


def preflight(cfg, run_dir, resume, world_size):
    """Build data and model once in the launcher, before any rank starts: data/model mismatches
    and unusable checkpoints become clear errors, and one tiny training step compiles the Numba
    kernels this job uses into the shared cache (ranks then only load them)."""
    import numpy as np
    import disttrain as dt
    from .config import import_job_modules
    from .data import load_job_data
    from .models import build_model
    from .resume import load_and_validate, steps_plan
    from .tasks import build_task
    from .trainer import build_optimizer, build_schedule
    try:
        import_job_modules(cfg.job.imports, cfg.source)
        task = build_task(cfg.task)
        data = load_job_data(cfg.data, cfg.train.seed, np.dtype(cfg.train.dtype), integer_labels=task.integer_labels)
        n_train = len(data.train_dataset())
        per_rank = -(-n_train // world_size)          # DistributedSampler pads to this
        if -(-per_rank // cfg.train.batch_size) < cfg.train.grad_accum_steps:
            raise ConfigError(f"{cfg.source}: [train] batch_size {cfg.train.batch_size} x grad_accum_steps "
                              f"{cfg.train.grad_accum_steps} leaves no full optimizer step in an epoch of "
                              f"{per_rank} samples per rank ({n_train} on {world_size} ranks); lower "
                              "them. Nothing was started.")
        dt.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes, np.dtype(cfg.train.dtype))
        opt = build_optimizer(cfg, model.parameters())
        n = min(len(data.x_train), cfg.train.batch_size, 8)
        task.loss(model(dt.tensor(data.x_train[:n])), dt.tensor(data.y_train[:n])).backward()
        opt.step()
        if len(data.x_val):
            with dt.no_grad():
                model.eval()
                model(dt.tensor(data.x_val[:n]))
        if resume:       # validated completely (against the stepped optimizer's exact state layout)
            path = ckpt.latest(os.path.join(run_dir, "checkpoints"))
            reference = opt.state_dict()
            schedule = build_schedule(cfg, opt, steps_plan(cfg.train, n_train, world_size)[1])
            hook_state = None       # the comm hook's state (PowerSGD's memories): rank 0's is checked here
            if cfg.distributed.comm_hook != "none":
                from ..distributed.comm_hooks import create_comm_hook
                hook_state = create_comm_hook(cfg.distributed.comm_hook, **cfg.distributed.comm_hook_args)[0]
            load_and_validate(path, ckpt.read_bytes(path), model, opt, schedule, world_size, cfg,
                              n_train, reference_optim_state=reference,
                              interval_len=2 + task.n_stats, hook_state=hook_state)
    except _user_errors() as exc:
        raise ConfigError(_paragraph(cfg, str(exc))) from None


def _paragraph(cfg, msg):
    """A preflight error as one paragraph that names the config and ends like every config error."""
    msg = " ".join(msg.split("\n"))
    if not msg.startswith(cfg.source):
        msg = f"{cfg.source}: {msg}"
    if not msg.rstrip().endswith("Nothing was started."):
        msg = msg.rstrip().rstrip(".") + ". Nothing was started."
    return msg


def create_run_dir(cfg, run_dir):
    rundir.create(cfg, run_dir)


def run_in_process(cfg, run_dir, resume):
    from .trainer import train
    try:
        return train(cfg, run_dir, resume)
    except _user_errors() as exc:
        raise SystemExit(f"dtrun: {exc}") from None
    except OSError as exc:       # the run directory or disk failed under the job: say which file, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        raise SystemExit(f"dtrun: {where}{exc.strerror or exc} (while running the job in {run_dir})") from None


def run_from_run_dir(run_dir, resume=False):
    """Rank entry point: the job in RUN_DIR/config.toml. Only rank 0 reads the run directory; the
    other ranks get the file's bytes by broadcast (they may run on hosts that cannot see it)."""
    from .config import read_config_bytes
    from .resume import share_bytes
    path = os.path.join(run_dir, "config.toml")
    try:
        cfg = load_config(path, data=share_bytes(lambda: read_config_bytes(path)))
    except ConfigError as exc:
        raise SystemExit(f"dtrun: {exc}") from None
    return run_in_process(cfg, run_dir, resume)
