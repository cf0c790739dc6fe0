"""Checkpoints: one `.npz` per save (no pickles), written atomically, newest K kept.

Layout of `<run_dir>/checkpoints/step-00000120.npz`:
  param/<name>, buffer/<name>   the model's state dict (dotted names as in PyTorch)
  optim/<path>                  every array of the optimizer's state dict
  meta                          a JSON string: format, model signature, step/epoch/position,
                                scheduler state, the optimizer state's non-array skeleton, ...
Saving writes `.step-...tmp` beside the target, fsyncs it and renames it over, so a kill
during a save leaves every earlier checkpoint intact.
"""
import json
import os
import re
import zipfile

import numpy as np

FORMAT = "disttrain-checkpoint-1"
_NAME = re.compile(r"^step-(\d{8,})\.npz$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, truncated, another model, another world size)."""


def path_for(directory, step):
    return os.path.join(directory, f"step-{step:08d}.npz")


def list_checkpoints(directory):
    """[(step, path)] sorted by step."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(directory, n)) for n in names if (m := _NAME.match(n))]
    return sorted(found)


def latest(directory):
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


# -- nested state <-> (arrays, JSON skeleton) -------------------------------------------------
def _flatten(obj, prefix, arrays):
    """Replace arrays (and numpy scalars, to keep their dtype) by {"__array__": key}."""
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"{prefix}"
        arrays[key] = np.asarray(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if hasattr(obj, "data") and isinstance(getattr(obj, "data"), np.ndarray):   # a Tensor
        return _flatten(obj.data, prefix, arrays)
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}/k{i}", arrays), _flatten(v, f"{prefix}/{_safe(k)}", arrays)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix}")


def _safe(k):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(k))


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            a = arrays[obj["__array__"]]
            return a[()] if obj.get("scalar") else a
        if "__dict__" in obj:
            return {_unflatten(k, arrays): _unflatten(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, arrays) for v in obj["__tuple__"])
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _np(value):
    return value if isinstance(value, np.ndarray) else np.asarray(value.data)   # a Tensor's array


def model_signature(module):
    return {name: [list(_np(v).shape), _np(v).dtype.str] for name, v in module.state_dict().items()}


# -- save / load ------------------------------------------------------------------------------
def save(directory, step, module, optimizer, meta, keep_last=None):
    """Write the checkpoint for `step` atomically; drop all but the newest `keep_last`."""
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for name, value in module.state_dict().items():
        arrays[f"model/{name}"] = _np(value)
    skeleton = _flatten(optimizer.state_dict(), "optim", arrays)
    meta = dict(meta, format=FORMAT, step=int(step), optimizer=skeleton, model_signature=model_signature(module))
    arrays["meta"] = np.array(json.dumps(meta))
    target = path_for(directory, step)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:   # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    if keep_last:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
    return target


def read(path):
    """(model arrays, optimizer state dict, meta) from a checkpoint, or CheckpointError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, zipfile.LargeZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
                              "delete it to resume from the one before") from None
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
        if not isinstance(meta, dict):
            raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        optim_state = _unflatten(meta.pop("optimizer"), arrays)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a disttrain checkpoint ({exc})") from None
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    return model, optim_state, meta


def check_compatible(path, meta, module, world_size):
    """CheckpointError naming the first difference between the checkpoint and this job."""
    saved = meta.get("model_signature", {})
    here = model_signature(module)
    missing = [n for n in here if n not in saved]
    unexpected = [n for n in saved if n not in here]
    shapes = [f"{n}: checkpoint {saved[n][0]} {saved[n][1]}, model {here[n][0]} {here[n][1]}"
              for n in here if n in saved and saved[n] != here[n]]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        if shapes:
            parts.append("different shapes: " + "; ".join(shapes[:3]))
        raise CheckpointError(f"checkpoint {path} was written for a different model "
                              f"({meta.get('model_name', '?')}): " + ", ".join(parts))
    if meta.get("world_size") != world_size:
        raise CheckpointError(f"checkpoint {path} was written by a {meta.get('world_size')}-rank job; this job has "
                              f"{world_size} ranks (resume with -n {meta.get('world_size')}: the data order and "
                              "sampler position depend on the number of ranks)")
