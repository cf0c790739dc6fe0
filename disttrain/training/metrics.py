"""`metrics.jsonl`: one JSON object per line, written by rank 0 only.

Train records: {"kind": "train", "step", "epoch", "loss", "accuracy", "lr", "samples_per_s",
"sync_s", "time"}; eval records: {"kind": "eval", "step", "epoch", "val_loss", "val_accuracy",
"time"}. step/epoch/loss/accuracy/lr are reproducible bit for bit; samples_per_s, sync_s (seconds
spent waiting for the gradient allreduce in the interval) and time (seconds since the start of
this process's run) are measurements. Files stay strict JSON: a non-finite number is written
as null (never a bare NaN/Infinity, which JSON parsers reject).
"""
import json
import math
import os

REPRODUCIBLE = ("kind", "step", "epoch", "loss", "accuracy", "perplexity", "mse", "lr", "val_loss", "val_accuracy",
                "val_perplexity", "val_mse")


class MetricsWriter:
    def __init__(self, path, enabled=True):
        self.path = path
        self.enabled = enabled
        self._f = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record):
        if self._f is None:
            return
        self._f.write(dumps(record) + "\n")
        self._f.flush()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None


def strict(obj):
    """`obj` with every non-finite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:     # numpy scalars
        return strict(obj.item())
    return obj


def dumps(obj, **kw):
    """Strict JSON text of `obj` (non-finite numbers become null)."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def write_json(path, obj):
    """Write `obj` as strict, indented JSON, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_metrics(path):
    """All complete records (a line cut off by a kill is skipped)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return out


def truncate_after(path, step):
    """Keep only records up to `step` (a resumed run rewrites what came after its checkpoint)."""
    if not os.path.exists(path):
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(dumps(r) + "\n")
    os.replace(tmp, path)
