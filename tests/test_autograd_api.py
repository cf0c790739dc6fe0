"""The public names of issue 2's contract that live in the core, and the seedable generator."""
import json
import subprocess
import sys

import numpy as np

import disttrain as dt
import disttrain.random as dtr


def test_top_level_names():
    for name in ("Tensor", "tensor", "from_numpy", "no_grad", "enable_grad", "set_grad_enabled",
                 "is_grad_enabled", "custom_vjp", "custom_gradient", "manual_seed"):
        assert callable(getattr(dt, name)), name
    for name in ("Function", "Context", "backward", "queue_callback", "gradcheck", "jacobian",
                 "numerical_jacobian", "GradcheckError", "RemovableHandle"):
        assert hasattr(dt.autograd, name), name
    assert dt.autograd.Tensor is dt.Tensor


def test_import_is_light():
    # `import disttrain` must not pull in MPI or the nn stack (they load on first use).
    code = ("import sys, disttrain; print(sorted(m for m in ('mpi4py', 'disttrain.nn', "
            "'disttrain.distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_manual_seed_makes_draws_repeatable():
    dt.manual_seed(123)
    a = dtr.generator().standard_normal(5)
    dt.manual_seed(123)
    b = dtr.generator().standard_normal(5)
    dt.manual_seed(124)
    c = dtr.generator().standard_normal(5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generator_state_round_trips_through_json():
    dt.manual_seed(7)
    dtr.generator().random(3)
    state = json.loads(json.dumps(dtr.get_state()))
    want = dtr.generator().random(4)
    dtr.set_state(state)
    assert np.array_equal(dtr.generator().random(4), want)
