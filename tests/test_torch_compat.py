"""Coming from PyTorch: a torch-idiomatic program against stored PyTorch results, the ported
examples (diff against upstream limited to import/data/device lines, and a short run of each),
and torch.distributed's names on real MPI ranks."""
import difflib
import importlib.util
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import disttrain as dt
import disttrain.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXAMPLES = os.path.join(REPO, "examples")
sys.path.insert(0, os.path.join(HERE, "torch_reference"))
sys.path.insert(0, os.path.join(HERE, "mpi"))
import program  # noqa: E402
import mpirun  # noqa: E402

with open(os.path.join(HERE, "torch_reference", "reference.json")) as _f:
    REFERENCE = json.load(_f)

# F.cross_entropy(..., ignore_index=) (used by nanoGPT's model.py) comes from another branch.
HAS_IGNORE_INDEX = "ignore_index" in inspect.signature(F.cross_entropy).parameters
needs_ignore_index = pytest.mark.skipif(not HAS_IGNORE_INDEX, reason="F.cross_entropy has no ignore_index yet")


# -- the same program, PyTorch's numbers ----------------------------------------------------
@pytest.fixture(scope="module")
def runs():
    return program.run(dt)


@pytest.mark.parametrize("name", sorted(REFERENCE["runs"]))
def test_program_matches_pytorch(runs, name):
    ref, got = REFERENCE["runs"][name], runs[name]
    np.testing.assert_allclose(got["lr"], ref["lr"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=0, atol=1e-5)
    assert abs(got["checksum"] - ref["checksum"]) <= 1e-4 * abs(ref["checksum"])
    assert got["loss"][-1] < got["loss"][0]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_ignore_index
def test_nanogpt_port_matches_pytorch():
    model_module = _load(os.path.join(EXAMPLES, "nanogpt_model.py"), "ported_nanogpt_model")
    got = program.run_nanogpt(dt, model_module)
    np.testing.assert_allclose(got["loss"], REFERENCE["nanogpt"]["loss"], rtol=0, atol=1e-5)
    assert got["tokens"] == REFERENCE["nanogpt"]["tokens"]


# -- ported examples: only import, data and device lines differ -------------------------------
DATA_AND_DEVICE_LINES = {
    "mnist_main.py": {
        "    dataset1 = datasets.FashionMNIST(None, train=True,",
        "    dataset2 = datasets.FashionMNIST(None, train=False,",
    },
    "ddp_tutorial.py": {
        '    model = ToyModel().to("cpu")',
        "    ddp_model = DDP(model, device_ids=None)",
        '    labels = torch.randn(20, 5).to("cpu")',
        '    dev0 = "cpu"',
        '    dev1 = "cpu"',
        "    n_gpus = dist.get_world_size()",
    },
    "nanogpt_model.py": set(),
    "nanogpt_train.py": set(),
}
EXPECTED_CHANGES = {"mnist_main.py": 8, "ddp_tutorial.py": 15, "nanogpt_model.py": 3, "nanogpt_train.py": 1}


def _is_import(line):
    s = line.strip()
    return (s.startswith("import ") or s.startswith("from ")) and " import " in f" {s}"


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_port_differs_from_upstream_only_in_import_data_device_lines(name):
    with open(os.path.join(EXAMPLES, "upstream", name)) as f:
        upstream = f.read().splitlines()
    with open(os.path.join(EXAMPLES, name)) as f:
        port = f.read().splitlines()
    changed = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=upstream, b=port, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        assert op == "replace" and i2 - i1 == j2 - j1, (
            f"{name}: lines {i1 + 1}-{i2} were {op}d, not replaced one for one:\n"
            + "\n".join(upstream[i1:i2]) + "\n---\n" + "\n".join(port[j1:j2]))
        changed += list(zip(upstream[i1:i2], port[j1:j2]))
    for old, new in changed:
        imports = _is_import(old) and _is_import(new)
        assert imports or new in DATA_AND_DEVICE_LINES[name], f"{name}: unexpected change\n- {old}\n+ {new}"
    assert len(changed) == EXPECTED_CHANGES[name]


def _run(args, timeout=240, **env):
    full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    p = subprocess.run([sys.executable, *args], cwd=EXAMPLES, env=full_env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f"{args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout, p.stderr


def test_mnist_example_runs(tmp_path):
    out, err = _run(["mnist_main.py", "--epochs", "1", "--dry-run", "--test-batch-size", "64"],
                    DISTTRAIN_DATA_LIMIT="64")
    assert "Train Epoch: 1 [0/64 (0%)]" in out and "Test set: Average loss:" in out, out
    # Without the Fashion-MNIST files the stand-in data is announced, never silent.
    assert os.path.isdir(dt.data.FASHION_MNIST_ROOT) or "synthetic 28x28 images instead" in err, err


def test_ddp_tutorial_runs_on_two_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))     # the tutorial's checkpoint goes to tempfile.gettempdir()
    rc, out, err, _ = mpirun.run(2, os.path.join(EXAMPLES, "ddp_tutorial.py"), timeout=180)
    assert rc == 0, f"{out[-3000:]}\n{err[-3000:]}"
    for line in ("Running basic DDP example on rank 0.", "Running basic DDP example on rank 1.",
                 "Running DDP checkpoint example on rank 1.", "Running DDP with model parallel example on rank 0."):
        assert line in out, out
    assert "model parallel example on rank 1" not in out      # world_size n_gpus//2 == 1: rank 0 only
    assert not os.listdir(tmp_path)                            # rank 0 removed the checkpoint it saved


@needs_ignore_index
def test_nanogpt_driver_runs(tmp_path):
    out, _ = _run(["nanogpt_train.py", "--max_iters=6", "--eval_interval=3", "--eval_iters=1", "--lr_decay_iters=6"])
    assert "step 6: train loss" in out and "sample: 1" in out, out


# -- torch.distributed names on real ranks ----------------------------------------------------
@pytest.mark.parametrize("n", [2, 3])
def test_torch_distributed_names_on_mpi_ranks(n):
    rc, out, err, _ = mpirun.run(n, "torch_api_checks.py", timeout=120)
    assert rc == 0, f"{out[-3000:]}\n{err[-3000:]}"
    for name in ("broadcast_objects", "gather_objects", "refuse_everywhere", "world_size_mismatch", "spawn"):
        for r in range(n):
            assert f"CHECK {name} rank={r} ok" in out, f"{name} rank {r}:\n{out[-3000:]}\n{err[-3000:]}"
