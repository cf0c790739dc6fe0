"""``dt.cuda``, ``dt.accelerator``, ``dt.backends``: the answers of a machine without accelerators.

Scripts that probe for a GPU (``torch.cuda.is_available()``,
``torch.accelerator.is_available()``, ``torch.backends.mps.is_available()``)
take their CPU branch unchanged; asking to *use* a device raises (see
`disttrain.autograd.device`).
"""
from types import SimpleNamespace

from .autograd.device import unavailable


def _false(*args, **kwargs):
    return False


def _zero(*args, **kwargs):
    return 0


def _none(*args, **kwargs):
    return None


def _refuse(what):
    def refuse(*args, **kwargs):
        raise unavailable(what)
    return refuse


cuda = SimpleNamespace(
    is_available=_false, device_count=_zero, is_bf16_supported=_false, manual_seed=_none,
    manual_seed_all=_none, synchronize=_none, empty_cache=_none, set_device=_refuse("cuda"),
    current_device=_refuse("cuda"),
)
accelerator = SimpleNamespace(is_available=_false, current_accelerator=_none, device_count=_zero)
backends = SimpleNamespace(
    mps=SimpleNamespace(is_available=_false, is_built=_false),
    cuda=SimpleNamespace(is_built=_false, matmul=SimpleNamespace(allow_tf32=False)),
    cudnn=SimpleNamespace(is_available=_false, allow_tf32=False, benchmark=False, deterministic=False),
)
