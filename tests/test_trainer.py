"""The Trainer's doors: a task, a data source and a schedule registered from [job] imports, an
extension added to a Trainer, and the regression task on float targets."""
import json
import os

import numpy as np

from disttrain.training.config import ConfigError, load_config
from disttrain.training.metrics import read_metrics
from dtrun_helpers import dtrun, write

PLUGIN = '''
import numpy as np
from disttrain.training.config import Key
from disttrain.training.data import JobData, register_data_source
from disttrain.training.schedules import register_schedule
from disttrain.training.tasks import Task, register_task


@register_data_source("parity", params=[Key("bits", "int", 6, "parity: input bits", low=1)], task="parity_task")
def parity(d, seed, dtype, integer_labels=True):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(256, d.bits))
    y = x.sum(axis=1) % 2
    return JobData(x[:200].astype(dtype), y[:200], x[200:].astype(dtype), y[200:], (d.bits,), 2, "parity bits")


@register_schedule("halve", params=[Key("every", "int", 5, "halve: steps between halvings", low=1)])
def halve(s, optimizer, steps):
    from disttrain.optim import StepLR
    return StepLR(optimizer, s.every, 0.5)


@register_task("parity_task", params=[Key("scale", "float", 1.0, "loss scale")])
class ParityTask(Task):
    n_stats = 1

    def loss(self, output, target):
        import disttrain.nn.functional as F
        return F.cross_entropy(output, target) * self.cfg.scale

    def stats(self, output, target):
        return (len(target.data),)

    def metrics(self, loss, stats):
        return {"loss": loss, "seen": stats[0]}
'''

JOB = """
[job]
name = "plug"
imports = ["plugin_parity"]
[model]
name = "mlp"
hidden = [8]
[data]
source = "parity"
bits = 4
[task]
scale = 2.0
[optimizer]
name = "sgd"
lr = 0.4
[schedule]
name = "halve"
every = 3
[train]
epochs = 1
batch_size = 25
[logging]
log_interval = 2
"""


def test_registered_source_task_and_schedule_run_from_imports(tmp_path, monkeypatch):
    write(tmp_path / "plugin_parity.py", PLUGIN)
    cfg = write(tmp_path / "job.toml", JOB)
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "run", cwd=tmp_path, timeout=120)
    assert rc == 0, err + out
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    # 200 samples / 2 ranks / 25 per batch = 4 steps; "seen" sums both ranks' samples of 2 steps
    assert [r["step"] for r in train] == [2, 4] and all(r["seen"] == 100 for r in train)
    assert [r["lr"] for r in train] == [0.4, 0.2]          # halved after step 3
    ev = [r for r in rows if r["kind"] == "eval"][-1]
    assert ev["val_seen"] == 56 and "val_loss" in ev
    monkeypatch.chdir(tmp_path)          # [job] imports are found from the current directory
    resolved = load_config(tmp_path / "run" / "config.toml")
    assert resolved.task.name == "parity_task" and resolved.task.scale == 2.0   # "auto" took the source's task


def test_unknown_registered_names_are_config_errors(tmp_path):
    base = "[model]\nname = 'mlp'\n"
    for text, needle in (("[data]\nsource = 'parityy'\n", "[data] source"),
                         ("[schedule]\nname = 'cosin'\n", "Did you mean 'cosine'"),
                         ("[task]\nname = 'regresion'\n", "Did you mean 'regression'"),
                         ("[task]\nname = 'regression'\nlabel_smoothing = 0.1\n",
                          'does not apply to task "regression"')):
        try:
            load_config(write(tmp_path / "c.toml", base + text))
        except ConfigError as exc:
            assert needle in str(exc), str(exc)
        else:
            raise AssertionError(f"accepted {text!r}")


