"""disttrain: distributed data-parallel training over MPI.

Single-process library use needs no MPI launch::

    import disttrain as dt
    x = dt.tensor([[1.0, 2.0]], requires_grad=True)
"""
import os as _os

# Numba's on-disk cache must be set before numba is first imported anywhere:
# a cold compile of the kernels costs seconds, a warm load a fraction of one.
_os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    _os.path.join(_os.environ.get("XDG_CACHE_HOME", _os.path.expanduser("~/.cache")), "disttrain", "numba"))

# Keep freed array memory for the next step instead of page-faulting it back in (disttrain/_malloc.py).
from . import _malloc  # noqa: E402
_malloc.tune()

from .autograd import (  # noqa: E402
    Tensor, tensor, from_numpy, Function, no_grad, enable_grad, set_grad_enabled,
    is_grad_enabled, inference_mode, custom_vjp, custom_gradient,
)
from . import autograd  # noqa: E402
# PyTorch's top-level names (see README "Coming from PyTorch").
from .autograd.device import device  # noqa: E402
from .dtypes import *  # noqa: E402,F401,F403
from .creation import *  # noqa: E402,F401,F403
from .tensor_functions import *  # noqa: E402,F401,F403
from .serialization import save, load  # noqa: E402
from .accelerators import cuda, accelerator, backends  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # Heavier subpackages load on first use, keeping `import disttrain` fast.
    import importlib
    if name in ("nn", "optim", "data", "distributed", "training", "kernels", "ops", "utils", "multiprocessing",
                "vision"):
        return importlib.import_module(f".{name}", __name__)
    if name == "DistributedDataParallel":     # the one taking PyTorch's device_ids=/output_device= too
        from .nn.parallel import DistributedDataParallel
        return DistributedDataParallel
    if name == "manual_seed":
        from .random import manual_seed
        return manual_seed
    raise AttributeError(f"module 'disttrain' has no attribute {name!r}")
