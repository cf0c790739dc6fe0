"""``dt.utils.data``: PyTorch's module path to `disttrain.data`."""
from . import data

__all__ = ["data"]
