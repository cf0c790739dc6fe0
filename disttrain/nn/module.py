"""`Module`: the container for parameters, buffers and sub-modules.

Names, ordering and state-dict layout follow torch.nn.Module, so a state dict
exchanged with PyTorch (as numpy arrays) has the same keys and shapes.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd.tensor import Tensor
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(RuntimeError):
    """load_state_dict found missing/unexpected keys or shape mismatches (all listed)."""


class Module:
    """Base class of every layer and model.

    Assigning a `Parameter`, a `Module` or (for a name registered with
    `register_buffer`) an array to an attribute registers it; registration
    order is the order of ``parameters()`` and ``state_dict()``.
    """

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()
        d["training"] = True

    # -- registration -------------------------------------------------------
    def _registries(self):
        try:
            return self.__dict__["_parameters"], self.__dict__["_buffers"], self.__dict__["_modules"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes") from None

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)) or name in self.__dict__.get("_parameters", ()) \
                or name in self.__dict__.get("_buffers", ()) or name in self.__dict__.get("_modules", ()):
            params, buffers, modules = self._registries()
            if isinstance(value, Parameter):
                self._forget(name)
                params[name] = value
            elif isinstance(value, Module):
                self._forget(name)
                modules[name] = value
            elif name in params:
                if value is not None:
                    raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} of "
                                    f"{type(self).__name__} (a Parameter or None is required)")
                params[name] = None
            elif name in buffers:
                buffers[name] = _as_buffer(name, value)
            else:  # a registered sub-module
                if value is not None:
                    raise TypeError(f"cannot assign {type(value).__name__} to child module {name!r} of "
                                    f"{type(self).__name__} (a Module or None is required)")
                modules[name] = None
            return
        object.__setattr__(self, name, value)

    def _forget(self, name):
        self.__dict__.pop(name, None)
        for registry in self._registries():
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = d.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in self._registries():
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def register_parameter(self, name, param):
        _check_name(self, name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter or None, got {type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A named array that is state but not learnable (saved in state_dict unless persistent=False)."""
        _check_name(self, name)
        self._forget(name)
        self._buffers[name] = _as_buffer(name, tensor)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        _check_name(self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    # -- traversal ----------------------------------------------------------
    def named_modules(self, prefix="", memo=None):
        """(dotted name, module) for this module and every descendant, pre-order, each once."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def get_submodule(self, target):
        """The sub-module at dotted path ``target`` ("" is self)."""
        mod = self
        for part in target.split(".") if target else []:
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(self).__name__} has no sub-module {target!r} (no {part!r} in "
                                     f"{type(mod).__name__})")
            mod = child
        return mod

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in modules:
            for name, value in getattr(mod, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) in registration order; a shared Parameter appears once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # -- state dict ---------------------------------------------------------
    def state_dict(self, prefix=""):
        """OrderedDict dotted name -> numpy array copy: each module's parameters, then its
        persistent buffers, then its children (PyTorch's order and keys)."""
        out = OrderedDict()
        self._save_to(out, prefix)
        return out

    def _save_to(self, out, prefix):
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = np.array(p.data, copy=True)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = np.array(b.data, copy=True)
        for name, child in self._modules.items():
            if child is not None:
                child._save_to(out, f"{prefix}{name}.")

    def _state_targets(self):
        """dotted name -> the Tensor a state-dict entry is loaded into (same keys as state_dict())."""
        targets = OrderedDict()

        def walk(mod, prefix):
            for name, p in mod._parameters.items():
                if p is not None:
                    targets[prefix + name] = p
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    targets[prefix + name] = b
            for name, child in mod._modules.items():
                if child is not None:
                    walk(child, f"{prefix}{name}.")

        walk(self, "")
        return targets

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (numpy arrays or Tensors) into this module's parameters and buffers, in place.

        Everything is checked before anything is written: unexpected keys,
        missing keys (both only an error when ``strict``) and shape mismatches
        (always an error) are reported together, by name, in one StateDictError.
        Values are cast to each parameter's dtype. Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict expects a mapping of names to arrays, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched, bad_values, arrays = [], [], {}
        for key, target in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.data if isinstance(value, Tensor) else value
            try:
                value = np.asarray(value)
            except Exception as exc:  # noqa: BLE001 - reported with the key below
                bad_values.append(f"{key}: cannot convert {type(value).__name__} to an array ({exc})")
                continue
            if value.dtype.kind not in "biuf":
                bad_values.append(f"{key}: dtype {value.dtype} is not numeric")
            elif value.shape != target.data.shape:
                mismatched.append(f"{key}: checkpoint shape {value.shape}, model shape {target.data.shape}")
            else:
                arrays[key] = value
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if bad_values:
            problems.append("bad values: " + "; ".join(bad_values))
        if problems:
            raise StateDictError(f"error loading state dict into {type(self).__name__}:\n  " + "\n  ".join(problems))
        for key, value in arrays.items():
            # In place: optimizers and gradient buckets keep referring to the same arrays.
            targets[key].data[...] = value.astype(targets[key].data.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- modes, gradients, dtypes ---------------------------------------------
    def train(self, mode=True):
        """Set training mode here and (through each child's own train()) below."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear gradients; ``set_to_none=False`` zeroes them in place instead (keeps their arrays)."""
        for p in self.parameters():
            if set_to_none:
                p._grad = None
            elif p._grad is not None:
                p._grad[...] = 0

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively) and then on self, as torch does."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``: cast floating parameters and buffers to
        ``dtype`` (new arrays; gradients dropped). The device must be the CPU (others raise)."""
        from ..autograd.tensor import parse_to_args
        dtype, _ = parse_to_args(f"{type(self).__name__}.to", args, kwargs)
        if dtype is None:
            return self
        if dtype.kind != "f":
            raise TypeError(f"Module.to: only floating dtypes are supported, got {dtype}")
        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is not None and t.data.dtype.kind == "f" and t.data.dtype != dtype:
                    t.data = t.data.astype(dtype)
                    t._grad = None
        return self

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        from ..autograd.device import unavailable
        raise unavailable("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- calling ------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- printing -------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (f"\n  {extra}" if extra else "")
        return head + "\n" + "\n".join(lines) + "\n)"


def _check_name(module, name):
    if not isinstance(name, str) or not name or "." in name:
        raise KeyError(f"{type(module).__name__}: invalid name {name!r} (a non-empty string without '.')")
    module._registries()


def _as_buffer(name, value):
    if value is None or isinstance(value, Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return Tensor(np.asarray(value))
    raise TypeError(f"buffer {name!r}: expected an array, a Tensor or None, got {type(value).__name__}")
