"""Config validation: every error path gives one clear paragraph (file, key, problem, suggestion)."""
import os

import pytest

from disttrain.training.config import ConfigError, dump_toml, load_config
from dtrun_helpers import CONFIGS, dtrun, write

BASE = """
[model]
name = "mlp"
"""


def error_of(tmp_path, text, overrides=()):
    path = write(tmp_path / "job.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(path) or msg.startswith("--set"), msg
    assert msg.endswith("Nothing was started."), msg
    return msg


def test_shipped_configs_validate_and_round_trip(tmp_path):
    for name in ("digits_mlp", "mlp_bench"):
        cfg = load_config(os.path.join(CONFIGS, f"{name}.toml"))
        again = load_config(write(tmp_path / "resolved.toml", dump_toml(cfg)))
        assert again.as_dict() == cfg.as_dict()
    cfg = load_config(os.path.join(CONFIGS, "fashion_mnist_cnn.toml"), check_files=False)
    assert cfg.model.name == "lenet" and cfg.data.source == "fashion_mnist"


def test_defaults_and_types(tmp_path):
    cfg = load_config(write(tmp_path / "j.toml", BASE))
    assert cfg.job.name == "j" and cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.1
    assert cfg.train.batch_size == 32 and cfg.distributed.bucket_cap_mb == 25.0
    assert cfg.model.hidden == [128] and cfg.data.source == "digits"
    # an int where a float is expected is accepted and converted
    cfg = load_config(write(tmp_path / "k.toml", BASE + "[distributed]\nbucket_cap_mb = 1\n"))
    assert isinstance(cfg.distributed.bucket_cap_mb, float)


def test_unknown_key_suggests_spelling(tmp_path):
    msg = error_of(tmp_path, BASE + "[optimizer]\nname = 'sgd'\nlerning_rate = 0.1\nmomentun = 0.9\n")
    assert "[optimizer] lerning_rate" in msg and "unknown key" in msg
    msg = error_of(tmp_path, BASE + "[optimizer]\nmomentun = 0.9\n")
    assert "[optimizer] momentun" in msg and "Did you mean 'momentum'?" in msg


def test_key_in_wrong_section_points_to_its_section(tmp_path):
    msg = error_of(tmp_path, BASE + "[train]\nlr = 0.1\n")
    assert "[train] lr" in msg and "'lr' in [optimizer]" in msg


def test_unknown_section_suggests_spelling(tmp_path):
    msg = error_of(tmp_path, BASE + "[optimiser]\nlr = 0.1\n")
    assert "[optimiser]" in msg and "unknown section" in msg and "Did you mean [optimizer]?" in msg


def test_top_level_key_is_rejected(tmp_path):
    msg = error_of(tmp_path, "epochs = 3\n" + BASE)
    assert "epochs" in msg and "belongs to a section" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, BASE + "[train]\nepochs = '10'\n")
    assert "[train] epochs" in msg and "must be an integer" in msg and 'string "10"' in msg
    msg = error_of(tmp_path, BASE + "[train]\nbatch_size = 3.5\n")
    assert "must be an integer" in msg
    msg = error_of(tmp_path, BASE.replace('[model]\nname = "mlp"', '[model]\nname = "mlp"\nhidden = 64'))
    assert "[model] hidden" in msg and "list of integers" in msg
    msg = error_of(tmp_path, BASE + "[distributed]\ntimeline = 1\n")
    assert "[distributed] timeline" in msg and "true or false" in msg


def test_out_of_range(tmp_path):
    msg = error_of(tmp_path, BASE + "[train]\nbatch_size = 0\n")
    assert "[train] batch_size" in msg and "must be >= 1, got 0" in msg
    msg = error_of(tmp_path, BASE + "[data]\nval_fraction = 1.0\n")
    assert "[data] val_fraction" in msg and "must be < 1" in msg
    msg = error_of(tmp_path, BASE + "[distributed]\nbucket_cap_mb = 0\n")
    assert "must be > 0" in msg


def test_bad_choice_suggests(tmp_path):
    msg = error_of(tmp_path, BASE + "[distributed]\ncomm_hook = 'fp61'\n")
    assert "[distributed] comm_hook" in msg and "Did you mean 'fp16'?" in msg
    assert '"none", "allreduce", "fp16", "bf16", "powersgd"' in msg


def test_model_errors(tmp_path):
    msg = error_of(tmp_path, "[train]\nepochs = 1\n")
    assert "[model] name" in msg and "required" in msg and "mlp" in msg
    msg = error_of(tmp_path, "[model]\nname = 'lenett'\n")
    assert "unknown model" in msg and "Did you mean 'lenet'?" in msg
    msg = error_of(tmp_path, "[model]\nname = 'lenet'\nchannels = [6]\n")
    assert "[model] channels" in msg and "2 convolutions" in msg
    msg = error_of(tmp_path, "[model]\nname = 'lenet'\ndropout = 0.1\n")   # an MLP key
    assert "[model] dropout" in msg and "unknown key" in msg


