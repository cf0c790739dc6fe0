"""Issue 9: nothing lost, nothing silent. Each case found by trying disttrain as a new user is a test:
the input gets a one-paragraph error naming the file or key, a non-zero exit, no traceback, and
nothing is written or changed."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from disttrain.training import checkpoint as ckpt
from disttrain.training.config import ConfigError, dump_toml, load_config
from disttrain.training.job import check_job
from dtrun_helpers import CONFIGS, REPO, dtrun, write
from harden_helpers import JOB, cli, copy_run, make_base_run, rewrite_checkpoint, snapshot


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base_run(tmp_path_factory.mktemp("base"))


@pytest.fixture
def run(base, tmp_path):
    """A copy of the finished base run: (config path, run dir, snapshot before the test)."""
    cfg, src = base
    r = copy_run(src, tmp_path / "r")
    return cfg, r, snapshot(r)


def _refused(fn, *fragments):
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, msg
    assert "\n" not in msg and msg.endswith("Nothing was started."), msg
    return msg


def _strict_json(text):
    def bare(name):
        raise AssertionError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=bare)


# -- data lost or overwritten ------------------------------------------------------------------
def test_run_dir_that_is_not_a_run_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "summary.json").write_text("{}")
    rc, out, err, _ = dtrun("-n", "2", os.path.join(CONFIGS, "digits_mlp.toml"), "--run-dir", d, cwd=tmp_path,
                            timeout=60)
    assert rc != 0 and "Traceback" not in err
    assert "is not a disttrain run directory (it holds summary.json)" in err and "choose a new path" in err, err
    assert os.listdir(d) == ["summary.json"] and (d / "summary.json").read_text() == "{}"
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg, run_dir = check_job(os.path.join(CONFIGS, "digits_mlp.toml"), run_dir=str(empty), dry_run=True)
    assert run_dir == str(empty) and os.listdir(empty) == []       # an empty directory is fine


def test_negative_step_checkpoint_truncates_nothing(run):
    cfg, r, before = run
    lines = (open(os.path.join(r, "metrics.jsonl")).read().splitlines())
    latest = ckpt.latest(os.path.join(r, "checkpoints"))
    rewrite_checkpoint(latest, lambda a, m: m.update(step=-1))
    before = snapshot(r)
    rc, out, err, _ = dtrun(cfg, "--run-dir", r, "--resume", cwd=os.path.dirname(cfg), timeout=60)
    assert rc != 0 and "Traceback" not in err
    assert "step -1 is not a step count" in err and os.path.basename(latest) in err, err
    assert snapshot(r) == before and len(lines) > 10


@pytest.mark.parametrize("case, fragment", [
    ("nan_weight", "array model/1.weight holds non-finite values"),
    ("inf_adam_state", "optimizer state exp_avg of parameter 1 holds non-finite values"),
    ("missing_weight", "missing 3.weight"),
    ("wrong_shape_weight", "different shapes: 3.weight"),
    ("wrong_shape_state", "optimizer state exp_avg_sq of parameter 0 is float32 (16, 32)"),
    ("int64_weight", "array model/3.bias is int64 (10,); the model needs float32 (10,)"),
    ("extra_array", "unexpected model array(s) model/extra"),
    ("missing_optimizer_array", "missing array 'optim/state/3/exp_avg'"),
    ("missing_interval", "'interval' must hold the logging sums of each of the 1 ranks"),
    ("huge_step", "at step 1000000000000 but this job has only 46 steps"),
    ("float_step", "step 45.5 is not a step count"),
    ("other_world_size", "was written by a 2-rank job; this job has 1 ranks"),
    ("epoch_mismatch", "epoch 7 does not match step 46"),
    ("other_format", "format 'disttrain-checkpoint-0'"),
    ("schedule_moved", "its schedule state (last_epoch 3"),
    ("sgd_state", "optimizer state of parameter 0 (16, 64): missing exp_avg, exp_avg_sq, step, unexpected "
                  "momentum_buffer"),
    ("nan_hyperparameter", "is not a disttrain checkpoint or is damaged (its metadata holds a bare NaN)"),
    ("file_name_step", "its file name says step 46 but it holds step 40"),
])
def test_damaged_checkpoint_is_refused_before_anything_changes(run, case, fragment):
    cfg, r, _ = run
    latest = ckpt.latest(os.path.join(r, "checkpoints"))

    def mutate(a, m):
        if case == "nan_weight":
            a["model/1.weight"][3, 5] = np.nan
        elif case == "inf_adam_state":
            key = next(k for k in a if k.startswith("optim/state/1/") and k.endswith("exp_avg"))
            a[key][0] = np.inf
        elif case == "missing_weight":
            del a["model/3.weight"]
            del m["model_signature"]["3.weight"]
        elif case == "wrong_shape_weight":
            a["model/3.weight"] = a["model/3.weight"][:5]
            m["model_signature"]["3.weight"][0] = [5, 16]
        elif case == "wrong_shape_state":
            key = next(k for k in a if k.startswith("optim/state/0/") and k.endswith("exp_avg_sq"))
            a[key] = a[key].reshape(32, 32)[:16]
        elif case == "int64_weight":
            a["model/3.bias"] = a["model/3.bias"].astype(np.int64)
        elif case == "extra_array":
            a["model/extra"] = np.zeros(3, np.float32)
        elif case == "missing_optimizer_array":
            del a["optim/state/3/exp_avg"]
        elif case == "missing_interval":
            del m["interval"]
        elif case == "huge_step":
            m["step"] = 10 ** 12
        elif case == "float_step":
            m["step"] = 45.5
        elif case == "other_world_size":
            m["world_size"] = 2
            m["interval"] = m["interval"] * 2
        elif case == "epoch_mismatch":
            m["epoch"] = 7
        elif case == "other_format":
            m["format"] = "disttrain-checkpoint-0"
        elif case == "schedule_moved":
            m["schedule"]["last_epoch"] = 3
        elif case == "sgd_state":
            for k in [k for k in a if k.startswith("optim/state/0/")]:
                del a[k]
            a["optim/state/0/mb"] = np.zeros((16, 64), np.float32)
            entry = m["optimizer"]["__dict__"][0][1]["__dict__"][0][1]      # state -> param 0
            entry["__dict__"] = [["momentum_buffer", {"__array__": "optim/state/0/mb", "scalar": False}]]
        elif case == "nan_hyperparameter":
            return a, json.loads(json.dumps(m).replace('"eps", 1e-08', '"eps", NaN'))
        elif case == "file_name_step":
            m["step"] = 40
    rewrite_checkpoint(latest, mutate)
    before = snapshot(r)
    _refused(lambda: check_job(cfg, run_dir=r, resume=True), f"checkpoint {latest}", fragment)
    assert snapshot(r) == before


def test_job_name_stays_inside_output_dir(tmp_path):
    cfg = write(tmp_path / "j.toml", "[model]\nname = 'mlp'\n")
    for name in ("../../escaped", "/abs/olute", "..", "a\\nb", "a\\u0000b", "a/b"):
        _refused(lambda: load_config(cfg, [f'job.name="{name}"']), "[job] name")
    rc, out, err, _ = dtrun(cfg, "--set", 'job.name="a\\nb"', cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err and "[job] name" in err and "control characters" in err, err
    rc, out, err, _ = dtrun(cfg, "--set", 'job.name="a\nb"', cwd=tmp_path, timeout=60)    # a raw newline
    assert rc != 0 and "Traceback" not in err and err.count("\n") == 1 and "is not a TOML value" in err, err
    assert os.listdir(tmp_path) == ["j.toml"]
    # a config file's odd name becomes a usable default run name
    odd = write(tmp_path / "we\tird.toml", "[model]\nname = 'mlp'\n")
    assert load_config(odd).job.name == "we_ird"


def test_stale_temporary_checkpoints_are_removed(tmp_path, run):
    cfg, r, _ = run
    ck = os.path.join(r, "checkpoints")
    stale = os.path.join(ck, ".step-00000050.npz.tmp-99999")
    with open(stale, "wb") as f:
        f.write(b"PK\x03\x04 half a checkpoint")
    assert ckpt.latest(ck).endswith("step-00000046.npz")          # never taken for a checkpoint
    rc, out, err, _ = dtrun(cfg, "--run-dir", r, "--resume", "--set", "train.epochs=2", cwd=os.path.dirname(cfg),
                            timeout=120)
    assert rc == 0, err
    assert not os.path.exists(stale)


# -- non-finite training -----------------------------------------------------------------------
def test_diverging_training_stops_without_writing_nan(tmp_path):
    cfg = write(tmp_path / "job.toml", JOB.replace("interval = 10", "interval = 1"))
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "r", "--set", "optimizer.lr=1e30", cwd=tmp_path, timeout=120)
    assert rc != 0 and "Traceback" not in err
    assert "training diverged at step" in err and "Try a lower [optimizer] lr (now " in err, err
    assert "last finite loss" in err or "no finite loss yet" in err
    r = tmp_path / "r"
    steps = [s for s, _ in ckpt.list_checkpoints(r / "checkpoints")]
    for step, path in ckpt.list_checkpoints(r / "checkpoints"):
        arrays, optim_state, meta = ckpt.read(path)
        assert all(np.isfinite(a).all() for a in arrays.values()), step
    if steps:     # the newest finite checkpoint survives keep_last
        assert steps[-1] < int(err.split("training diverged at step ")[1].split(":")[0].split(" ")[0])
    for line in (r / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)


def test_nan_gradient_on_one_rank_stops_every_rank_and_keeps_the_good_checkpoints(tmp_path):
    """Rank 1's loss turns NaN at step 7: every rank stops there (no hang), the checkpoints of steps 4-6
    stay (keep_last 3 deletes nothing for a refused one); with skip_nonfinite_steps the job skips
    steps 7 and 9, counts them and ends normally."""
    cfg = write(tmp_path / "job.toml", JOB.replace("interval = 10", "interval = 1"))
    rc, out, err, seconds = dtrun("-n", "2", cfg, "--run-dir", "r", "--set", "train.max_steps=12", cwd=tmp_path,
                                  timeout=120, env={"DTRUN_TEST_NAN_LOSS_AT": "1:7,9"})
    assert rc != 0 and "Traceback" not in err, err
    assert "training diverged at step 7: the gradient norm is nan" in err and "last finite loss" in err, err
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "r" / "checkpoints")] == [4, 5, 6]
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "s", "--set", "train.max_steps=12", "--set",
                            "train.skip_nonfinite_steps=2", cwd=tmp_path, timeout=120,
                            env={"DTRUN_TEST_NAN_LOSS_AT": "1:7,9"})
    assert rc == 0, err
    summary = _strict_json((tmp_path / "s" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["skipped_steps"] == 2
    records = [_strict_json(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert [r["skipped_steps"] for r in records if r["kind"] == "train"] == [0, 2, 2]
    _, _, meta = ckpt.read(ckpt.latest(tmp_path / "s" / "checkpoints"))
    assert meta["skipped_steps"] == 2


def test_guard_skips_then_stops():
    import disttrain as dt
    from disttrain.training.nonfinite import NonFiniteError, NonFiniteGuard
    p = dt.tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = dt.tensor(np.array([1.0, np.nan, 0.0], np.float32))
    guard = NonFiniteGuard(skip_limit=2)
    guard.observe_loss(1, 0.5)
    assert guard.check(1, [p]) is False and guard.check(2, [p]) is False and guard.skipped == 2
    with pytest.raises(NonFiniteError, match=r"diverged at step 3 after skipping 2 step\(s\).*last finite loss 0.5 "
                                             r"at step 1"):
        guard.check(3, [p], lr=0.1)
    p.grad = dt.tensor(np.full(3, 3e30, np.float32))       # finite, though its squares overflow float32
    assert guard.check(4, [p]) is True


def test_metrics_and_summary_are_strict_json(tmp_path):
    from disttrain.training.metrics import MetricsWriter, read_metrics, write_json
    w = MetricsWriter(str(tmp_path / "m.jsonl"))
    w.write({"loss": float("nan"), "lr": float("inf"), "acc": np.float32(0.5)})
    w.close()
    assert _strict_json((tmp_path / "m.jsonl").read_text()) == {"loss": None, "lr": None, "acc": 0.5}
    write_json(str(tmp_path / "s.json"), {"best": float("nan"), "x": [1.0, float("-inf")]})
    assert _strict_json((tmp_path / "s.json").read_text()) == {"best": None, "x": [1.0, None]}
    assert read_metrics(tmp_path / "m.jsonl")[0]["loss"] is None


def test_checkpoint_refuses_non_finite_state_and_keeps_the_good_ones(tmp_path):
    import disttrain as dt
    from disttrain import nn, optim
    from disttrain.training.nonfinite import NonFiniteError
    model = nn.Linear(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2):
        ckpt.save(tmp_path, step, model, opt, {"world_size": 1}, keep_last=2)
    good = snapshot(tmp_path)
    model.weight.data[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="model/weight holds 1 non-finite value"):
        ckpt.save(tmp_path, 3, model, opt, {"world_size": 1}, keep_last=1)
    assert snapshot(tmp_path) == good


# -- data checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("case, fragment", [
    ("nan_input", "d.npz [x_key 'x']: the inputs hold 2 non-finite value(s) (NaN/inf) in 1 sample(s), the first at "
                  "sample 7"),
    ("zero_samples", "d.npz [x_key 'x']: the inputs hold 0 samples"),
    ("one_d", "d.npz [x_key 'x']: the inputs have shape (50,); they must be (samples, features...)"),
    ("huge_label", "d.npz [y_key 'y']: the largest label is 2000000000 (sample 3), which would make 2,000,000,001 "
                   "classes"),
    ("negative_label", "d.npz [y_key 'y']: labels must be >= 0, found -2 (sample 3)"),
    ("label_over_num_classes", "d.npz [y_key 'y']: training label 7 (sample 3) is outside 0..4 ([data] num_classes "
                               "= 5)"),
    ("float_labels", "labels must be integers"),
])
def test_bad_data_is_named_before_anything_runs(tmp_path, case, fragment):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)).astype(np.float32), np.arange(50) % 3
    extra = ""
    if case == "nan_input":
        x[7, 1:3] = np.nan
    elif case == "zero_samples":
        x, y = x[:0], y[:0]
    elif case == "one_d":
        x = x[:, 0]
    elif case == "huge_label":
        y[3] = 2_000_000_000
    elif case == "negative_label":
        y[3] = -2
    elif case == "label_over_num_classes":
        y[3] = 7
        extra = "num_classes = 5\n"
    elif case == "float_labels":
        y = y + 0.5
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = write(tmp_path / "j.toml", f"[model]\nname = 'mlp'\n[data]\nsource = 'npz'\npath = 'd.npz'\n{extra}"
                "[train]\nbatch_size = 4\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        _refused(lambda: check_job(cfg), fragment)
    finally:
        os.chdir(cwd)
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "j.toml"]


def test_sizes_that_cannot_fit_are_refused_with_the_estimate(tmp_path):
    cfg = write(tmp_path / "j.toml", "[model]\nname = 'mlp'\n")
    _refused(lambda: check_job(cfg, ["model.hidden=[1000000000]"], dry_run=False),
             "model 'mlp' (", "GiB of memory per rank and only")
    _refused(lambda: load_config(cfg, ["model.hidden=[99999999999999999999]"]),
             "[model] hidden: 99999999999999999999 is too large")
    _refused(lambda: check_job(cfg, ["data.source='synthetic'", "data.num_samples=4000000000000"]),
             "synthetic data of 4,000,000,000,000 samples")
    assert os.listdir(tmp_path) == ["j.toml"]


# -- tracebacks that became messages ------------------------------------------------------------
@pytest.mark.parametrize("content", [bytes(range(256)) * 4, "[model]\nname = 'mlp'\n# caf\u00e9\n".encode("latin-1")])
@pytest.mark.parametrize("command", ["run", "check"])
def test_non_utf8_config(tmp_path, content, command):
    (tmp_path / "bad.toml").write_bytes(content)
    rc, out, exc = cli(command, "bad.toml", cwd=tmp_path)
    assert rc == 1 and isinstance(exc, SystemExit) and "Traceback" not in out
    assert "bad.toml: not UTF-8 text" in out and "save it as UTF-8" in out, out
    assert os.listdir(tmp_path) == ["bad.toml"]


def test_output_dir_problems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "j.toml", "[model]\nname = 'mlp'\n")
    (tmp_path / "afile").write_text("x")
    _refused(lambda: check_job(cfg, ["job.output_dir='afile'"]), "[job] output_dir afile is a file")
    _refused(lambda: check_job(cfg, ["job.output_dir='afile/sub'"]), "is a file, not a directory")
    _refused(lambda: check_job(cfg, ["job.output_dir='/proc/runs'"]), "is under /proc, a kernel filesystem")
    assert sorted(os.listdir(tmp_path)) == ["afile", "j.toml"]


def test_read_only_filesystem(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = write(tmp_path / "j.toml", "[model]\nname = 'mlp'\n")
    cmd = (f"mount -t tmpfs -o ro none {ro} && exec {sys.executable} -m launch {cfg} --set job.output_dir='{ro}'")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a read-only filesystem here: {proc.stderr.strip()}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "is on a read-only filesystem" in proc.stderr, proc.stderr


def test_failing_job_import_is_named(tmp_path):
    write(tmp_path / "badmod.py", "raise ValueError('boom in user module')\n")
    cfg = write(tmp_path / "j.toml", "[job]\nimports = ['badmod']\n[model]\nname = 'mlp'\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        _refused(lambda: load_config(cfg), "[job] imports: importing 'badmod' raised ValueError: boom in user module",
                 "badmod.py:1")
    finally:
        os.chdir(cwd)
        sys.modules.pop("badmod", None)


def test_checkpoints_replaced_by_a_file(run, tmp_path):
    cfg, r, _ = run
    import shutil
    shutil.rmtree(os.path.join(r, "checkpoints"))
    write(os.path.join(r, "checkpoints"), "not a directory")
    before = snapshot(r)
    _refused(lambda: check_job(cfg, run_dir=r, resume=True), "checkpoints is not a directory")
    assert snapshot(r) == before
    import disttrain as dt
    model = dt.nn.Linear(2, 2)
    with pytest.raises(ckpt.CheckpointError, match=r"could not write checkpoint .*checkpoints/step-00000001\.npz"):
        ckpt.save(os.path.join(r, "checkpoints"), 1, model, dt.optim.SGD(model.parameters(), lr=0.1), {})


def test_run_directory_damage_is_named(run, tmp_path, monkeypatch):
    cfg, r, _ = run
    os.unlink(os.path.join(r, "metrics.jsonl"))
    os.mkdir(os.path.join(r, "metrics.jsonl"))
    before = snapshot(r)
    _refused(lambda: check_job(cfg, run_dir=r, resume=True), "metrics.jsonl is not a file")
    assert snapshot(r) == before
    # an OS error under a running job (here: summary.json cannot be written) is one line, no traceback
    from disttrain.training import job, trainer
    conf = load_config(cfg, ["train.max_steps=2", "checkpoint.enabled=false"])
    job.create_run_dir(conf, str(tmp_path / "new"))

    def fails(path, obj):
        raise OSError(28, "No space left on device", path)
    monkeypatch.setattr(trainer, "write_json", fails)
    with pytest.raises(SystemExit) as info:
        job.run_in_process(conf, str(tmp_path / "new"), False)
    assert str(info.value.code).startswith("dtrun: ") and "summary.json: No space left on device" in info.value.code


def test_disk_full_during_training_is_one_message(tmp_path, monkeypatch):
    from disttrain.training import job
    cfg = load_config(write(tmp_path / "j.toml", JOB), ["train.max_steps=3", "checkpoint.interval=2"])
    job.create_run_dir(cfg, str(tmp_path / "r"))

    def full(f, **arrays):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(SystemExit) as info:
        job.run_in_process(cfg, str(tmp_path / "r"), False)
    assert "could not write checkpoint" in str(info.value.code) and "No space left on device" in str(info.value.code)
    assert os.listdir(tmp_path / "r" / "checkpoints") == []


# -- smaller --------------------------------------------------------------------------------------
def test_toml_writer_escapes_control_characters(tmp_path):
    cfg = load_config(write(tmp_path / "j.toml", "[model]\nname = 'mlp'\n"),
                      ['job.output_dir="o\\nx\\ty\\u0001z\\u007f"'])
    text = dump_toml(cfg)
    again = load_config(write(tmp_path / "again.toml", text))
    assert again.job.output_dir == "o\nx\ty\x01z\x7f"


def test_checkpoint_layout_matches_its_docstring(run):
    _, r, _ = run
    with np.load(ckpt.latest(os.path.join(r, "checkpoints"))) as z:
        keys = z.files
    assert "model/1.weight" in keys and "meta" in keys and any(k.startswith("optim/") for k in keys)
    assert "model/<name>" in ckpt.__doc__ and "param/<name>" not in ckpt.__doc__


# -- issue 13 part 4: launcher and config traps -----------------------------------------------------
def test_resume_that_would_move_the_cosine_horizon_is_refused(run):
    cfg, r, _ = run
    before = snapshot(r)
    msg = _refused(lambda: check_job(cfg, ["train.epochs=4"], run_dir=r, resume=True),
                   "its learning-rate schedule was fixed when the run started (warmup_steps 2, start_factor 0.1, "
                   "then T_max 44", "this resume would make it warmup_steps 2, start_factor 0.1, then T_max 90",
                   "the learning rate would jump from")
    assert "changing [train] epochs or max_steps moves its horizon" in msg
    _refused(lambda: check_job(cfg, ["train.epochs=4", "train.max_steps=60"], run_dir=r, resume=True), "T_max 58")
    assert snapshot(r) == before


def test_check_runs_what_run_checks(tmp_path):
    rc, out, exc = cli("check", os.path.join(CONFIGS, "fashion_mnist_cnn.toml"), "--set", "data.source=digits",
                       "--unset", "data.use_test_split", cwd=tmp_path)
    assert rc == 1 and "needs images of at least 12x12 pixels; the data has 8x8" in out, out
    rc, out, exc = cli("check", os.path.join(CONFIGS, "digits_mlp.toml"), "--unset", "train.epoch", cwd=tmp_path)
    assert rc == 1 and "--unset train.epoch" in out and "Did you mean 'epochs'?" in out, out
    rc, out, exc = cli("check", os.path.join(CONFIGS, "digits_mlp.toml"), "--unset", "train.epochs", cwd=tmp_path)
    assert rc == 0 and "epochs = 10\n" in out, out                    # the default applies again
    assert os.listdir(tmp_path) == []


def test_command_typos_and_dry_run_after_a_script(tmp_path):
    rc, out, exc = cli("chek", os.path.join(CONFIGS, "digits_mlp.toml"), cwd=tmp_path)
    assert rc == 2 and "No such command 'chek'. Did you mean 'check'?" in out, out
    marker = tmp_path / "ran"
    script = write(tmp_path / "s.py", f"open({str(marker)!r}, 'w').write('x')\n")
    rc, out, exc = cli("-n", "2", script, "--lr", "1", "--dry-run", cwd=tmp_path)
    assert rc == 2 and "--dry-run after the script" in out and "Put it before the script" in out, out
    assert not marker.exists()
    rc, out, exc = cli("--dry-run", "-n", "2", script, cwd=tmp_path)
    assert rc == 0 and not marker.exists()
    echo = write(tmp_path / "echo.py", "import sys; print('args', sys.argv[1:])\n")
    rc, out, exc = cli("-n", "1", "--", echo, "--dry-run", cwd=tmp_path)      # the script's own --dry-run
    assert rc == 0 and "args ['--dry-run']" in out, out


# -- issue 8 (a): only rank 0 reads the run directory ---------------------------------------------
def test_only_rank_0_reads_the_run_directory(tmp_path):
    """Rank 1 runs in its own mount namespace with an empty tmpfs over the run directory's parent (as on
    a host without a shared filesystem); training and then resuming still work, bitwise as usual."""
    from disttrain.training import job
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    run_dir = str(hidden / "run")
    cfg_path = write(tmp_path / "j.toml", JOB.replace("epochs = 2", "epochs = 1"))

    def launch(resume):
        rank = [sys.executable, "-m", "mpi4py", "-m", "launch.rank", "config", run_dir] + (["--resume"] if resume else [])
        blind = (f"mount -t tmpfs none {hidden} && test ! -e {run_dir} && exec " + " ".join(rank))
        env = dict(os.environ, MPIEXEC_TIMEOUT="120", DISTTRAIN_WAIT_MODE="sleep", PYTHONPATH=REPO)
        return subprocess.run([mpiexec, "-n", "1"] + rank + [":", "-n", "1", "unshare", "--mount", "--propagation",
                                                           "private", "sh", "-c", blind],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)

    cfg = load_config(cfg_path)
    job.create_run_dir(cfg, run_dir)
    proc = launch(False)
    if "unshare:" in proc.stderr or "mount:" in proc.stderr:
        pytest.skip(f"cannot make a private mount namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(open(os.path.join(run_dir, "summary.json")).read())
    assert summary["world_size"] == 2 and summary["steps"] == 12 and summary["final_val_accuracy"] > 0.2
    # resume from the step-10 checkpoint: rank 1 gets it (and the config) by broadcast only
    os.unlink(ckpt.path_for(os.path.join(run_dir, "checkpoints"), 12))
    final = {k: v for k, v in summary.items() if k != "wall_time_s"}
    proc = launch(True)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(open(os.path.join(run_dir, "summary.json")).read())
    assert {k: v for k, v in again.items() if k != "wall_time_s"} == final
    assert "resumed at step 10" in proc.stdout


def test_ctrl_c_before_the_ranks_start_exits_130(tmp_path):
    """At any moment before launch (imports, config checks, preflight compiling kernels) Ctrl-C ends
    dtrun with status 130 and one line: no traceback, no click "Aborted!", nothing written."""
    import signal
    import time
    t0 = time.monotonic()             # Python's own start-up (before dtrun's code runs) is not ours to handle
    subprocess.run([sys.executable, "-c", "import launch.cli"], cwd=tmp_path, check=True)
    startup = 1.5 * (time.monotonic() - t0)
    for delay in (startup, startup + 0.3, startup + 0.6):
        proc = subprocess.Popen([sys.executable, "-m", "launch", "-n", "2", os.path.join(CONFIGS, "digits_mlp.toml"),
                                 "--run-dir", "r"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (delay, proc.returncode, err)
        assert "Traceback" not in err and "Aborted!" not in err and "dtrun: interrupted" in err, (delay, err)
        if "nothing was started" in err:
            assert not os.path.exists(tmp_path / "r"), delay
        else:
            import shutil
            shutil.rmtree(tmp_path / "r", ignore_errors=True)


def test_an_interrupt_swallowed_in_a_callback_still_stops_dtrun():
    from launch import interrupt
    restore = interrupt.install()
    try:
        try:
            interrupt._handler(2, None)        # what SIGINT does; llvmlite's callback would swallow this
        except KeyboardInterrupt:
            pass
        with pytest.raises(SystemExit) as info:
            interrupt.check()
        assert info.value.code == 130
    finally:
        interrupt._state["interrupted"] = False
        restore()


def test_library_warnings_go_to_the_disttrain_logger(tmp_path, caplog):
    import logging
    import disttrain as dt
    from disttrain.distributed import stall
    from disttrain.training.nonfinite import NonFiniteGuard
    (tmp_path / ".step-00000003.npz.tmp-4242").write_bytes(b"partial")
    p = dt.tensor(np.ones(2, np.float32), requires_grad=True)
    p.grad = dt.tensor(np.array([np.inf, 0.0], np.float32))
    with caplog.at_level(logging.WARNING, logger="disttrain"):
        assert ckpt.remove_stale_temps(str(tmp_path)) == [".step-00000003.npz.tmp-4242"]
        assert NonFiniteGuard(skip_limit=1).check(5, [p]) is False
        stall._stderr("disttrain stall detector: rank 0: collective #1 has waited 60.0 s")
    texts = [r.getMessage() for r in caplog.records if r.name == "disttrain"]
    assert len(texts) == 3 and "interrupted save" in texts[0] and "step 5: the gradient norm is inf; update " \
        "skipped (1 of at most 1" in texts[1] and "stall detector" in texts[2], texts
