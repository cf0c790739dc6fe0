"""Regenerate reference.json with PyTorch (not run in CI; needs `pip install torch==2.13.0`).

    python tests/torch_reference/generate.py
"""
import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import program  # noqa: E402


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
nanogpt = load(os.path.join(HERE, "..", "..", "examples", "upstream", "nanogpt_model.py"), "upstream_nanogpt_model")
result = {"torch": torch.__version__, "runs": program.run(torch), "nanogpt": program.run_nanogpt(torch, nanogpt)}
path = os.path.join(HERE, "reference.json")
with open(path, "w") as f:
    json.dump(result, f, indent=1)
print(f"wrote {path}")
