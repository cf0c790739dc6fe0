"""Checkpoint files: exact round trip, atomic writes, keep-last-K, clear errors for bad files."""
import os

import numpy as np
import pytest

import disttrain as dt
from disttrain import nn, optim
from disttrain.training import checkpoint as ckpt


def _model_and_adam(hidden=4):
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    opt = optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    x = dt.tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    nn.CrossEntropyLoss()(model(x), dt.tensor(np.array([0, 1, 1, 0, 1]))).backward()
    opt.step()
    return model, opt


def test_round_trip_is_exact(tmp_path):
    model, opt = _model_and_adam()
    meta = {"world_size": 2, "model_name": "mlp", "schedule": {"last_epoch": 3, "base_lrs": [0.01]},
            "interval": [[1.2345678901234567, 3, 7, 40], [0.1, 1, 0, 8]]}
    path = ckpt.save(tmp_path, 7, model, opt, meta)
    assert os.path.basename(path) == "step-00000007.npz"
    arrays, optim_state, got = ckpt.read(path)
    for name, value in model.state_dict().items():
        assert arrays[name].dtype == np.asarray(value).dtype and np.array_equal(arrays[name], value)
    assert got["step"] == 7 and got["interval"] == meta["interval"] and got["schedule"] == meta["schedule"]
    want = opt.state_dict()
    assert optim_state["param_groups"][0]["betas"] == (0.8, 0.9)
    for i, st in want["state"].items():
        for key, value in st.items():
            assert np.array_equal(optim_state["state"][i][key], value)
            assert type(optim_state["state"][i][key]) is type(value) or np.asarray(value).dtype == \
                np.asarray(optim_state["state"][i][key]).dtype
    model2, opt2 = _model_and_adam()
    opt2.load_state_dict(optim_state)                     # what the trainer does on resume
    model2.load_state_dict(arrays)
    ckpt.check_compatible(path, got, model2, 2)


def test_keep_last_and_no_temp_files(tmp_path):
    model, opt = _model_and_adam()
    for step in (1, 2, 3, 4, 5):
        ckpt.save(tmp_path, step, model, opt, {"world_size": 1}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]
    assert sorted(os.listdir(tmp_path)) == ["step-00000004.npz", "step-00000005.npz"]


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = _model_and_adam()
    good = ckpt.save(tmp_path, 1, model, opt, {"world_size": 1})
    before = open(good, "rb").read()

    def dies_half_way(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(ckpt.CheckpointError, match=r"could not write checkpoint .*step-00000002\.npz \(No space left "
                       r"on device\); nothing was written and the earlier checkpoints are intact"):
        ckpt.save(tmp_path, 2, model, opt, {"world_size": 1})
    assert os.listdir(tmp_path) == ["step-00000001.npz"] and open(good, "rb").read() == before
    assert ckpt.latest(tmp_path) == good


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_gives_clear_error(tmp_path, damage):
    model, opt = _model_and_adam()
    path = ckpt.save(tmp_path, 3, model, opt, {"world_size": 1})
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"truncate": data[: len(data) // 3], "garbage": b"not a zip file at all", "empty": b""}[damage])
    with pytest.raises(ckpt.CheckpointError, match=r"step-00000003\.npz is corrupt or truncated"):
        ckpt.read(path)


def test_not_a_checkpoint_and_pickles_are_refused(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(3))
    with pytest.raises(ckpt.CheckpointError, match="not a disttrain checkpoint"):
        ckpt.read(plain)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ckpt.CheckpointError, match="corrupt|not a disttrain"):
        ckpt.read(pickled)                                # allow_pickle=False: never unpickled


def test_other_model_and_world_size_are_named(tmp_path):
    model, opt = _model_and_adam(hidden=4)
    path = ckpt.save(tmp_path, 3, model, opt, {"world_size": 2, "model_name": "mlp"})
    _, _, meta = ckpt.read(path)
    other, _ = _model_and_adam(hidden=5)
    with pytest.raises(ckpt.CheckpointError, match=r"different model \(mlp\).*0\.weight: checkpoint \[4, 3\]"):
        ckpt.check_compatible(path, meta, other, 2)
    with pytest.raises(ckpt.CheckpointError, match="2-rank job; this job has 4 ranks"):
        ckpt.check_compatible(path, meta, model, 4)
