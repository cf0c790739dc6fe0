"""Config jobs end to end with real processes: accuracy, run directory, bitwise resume."""
import json
import os

import numpy as np

from disttrain.training import checkpoint as ckpt
from disttrain.training.config import load_config
from disttrain.training.metrics import REPRODUCIBLE, read_metrics
from dtrun_helpers import CONFIGS, dtrun, write

FASHION = "/usr/share/datasets/fashion-mnist"


def test_digits_mlp_two_ranks_reaches_95_percent(tmp_path):
    run = tmp_path / "run"
    rc, out, err, seconds = dtrun("-n", "2", os.path.join(CONFIGS, "digits_mlp.toml"), "--run-dir", run,
                                  cwd=tmp_path, timeout=180)
    assert rc == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["final_val_accuracy"] >= 0.95, summary
    # the run directory is complete
    cfg = load_config(run / "config.toml")
    assert cfg.job.name == "digits_mlp" and cfg.train.epochs == 15
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert train and evals and evals[-1]["val_accuracy"] == summary["final_val_accuracy"]
    for key in ("step", "epoch", "loss", "accuracy", "lr", "samples_per_s", "sync_s", "time"):
        assert key in train[-1]
    assert train[-1]["step"] == summary["steps"] and train[-1]["loss"] < train[0]["loss"]
    steps = [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")]
    assert len(steps) == cfg.checkpoint.keep_last and steps[-1] == summary["steps"]
    assert not [n for n in os.listdir(run / "checkpoints") if n.startswith(".")]   # no temp files left
    # only rank 0 talks (plain log lines, since the output is not a terminal)
    assert "[0] step " in out and "[1] " not in out and "done: val_accuracy" in out


RESUME_JOB = """
[job]
name = "resume"
[model]
name = "mlp"
hidden = [32]
dropout = 0.1
[data]
source = "digits"
[optimizer]
name = "adam"
lr = 0.003
[schedule]
name = "cosine"
warmup_steps = 5
[train]
epochs = 3
batch_size = 32
grad_accum_steps = 2
eval_interval = 7
[checkpoint]
interval = 4
keep_last = 2
[logging]
log_interval = 3
"""


def _reproducible(run):
    return [{k: r.get(k) for k in REPRODUCIBLE} for r in read_metrics(os.path.join(run, "metrics.jsonl"))]


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    """Adam state, dropout, a warm-up+cosine schedule and gradient accumulation all resume exactly."""
    cfg = write(tmp_path / "job.toml", RESUME_JOB)
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "full", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    # rank 1 is SIGKILLed after step 10 (the newest checkpoint then is step 8, or 4 if rank 0 was
    # killed while writing 8); metrics logged after the checkpoint are rewritten by the resume.
    # Either checkpoint falls inside a logging interval (log_interval 3), so each rank's partial
    # sums of that interval must survive the resume for the next train row to be the same.
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "cut", cwd=tmp_path, timeout=120,
                            env={"DTRUN_TEST_KILL_AT_STEP": "1:10"})
    assert rc != 0 and "dtrun: rank 1 (host " in err and ") failed: killed by SIGKILL" in err, err
    cut_at = ckpt.list_checkpoints(tmp_path / "cut" / "checkpoints")[-1][0]
    assert cut_at in (4, 8) and cut_at % 3 != 0
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "cut", "--resume", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    assert "resumed at step" in out
    full, cut = _reproducible(tmp_path / "full"), _reproducible(tmp_path / "cut")
    assert len(full) > 10 and full == cut
    a, _, meta_a = ckpt.read(ckpt.latest(tmp_path / "full" / "checkpoints"))
    b, _, meta_b = ckpt.read(ckpt.latest(tmp_path / "cut" / "checkpoints"))
    assert meta_a["step"] == meta_b["step"] == 33
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # resuming with another world size or a changed config is refused before anything starts
    rc, out, err, _ = dtrun("-n", "1", cfg, "--run-dir", "cut", "--resume", cwd=tmp_path, timeout=60)
    assert rc != 0 and "2-rank job" in err and "Traceback" not in err
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "cut", "--resume", "--set", "optimizer.lr=0.1",
                            cwd=tmp_path, timeout=60)
    assert rc != 0 and "[optimizer] lr" in err and "Traceback" not in err


