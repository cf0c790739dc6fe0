"""Models a config can name: ``[model] name = "mlp"`` plus that model's keys.

Register your own with `register_model` (from a module listed in ``[job] imports``)::

    @register_model("tiny", params=[Key("width", "int", 32, "hidden width", low=1)])
    def tiny(cfg, input_shape, num_classes, dtype):
        return dt.nn.Sequential(dt.nn.Flatten(), dt.nn.Linear(int(np.prod(input_shape)), cfg.width, dtype=dtype), ...)

A builder gets the validated [model] section, the shape of one input sample, the number
of classes and the parameter dtype, and returns a `disttrain.nn.Module` mapping a batch to logits.
"""
import math

import numpy as np

from .config import Key
from .registry import Registry

MODELS = Registry("model")
_ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid")


class ModelShapeError(ValueError):
    """The data does not fit the model (e.g. images too small for LeNet's convolutions)."""


def register_model(name, params=(), check=None):
    """Decorator registering ``builder(cfg, input_shape, num_classes, dtype)`` under ``name``.

    ``params``: the `Key`s [model] accepts for it (besides ``name``); ``check(section_dict)``
    may return ``(key, problem)`` for a combination the keys' own checks cannot see.
    """
    return MODELS.decorator(name, params, check)


def registered_models():
    return MODELS.names()


def model_params(name):
    entry = MODELS.get(name)
    return None if entry is None else entry.params


def check_model_config(values):
    entry = MODELS[values["name"]]
    return entry.check(values) if entry.check else None


def build_model(cfg, input_shape, num_classes, dtype):
    builder = MODELS[cfg.name].target
    try:
        return builder(cfg, tuple(input_shape), int(num_classes), dtype)
    except MemoryError:
        raise ModelShapeError(f"model {cfg.name!r} for inputs of shape {tuple(input_shape)} and {num_classes} classes "
                              "does not fit in memory; make it smaller") from None


def check_size(name, widths, dtype):
    """Refuse (ModelShapeError, with the estimate) a model whose layers [(fan_in, fan_out), ...] cannot be
    held in memory with its gradients and optimizer state (about 4 copies of the parameters)."""
    from .limits import check_fits
    n = sum(int(i) * int(o) + int(o) for i, o in widths)
    check_fits(4 * n * np.dtype(dtype).itemsize, f"model {name!r} ({n:,} parameters)", ModelShapeError,
               "make it smaller ([model] hidden, [data] num_classes).")


def _activation(name):
    from .. import nn
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}[name]()


@register_model("mlp", params=[
    Key("hidden", "list[int]", [128], "Hidden layer widths (empty: a linear model).", low=1),
    Key("activation", "str", "relu", "Activation after each hidden layer.", choices=_ACTIVATIONS),
    Key("dropout", "float", 0.0, "Dropout probability after each hidden activation.", low=0.0, high=1.0,
        high_open=True),
])
def mlp(cfg, input_shape, num_classes, dtype):
    """Flatten, then Linear-activation(-Dropout) per hidden width, then Linear to the classes."""
    from .. import nn
    layers = [nn.Flatten()]
    width = math.prod(input_shape)
    sizes = [width] + list(cfg.hidden) + [num_classes]
    check_size("mlp", zip(sizes[:-1], sizes[1:]), dtype)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h, dtype=dtype), _activation(cfg.activation)]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    layers.append(nn.Linear(width, num_classes, dtype=dtype))
    return nn.Sequential(*layers)


def _lenet_check(values):
    if len(values["channels"]) != 2:
        return "channels", f"must list the 2 convolutions' output channels, got {values['channels']}."
    if values["kernel_size"] % 2 == 0:
        return "kernel_size", f"must be odd (the first convolution pads to keep the size), got {values['kernel_size']}."
    return None


@register_model("lenet", params=[
    Key("channels", "list[int]", [6, 16], "Output channels of the two convolutions.", low=1),
    Key("kernel_size", "int", 5, "Convolution kernel size (odd).", low=1),
    Key("hidden", "list[int]", [120, 84], "Widths of the fully connected layers.", low=1),
    Key("activation", "str", "relu", "Activation after each convolution and hidden layer.", choices=_ACTIVATIONS),
    Key("batch_norm", "bool", False, "BatchNorm2d after each convolution (before its activation)."),
], check=_lenet_check)
def lenet(cfg, input_shape, num_classes, dtype):
    """LeNet-5 style: conv(k, pad k//2)-act-maxpool2, conv(k)-act-maxpool2, then fully connected layers."""
    from .. import nn
    if len(input_shape) != 3:
        raise ModelShapeError(f"model 'lenet' needs image samples (channels, height, width); the data has samples "
                              f"of shape {input_shape}")
    c, h, w = input_shape
    k = cfg.kernel_size
    c1, c2 = cfg.channels
    h2, w2 = h // 2 - k + 1, w // 2 - k + 1
    if h2 < 2 or w2 < 2:
        raise ModelShapeError(f"model 'lenet' with kernel_size {k} needs images of at least {2 * (k + 1)}x{2 * (k + 1)}"
                              f" pixels; the data has {h}x{w}")
    def norm(channels):
        return [nn.BatchNorm2d(channels, dtype=dtype)] if cfg.batch_norm else []
    layers = [nn.Conv2d(c, c1, k, padding=k // 2, dtype=dtype), *norm(c1), _activation(cfg.activation),
              nn.MaxPool2d(2), nn.Conv2d(c1, c2, k, dtype=dtype), *norm(c2), _activation(cfg.activation),
              nn.MaxPool2d(2), nn.Flatten()]
    width = c2 * (h2 // 2) * (w2 // 2)
    sizes = [width] + list(cfg.hidden) + [num_classes]
    check_size("lenet", [(c * k * k, c1), (c1 * k * k, c2)] + list(zip(sizes[:-1], sizes[1:])), dtype)
    for n in cfg.hidden:
        layers += [nn.Linear(width, n, dtype=dtype), _activation(cfg.activation)]
        width = n
    layers.append(nn.Linear(width, num_classes, dtype=dtype))
    return nn.Sequential(*layers)


def _gpt_check(values):
    if values["n_embd"] % values["n_head"]:
        return "n_embd", f"must be a multiple of n_head ({values['n_head']}), got {values['n_embd']}."
    return None


@register_model("gpt", params=[
    Key("n_layer", "int", 4, "Transformer blocks.", low=1),
    Key("n_head", "int", 4, "Attention heads per block.", low=1),
    Key("n_embd", "int", 128, "Embedding width (a multiple of n_head).", low=1),
    Key("dropout", "float", 0.0, "Dropout on embeddings, attention weights and residual branches.", low=0.0,
        high=1.0, high_open=True),
    Key("tie_weights", "bool", True, "Use the token embedding as the output head (nanoGPT's weight tying)."),
    Key("bias", "bool", True, "Biases in every Linear and LayerNorm (false: nanoGPT's train.py default)."),
], check=_gpt_check)
def gpt(cfg, input_shape, num_classes, dtype):
    """nanoGPT's GPT over token blocks: the context length is the data's block length, the
    vocabulary the data's number of classes (disttrain/models/gpt.py)."""
    from ..models import GPT
    if len(input_shape) != 1:
        raise ModelShapeError(f"model 'gpt' needs samples that are token sequences (block_size,); the data has "
                              f"samples of shape {input_shape} (use [data] source = \"text\")")
    return GPT(num_classes, input_shape[0], cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout, cfg.tie_weights,
               dtype=dtype, bias=cfg.bias)