def test_regression_task_on_float_targets_and_an_added_extension(tmp_path):
    from disttrain.training.extensions import Extension
    from disttrain.training.trainer import Trainer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    np.savez(tmp_path / "lin.npz", x=x, y=y)
    cfg_path = write(tmp_path / "j.toml", f"""
[model]
name = "mlp"
hidden = []
[data]
source = "npz"
path = "{tmp_path / 'lin.npz'}"
normalize = "none"
[task]
name = "regression"
[optimizer]
name = "sgd"
lr = 0.1
[train]
epochs = 30
batch_size = 16
[logging]
progress = "none"
""")
    cfg = load_config(cfg_path)
    seen = []

    class Record(Extension):
        def after_step(self, trainer):
            seen.append(trainer.step)

    run = tmp_path / "run"
    os.makedirs(run)
    trainer = Trainer(cfg, str(run), extensions=None)
    trainer.extend(Record())
    summary = trainer.run()
    assert seen == list(range(1, trainer.total + 1))
    assert summary["final_val_mse"] < 1e-3 and summary["best_val_loss"] == summary["final_val_loss"]
    assert json.loads((run / "summary.json").read_text())["final_val_mse"] == summary["final_val_mse"]


def test_weight_decay_1d_false_leaves_biases_and_norms_undecayed(tmp_path):
    from disttrain.models import GPT
    from disttrain.training.trainer import build_optimizer
    base = "[model]\nname = 'gpt'\n[data]\nsource = 'text'\n[optimizer]\nname = 'adamw'\nweight_decay = 0.1\n"
    groups = build_optimizer(load_config(write(tmp_path / "a.toml", base + "weight_decay_1d = false\n")),
                             GPT(5, 4, n_layer=1, n_head=2, n_embd=4).parameters()).param_groups
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(6, 0.1), (10, 0.0)]
    assert all(p.data.ndim >= 2 for p in groups[0]["params"]) and all(p.data.ndim == 1 for p in groups[1]["params"])
    one = build_optimizer(load_config(write(tmp_path / "b.toml", base)), GPT(5, 4, n_layer=1, n_head=2, n_embd=4)
                          .parameters()).param_groups
    assert len(one) == 1 and one[0]["weight_decay"] == 0.1


def test_lenet_batch_norm_with_sync_batch_norm_job(tmp_path):
    cfg = write(tmp_path / "bn.toml", """
[model]
name = "lenet"
channels = [8, 16]
kernel_size = 3
hidden = [32]
batch_norm = true
[optimizer]
name = "adam"
lr = 0.01
[train]
epochs = 3
batch_size = 16
[distributed]
sync_batch_norm = true
""")
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "run", cwd=tmp_path, timeout=180)
    assert rc == 0, err + out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_val_accuracy"] > 0.9, summary
    arrays = np.load(summary["checkpoint"])
    assert int(arrays["model/1.num_batches_tracked"]) == summary["steps"]     # one forward per step
    assert arrays["model/1.running_var"].shape == (8,) and "model/5.running_mean" in arrays.files


def test_a_skipped_non_finite_step_also_leaves_batch_norm_statistics_alone(tmp_path, monkeypatch):
    """skip_nonfinite_steps: step 2's loss is NaN, so its update is skipped; the running mean/var its
    forward had folded in are put back too (checkpoint 2 holds exactly checkpoint 1's state), while the
    normal step 3 moves them again."""
    from disttrain.training import checkpoint as ckpt
    from disttrain.training.trainer import Trainer
    monkeypatch.setenv("DTRUN_TEST_NAN_LOSS_AT", "0:2")
    cfg = load_config(write(tmp_path / "bn.toml", """
[model]
name = "lenet"
channels = [4, 8]
kernel_size = 3
hidden = [16]
batch_norm = true
[data]
max_train_samples = 96
max_val_samples = 32
[optimizer]
name = "sgd"
lr = 0.05
[train]
max_steps = 3
batch_size = 16
skip_nonfinite_steps = 1
[checkpoint]
interval = 1
keep_last = 3
[logging]
progress = "none"
"""))
    run = tmp_path / "run"
    os.makedirs(run)
    summary = Trainer(cfg, str(run), extensions=None).run()
    assert summary["skipped_steps"] == 1
    states = {step: ckpt.read(path)[0] for step, path in ckpt.list_checkpoints(run / "checkpoints")}
    assert sorted(states) == [1, 2, 3]
    one, two, three = states[1], states[2], states[3]
    assert len([k for k in one if "running_" in k or "num_batches" in k]) == 6
    for k in one:                                  # parameters and buffers: step 2 changed nothing
        np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    assert int(three["1.num_batches_tracked"]) == 2 and int(one["1.num_batches_tracked"]) == 1
    assert not np.array_equal(three["1.running_mean"], one["1.running_mean"])