def test_corrupt_checkpoint_is_rejected_clearly(tmp_path):
    cfg = write(tmp_path / "job.toml", RESUME_JOB)
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", "--set", "train.epochs=1", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    latest = ckpt.latest(tmp_path / "r" / "checkpoints")
    data = open(latest, "rb").read()
    with open(latest, "wb") as f:
        f.write(data[:len(data) // 2])                     # truncated, as by a full disk
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", "--resume", "--set", "train.epochs=1", cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err
    assert f"{os.path.basename(latest)} is corrupt or truncated" in err and "delete it" in err, err


def test_in_process_job_and_other_model_checkpoint(tmp_path):
    cfg = write(tmp_path / "job.toml", RESUME_JOB)
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", "--set", "train.max_steps=6", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["world_size"] == 1
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", cwd=tmp_path, timeout=60)   # would overwrite a run
    assert rc != 0 and "already holds a run; pass --resume" in err
    # put a checkpoint of another model into the run: resume names the difference
    other = write(tmp_path / "other.toml", RESUME_JOB.replace("hidden = [32]", "hidden = [16]"))
    rc, out, err, _ = dtrun(other, "--run-dir", "o", "--set", "train.max_steps=2", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    src = ckpt.latest(tmp_path / "o" / "checkpoints")
    os.replace(src, ckpt.path_for(tmp_path / "r" / "checkpoints", 99))
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", "--resume", cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err
    assert "was written for a different model (mlp)" in err and "different shapes: 1.weight" in err, err


def _fashion_mnist_dir(tmp_path):
    """The installed Fashion-MNIST, or (where it is not installed, e.g. in CI) a small directory of
    learnable synthetic 28x28 images in the same IDX layout, gzipped, so the pipeline is tested anyway."""
    if os.path.isdir(FASHION):
        return FASHION
    import gzip
    import struct
    from disttrain.data import make_images
    root = tmp_path / "fashion"
    root.mkdir()
    for split, n, seed in (("train", 3000, 1), ("t10k", 600, 2)):
        X, y = make_images(n, 10, (1, 28, 28), seed=0, noise=0.3) if split == "train" else \
            make_images(n + 3000, 10, (1, 28, 28), seed=0, noise=0.3)
        X, y = (X, y) if split == "train" else (X[3000:], y[3000:])     # same classes, unseen samples
        for kind, arr in (("images-idx3-ubyte", (X[:, 0] * 255).round().astype(np.uint8)),
                          ("labels-idx1-ubyte", y.astype(np.uint8))):
            header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (root / f"{split}-{kind}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    return str(root)


def test_fashion_mnist_cnn_pipeline(tmp_path):
    """The shipped LeNet config on 2 ranks, cut to a few steps (the full run is in the README)."""
    root = _fashion_mnist_dir(tmp_path)
    rc, out, err, _ = dtrun("-n", "2", os.path.join(CONFIGS, "fashion_mnist_cnn.toml"), "--run-dir", "f",
                            "--set", "train.max_steps=30", "--set", "data.max_val_samples=1000",
                            "--set", f"data.path={root}",
                            "--set", "checkpoint.enabled=false", cwd=tmp_path, timeout=180)
    assert rc == 0, err
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["final_val_accuracy"] > 0.4, summary


def test_npz_data_and_bad_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", inputs=x, labels=y)
    cfg = write(tmp_path / "job.toml", "[model]\nname = 'mlp'\nhidden = [8]\n[data]\nsource = 'npz'\n"
                "path = 'd.npz'\nx_key = 'inputs'\ny_key = 'labels'\n[train]\nepochs = 5\nbatch_size = 16\n"
                "[optimizer]\nlr = 0.2\n")
    rc, out, err, _ = dtrun(cfg, "--run-dir", "r", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["final_val_accuracy"] > 0.9 and "160 train / 40 validation samples of shape (5,)" in out
    np.savez(tmp_path / "d.npz", inputs=x, labels=y + 0.5)
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "r2", cwd=tmp_path, timeout=120)
    assert rc != 0 and "labels must be integers" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "r2")
