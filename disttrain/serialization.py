"""`dt.save(obj, path)` / `dt.load(path)`: nested state without pickle.

``obj`` may nest dicts (any str/int/float/bool keys, order kept), lists, tuples,
None, bools, ints, floats, strings, numpy arrays and scalars and Tensors -- what
model and optimizer state dicts, schedulers' state and training metadata hold.
The file is one ``.npz``: the arrays as ``a0``, ``a1``, ... and a JSON skeleton of
everything else, written beside the target and renamed over it (a crash never
leaves a half-written file). Loading uses ``allow_pickle=False``; anything else
(a Module, a function, an arbitrary object) is refused by name when saving.
"""
import io
import json
import os
import zipfile

import numpy as np

from .autograd.tensor import Tensor
from ._files import savez_atomic

FORMAT = "disttrain-save-1"
_SKELETON = "__skeleton__"


class SaveError(TypeError):
    """An object that cannot be stored without pickle (named with its place in the structure)."""


def _contents(obj, what):
    arrays = []
    skeleton = {"format": FORMAT, "root": _encode(obj, what, arrays)}
    contents = {f"a{i}": a for i, a in enumerate(arrays)}
    contents[_SKELETON] = np.frombuffer(json.dumps(skeleton).encode(), dtype=np.uint8)
    return contents


def to_bytes(obj, what="obj"):
    """``obj`` encoded as `save` would write it (for sending between ranks without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **_contents(obj, what))
    return buf.getvalue()


def from_bytes(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        contents = {k: z[k] for k in z.files}
    return _restore(contents)


def save(obj, f):
    """Write ``obj`` (nested plain data, arrays and Tensors) to the path ``f`` (exactly that name)."""
    contents = _contents(obj, "obj")
    path = os.fspath(f)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"dt.save: cannot write {path}: directory {directory} does not exist")
    savez_atomic(path, contents)


def load(f, map_location=None, weights_only=True, **kwargs):
    """What `save` wrote. Arrays saved from Tensors come back as Tensors, numpy arrays as numpy arrays.

    ``map_location`` is accepted for PyTorch compatibility: everything loads onto the CPU.
    """
    path = os.fspath(f)
    try:
        with np.load(path, allow_pickle=False) as z:
            contents = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"dt.load: {path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise ValueError(f"dt.load: {path} is not a file written by dt.save ({type(exc).__name__}: {exc})") from None
    try:
        return _restore(contents)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"dt.load: {path} is not a file written by dt.save ({exc})") from None


def _restore(contents):
    skeleton = json.loads(contents.pop(_SKELETON).tobytes().decode())
    if not isinstance(skeleton, dict) or skeleton.get("format") != FORMAT:
        raise ValueError(f"format {skeleton.get('format') if isinstance(skeleton, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    return _decode(skeleton["root"], contents)


def _encode(obj, where, arrays):
    if isinstance(obj, Tensor):
        arrays.append(np.asarray(obj.data))
        return {"t": "tensor", "i": len(arrays) - 1, "grad": bool(obj.requires_grad)}
    if isinstance(obj, np.ndarray):
        arrays.append(obj)
        return {"t": "array", "i": len(arrays) - 1}
    if isinstance(obj, np.generic):
        arrays.append(np.asarray(obj))
        return {"t": "scalar", "i": len(arrays) - 1}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"t": "float", "v": repr(obj)}
        return obj
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise SaveError(f"dt.save: {where} has a key of type {type(k).__name__} ({k!r}); "
                                "keys must be str, int, float, bool or None")
            items.append([k, _encode(v, f"{where}[{k!r}]", arrays)])
        return {"t": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        return {"t": type(obj).__name__, "items": [_encode(v, f"{where}[{i}]", arrays) for i, v in enumerate(obj)]}
    raise SaveError(f"dt.save: {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which cannot be "
                    "saved without pickle; save plain data (state_dict(), numbers, strings, lists, dicts, arrays)")


def _decode(node, arrays):
    if not isinstance(node, dict):
        if isinstance(node, list):
            raise ValueError("unexpected list in the skeleton")
        return node
    kind = node["t"]
    if kind in ("tensor", "array", "scalar"):
        a = arrays[f"a{int(node['i'])}"]
        if kind == "scalar":
            return a[()]
        return Tensor(a, requires_grad=bool(node.get("grad"))) if kind == "tensor" else a
    if kind == "float":
        return float(node["v"])
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in node["items"]}
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays) for v in node["items"]]
        return items if kind == "list" else tuple(items)
    raise ValueError(f"unknown entry kind {kind!r}")