def test_optimizer_errors(tmp_path):
    msg = error_of(tmp_path, BASE + "[optimizer]\nname = 'adma'\n")
    assert "unknown update rule" in msg and "Did you mean 'adam'?" in msg
    msg = error_of(tmp_path, BASE + "[optimizer]\nname = 'adam'\nbetas = [0.9, 1.5]\n")
    assert "[optimizer] betas" in msg
    msg = error_of(tmp_path, BASE + "[optimizer]\nname = 'sgd'\nlr = -1\n")
    assert "[optimizer] lr" in msg and "invalid lr" in msg


def test_user_registered_rule_via_imports(tmp_path, monkeypatch):
    write(tmp_path / "my_rules_h4.py", "import numpy as np\nimport disttrain as dt\n"
          "@dt.optim.register_rule('signsgd_h4', defaults={'lr': 0.01})\n"
          "def signsgd(theta, grad, state, hp):\n    theta -= hp['lr'] * np.sign(grad)\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path / "j.toml", "[job]\nimports = ['my_rules_h4']\n" + BASE +
                            "[optimizer]\nname = 'signsgd_h4'\nlr = 0.002\n"))
    assert cfg.optimizer.name == "signsgd_h4" and cfg.optimizer.lr == 0.002
    msg = error_of(tmp_path, "[job]\nimports = ['no_such_module_h4']\n" + BASE)
    assert "[job] imports" in msg and "no_such_module_h4" in msg


def test_data_errors(tmp_path):
    msg = error_of(tmp_path, BASE + "[data]\nsource = 'npz'\npath = 'missing.npz'\n")
    assert "[data] path" in msg and "no such file: missing.npz" in msg
    msg = error_of(tmp_path, BASE + "[data]\nsource = 'npz'\n")
    assert "[data] path" in msg and "required" in msg
    msg = error_of(tmp_path, BASE + "[data]\nsource = 'fashion_mnist'\npath = '/nonexistent/fmnist'\n")
    assert "no such directory: /nonexistent/fmnist" in msg and "dataset-fashion-mnist" in msg
    msg = error_of(tmp_path, BASE + "[data]\nsource = 'digits'\nnum_samples = 10\n")
    assert "[data] num_samples" in msg and 'does not apply to source "digits"' in msg
    msg = error_of(tmp_path, BASE + "[data]\nsource = 'mnist'\n")
    assert "[data] source" in msg and "must be one of" in msg


def test_schedule_key_must_fit_schedule(tmp_path):
    msg = error_of(tmp_path, BASE + "[schedule]\nname = 'step'\nmin_lr = 0.1\n")
    assert "[schedule] min_lr" in msg and 'does not apply to schedule "step"' in msg and "cosine" in msg


def test_toml_syntax_error(tmp_path):
    msg = error_of(tmp_path, BASE + "[train\nepochs = 3\n")
    assert "not valid TOML" in msg


def test_overrides(tmp_path):
    path = write(tmp_path / "j.toml", BASE)
    cfg = load_config(path, ["optimizer.lr=0.5", "model.hidden=[16, 8]", "optimizer.name=adam",
                             "distributed.comm_hook=fp16"])
    assert cfg.optimizer.lr == 0.5 and cfg.model.hidden == [16, 8] and cfg.optimizer.name == "adam"
    assert cfg.distributed.comm_hook == "fp16"
    for bad, expect in (("optimizer.lrr=0.1", "Did you mean 'lr'?"), ("optimizer.lr=abc", "must be a finite number"),
                        ("lr=0.1", "expected SECTION.KEY=VALUE"), ("optimiser.lr=1", "Did you mean [optimizer]?"),
                        ("train.epochs=[1", "not a TOML value")):
        with pytest.raises(ConfigError) as info:
            load_config(path, [bad])
        assert str(info.value).startswith(f"--set {bad}") and expect in str(info.value), str(info.value)


def test_cli_reports_config_error_without_traceback_and_writes_nothing(tmp_path):
    path = write(tmp_path / "job.toml", BASE + "[optimizer]\nmomentun = 0.9\n")
    rc, out, err, _ = dtrun("-n", "2", path, cwd=tmp_path, timeout=60)
    assert rc != 0
    assert "Traceback" not in err and "Did you mean 'momentum'?" in err and str(path) in err
    assert not os.path.exists(tmp_path / "runs")
    # a mismatch only the data reveals (LeNet on 8x8 digits) is caught before anything starts too
    path = write(tmp_path / "lenet.toml", "[model]\nname = 'lenet'\n")
    rc, out, err, _ = dtrun("-n", "2", path, "--set", "train.epochs=1", cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err and "needs images of at least 12x12" in err, err
    assert not os.path.exists(tmp_path / "runs")


def test_cli_check_prints_resolved_config(tmp_path):
    path = write(tmp_path / "job.toml", BASE)
    rc, out, err, _ = dtrun("check", path, "--set", "train.epochs=2", cwd=tmp_path, timeout=60)
    assert rc == 0, err
    assert "[train]\nepochs = 2\n" in out and 'name = "mlp"' in out


def test_cli_batch_too_large_for_the_shards(tmp_path):
    path = write(tmp_path / "job.toml", BASE + "[train]\nbatch_size = 600\ngrad_accum_steps = 3\n")
    rc, out, err, _ = dtrun("-n", "2", path, cwd=tmp_path, timeout=60)
    assert rc != 0 and "Traceback" not in err
    assert "leaves no full optimizer step in an epoch of 719 samples per rank" in err, err
    assert not os.path.exists(tmp_path / "runs")
