"""Shared by the hardening tests and the fuzz test: a small finished run to damage, file snapshots,
checkpoint rewriting, and `dtrun check` in-process."""
import json
import os
import shutil

import numpy as np

from dtrun_helpers import dtrun, write

JOB = """
model = { name = "mlp", hidden = [16] }
data = { source = "digits" }
optimizer = { name = "adam", lr = 0.003 }
schedule = { name = "cosine", warmup_steps = 2 }
[train]
epochs = 2
batch_size = 64
[checkpoint]
interval = 10
keep_last = 3
[logging]
log_interval = 5
progress = "plain"
"""


def make_base_run(root):
    """A finished 1-rank run of JOB (46 steps; checkpoints 30, 40, 46) under `root`; returns (config, run dir)."""
    os.makedirs(root, exist_ok=True)
    cfg = write(os.path.join(root, "job.toml"), JOB)
    rc, out, err, _ = dtrun(cfg, "--run-dir", "base", cwd=root, timeout=180)
    assert rc == 0, err
    return cfg, os.path.join(root, "base")


def copy_run(base, dest):
    shutil.copytree(base, dest)
    return str(dest)


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def load_checkpoint_raw(path):
    """(arrays without meta, meta dict) of a checkpoint file, as stored."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")[()]))
    return arrays, meta


def write_checkpoint_raw(path, arrays, meta, meta_text=None):
    arrays = dict(arrays)
    arrays["meta"] = np.array(meta_text if meta_text is not None else json.dumps(meta))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def rewrite_checkpoint(path, mutate):
    """Apply `mutate(arrays, meta)` (in place, or returning (arrays, meta)) to a checkpoint file."""
    arrays, meta = load_checkpoint_raw(path)
    result = mutate(arrays, meta)
    if result is not None:
        arrays, meta = result
    write_checkpoint_raw(path, arrays, meta)


def cli(*args, cwd):
    """(exit code, output, exception) of the dtrun CLI run in this process (click's CliRunner)."""
    from click.testing import CliRunner
    from launch.cli import main
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args], prog_name="dtrun")
    finally:
        os.chdir(old)
    return result.exit_code, result.output, result.exception
