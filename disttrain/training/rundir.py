"""Run directories: never shared by accident, never half created, read only by rank 0.

A run directory is recognised by its marker file `.disttrain-run` (or, for runs made before the
marker existed, a `config.toml` that dtrun wrote). A new run goes into a new or empty directory
only: an existing directory holding anything else is refused, so a stray `--run-dir` can never
overwrite or append to someone's files. Problems (a file where a directory should be, a read-only
or kernel filesystem, no permission) are found before anything is written, and if creating the
directory still fails, what was created is removed again.
"""
import json
import os
import shutil

from .config import ConfigError, dump_toml

MARKER = ".disttrain-run"
_LEGACY_HEADER = b"# resolved config of "
_KERNEL_FS = ("/proc", "/sys", "/dev")


def is_run_dir(path):
    if os.path.isfile(os.path.join(path, MARKER)):
        return True
    try:
        with open(os.path.join(path, "config.toml"), "rb") as f:
            return f.read(len(_LEGACY_HEADER)) == _LEGACY_HEADER
    except OSError:
        return False


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(path, what):
    """ConfigError unless a directory could be created at `path` (nothing is created here)."""
    real = os.path.realpath(path)
    for fs in _KERNEL_FS:
        if real == fs or real.startswith(fs + os.sep):
            raise ConfigError(f"{what} {path} is under {fs}, a kernel filesystem that cannot hold a run; "
                              "choose another directory. Nothing was started.")
    base = _nearest_existing(path)
    if not os.path.isdir(base):
        raise ConfigError(f"{what} {path}: {base} is a file, not a directory; choose another path. "
                          "Nothing was started.")
    try:
        readonly = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        readonly = False
    if readonly:
        raise ConfigError(f"{what} {path}: {base} is on a read-only filesystem; choose a writable directory. "
                          "Nothing was started.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: no permission to create it in {base}; choose a writable directory. "
                          "Nothing was started.")


def check_new(run_dir, given):
    """A new run may use `run_dir`: it does not exist, or is an empty directory (ConfigError otherwise)."""
    opt = "--run-dir" if given else "the run directory"
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"{opt} {run_dir} exists and is not a directory; choose another path. Nothing was started.")
    if os.path.isdir(run_dir):
        if is_run_dir(run_dir):
            raise ConfigError(f"{opt} {run_dir} already holds a run; pass --resume to continue it or choose "
                              "another directory. Nothing was started.")
        try:
            entries = sorted(os.listdir(run_dir))
        except OSError as exc:
            raise ConfigError(f"{opt} {run_dir}: cannot list it ({exc.strerror or exc}). Nothing was started.") from None
        if entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise ConfigError(f"{opt} {run_dir} exists and is not a disttrain run directory (it holds {shown}); "
                              "dtrun writes a new run only into a new or empty directory, so nothing of yours is "
                              "overwritten: choose a new path (or empty this directory). Nothing was started.")
        check_writable(run_dir, opt)
        return
    check_writable(run_dir, opt)


def check_resume(run_dir):
    """ConfigError unless `run_dir` is a run directory with a checkpoints directory."""
    if not os.path.isdir(run_dir):
        raise ConfigError(f"--resume: {run_dir} is not a directory. Nothing was started.")
    if not is_run_dir(run_dir):
        raise ConfigError(f"--resume: {run_dir} is not a run directory (no config.toml written by dtrun). "
                          "Nothing was started.")
    ckpts = os.path.join(run_dir, "checkpoints")
    if os.path.lexists(ckpts) and not os.path.isdir(ckpts):
        raise ConfigError(f"--resume: {ckpts} is not a directory (it was replaced by a file); move it away. "
                          "Nothing was started.")
    for name in ("config.toml", "metrics.jsonl", "summary.json"):     # files the resumed run rewrites
        path = os.path.join(run_dir, name)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise ConfigError(f"--resume: {path} is not a file; move it away. Nothing was started.")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--resume: {run_dir} is not writable. Nothing was started.")


def create(cfg, run_dir):
    """Write the run directory (checkpoints/, config.toml, the marker); on failure remove what this
    call created and raise ConfigError."""
    created = None if os.path.isdir(run_dir) else _nearest_missing(run_dir)
    try:
        os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
        _write_atomic(os.path.join(run_dir, "config.toml"),
                      f"# resolved config of {cfg.source} (every key; defaults filled in)\n" + dump_toml(cfg))
        _write_atomic(os.path.join(run_dir, MARKER), json.dumps({"format": "disttrain-run-1"}) + "\n")
    except OSError as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise ConfigError(f"cannot create the run directory {run_dir} ({exc.strerror or exc}"
                          f"{': ' + exc.filename if getattr(exc, 'filename', None) else ''}). Nothing was started.") \
            from None


def _nearest_missing(path):
    """The top-most directory that creating `path` would create."""
    path = os.path.abspath(path)
    top = path
    while not os.path.lexists(os.path.dirname(top)) and os.path.dirname(top) != top:
        top = os.path.dirname(top)
    return top


def _write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
