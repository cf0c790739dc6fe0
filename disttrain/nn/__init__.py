"""Neural-network layers: `Module`, `Parameter` and PyTorch-compatible layers.

Parameter names, shapes and state-dict keys match torch.nn, so weights can be
exchanged with PyTorch as numpy arrays.
"""
from .parameter import Parameter
from .module import Module, StateDictError, IncompatibleKeys
from .linear import Linear, Identity, Flatten
from .conv import Conv2d, MaxPool2d, AvgPool2d
from .activation import ReLU, GELU, Tanh, Sigmoid, Softmax, LogSoftmax
from .dropout import Dropout
from .normalization import LayerNorm
from .batchnorm import BatchNorm1d, BatchNorm2d, SyncBatchNorm
from .sparse import Embedding
from .container import Sequential, ModuleList
from .loss import CrossEntropyLoss, MSELoss
from . import functional, init, utils

__all__ = [
    "Parameter", "Module", "StateDictError", "IncompatibleKeys", "Linear", "Identity", "Flatten",
    "Conv2d", "MaxPool2d", "AvgPool2d", "ReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "Dropout", "LayerNorm", "Embedding", "Sequential", "ModuleList", "CrossEntropyLoss", "MSELoss",
    "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm",
    "functional", "init", "utils",
]
