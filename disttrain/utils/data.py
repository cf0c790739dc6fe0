"""``torch.utils.data`` names, served by `disttrain.data` (``import disttrain.utils.data``)."""
from ..data import *  # noqa: F401,F403
from ..data import __all__ as _data_all


class Dataset:
    """Base class for map-style datasets: define ``__len__`` and ``__getitem__`` returning a tuple of arrays."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


def __getattr__(name):
    if name == "DistributedSampler":
        from ..data.sampler import DistributedSampler
        return DistributedSampler
    raise AttributeError(f"module 'disttrain.utils.data' has no attribute {name!r}")


__all__ = list(_data_all) + ["Dataset", "DistributedSampler"]
