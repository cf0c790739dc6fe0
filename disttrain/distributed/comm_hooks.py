"""Communication hooks: how one bucket's gradients are reduced across ranks.

A hook is ``hook(state, bucket) -> work`` where ``bucket`` is a `GradBucket`
and ``work.wait()`` returns a flat array of ``bucket.buffer()``'s size and
shape holding the reduced values in the bucket's dtype (the buffer itself
for in-place hooks, as all the built-ins are). Register one with
``ddp_model.register_comm_hook(state, hook)``, or by name: hooks are a
registry (`register_comm_hook(name, factory, params)`) that configs read
(``[distributed] comm_hook = "powersgd"`` with ``[distributed.comm_hook_args]``).

The averaging contract (the one place it is written down)
---------------------------------------------------------
DDP multiplies every gradient by 1/world_size BEFORE the hook sees the
bucket (in `DistributedDataParallel._copy_in`, as the gradient is copied
into its bucket), so the bucket holds this rank's share of the average and
**a hook only sums** over ranks: the sum of the shares is the average. Hooks
never divide. Consequences: a 16-bit sum cannot overflow where the average
does not; a hook that keeps state in gradient units (PowerSGD's error
memory) keeps it in these pre-scaled units, i.e. for a rank's share ``x``
and the reduced (averaged) result ``y`` the rank's residual is
``x - y / world_size``. Exception: a `ShardedOptimizer` reduces the buckets
itself and folds 1/world_size into its update; it cannot be combined with
a comm hook.

Built-ins (registry names): "allreduce" (`allreduce_hook`, the default),
"fp16"/"bf16" (`fp16_compress_hook`/`bf16_compress_hook`: cast the bucket
to 16 bits, sum in 16 bits over ranks with
``comm.iallreduce(wire, "sum", wire_dtype=...)`` -- see wire16.py -- and
cast back) and "powersgd" (`powersgd.powerSGD_hook`, rank-r compression).

A hook state with ``state_dict()``/``load_state_dict()`` (arrays by name,
this rank's) is checkpointed by config jobs, every rank's, under
``comm_hook/rank<r>/`` in the checkpoint.
"""
from dataclasses import dataclass

import numpy as np

# The 16-bit machinery lives behind the Communicator now; these names stay importable from here.
from .wire16 import to_bf16_bits, from_bf16_bits, bf16_sum_bits, fp16_sum_bits, native_fp16  # noqa: F401


class GradBucket:
    """What a comm hook sees: the flat buffer and which parameters it holds.

    ``gradients()``: one array per parameter, shaped like it, each a VIEW into
    ``buffer()`` (writing one writes the buffer); ``offsets()``: where each
    starts in the flat buffer; ``names``/``shapes()``: the parameters' names and shapes.
    """

    def __init__(self, index, buffer, parameters, names, group, label, is_last, views=None):
        self.index = index
        self._buffer = buffer
        self.parameters = parameters
        self.names = names
        self.group = group
        self.label = label
        self._is_last = is_last
        self._views = views

    def buffer(self):
        return self._buffer

    def gradients(self):
        if self._views is None:      # built without views: cut the flat buffer by the parameters' shapes
            flat, out, off = self._buffer.reshape(-1), [], 0
            for p in self.parameters:
                shape = tuple(np.shape(getattr(p, "data", p)))
                n = int(np.prod(shape, dtype=np.int64))
                out.append(flat[off:off + n].reshape(shape))
                off += n
            self._views = out
        return list(self._views)

    def offsets(self):
        out, off = [], 0
        for g in self.gradients():
            out.append(off)
            off += g.size
        return out

    def shapes(self):
        return [g.shape for g in self.gradients()]

    def is_last(self):
        return self._is_last

    @property
    def world_size(self):
        return self.group.size


def allreduce_hook(state, bucket):
    """Sum the bucket over all ranks in place (MPI Iallreduce)."""
    buf = bucket.buffer()
    comm = bucket.group.comm
    return bucket.group.engine.submit(bucket.label, lambda: comm.iallreduce(buf, "sum"), lambda: buf)


def iallreduce_16bit(comm, wire, fmt, native=None):
    """Start an in-place sum over ranks of ``wire``: uint16 bit patterns of ``fmt``
    ("fp16" or "bf16"). Kept for callers of the old API: ``comm.iallreduce(wire, "sum", wire_dtype=fmt)``."""
    if native is None or comm.size == 1:      # ``native`` picks MPI's route; one process has none
        return comm.iallreduce(wire, "sum", wire_dtype=fmt)
    return comm.iallreduce(wire, "sum", wire_dtype=fmt, native=native)


def _compressed(bucket, fmt, encode, decode):
    buf = bucket.buffer()
    group = bucket.group
    box = {}

    def start():
        # Encoding runs in the communication thread (when there is one), off backward's path.
        box["wire"] = wire = np.ascontiguousarray(encode(buf))
        return group.comm.iallreduce(wire, "sum", wire_dtype=fmt)

    def finish():
        buf[...] = decode(box.pop("wire"))
        return buf

    return group.engine.submit(f"{bucket.label} [{fmt}]", start, finish, start_in_thread=True)


def fp16_compress_hook(state, bucket):
    """Cast the bucket to float16, allreduce it summing in float16, cast back (in place).

    Values beyond float16's range (65504) become inf: float16 suits
    gradients of moderate size; bf16 keeps float32's exponent range.
    """
    return _compressed(bucket, "fp16", lambda b: b.astype(np.float16).view(np.uint16),
                       lambda w: w.view(np.float16))


def bf16_compress_hook(state, bucket):
    """Cast the bucket to bfloat16, allreduce it summing in bfloat16, cast back (in place).

    bfloat16 keeps float32's exponent range with an 8-bit significand
    (relative rounding error up to 2**-9 per add).
    """
    return _compressed(bucket, "bf16", to_bf16_bits, from_bf16_bits)


# -- the registry that configs read ------------------------------------------------------------
@dataclass(frozen=True)
class HookParam:
    """One parameter of a registered hook (a key of ``[distributed.comm_hook_args]``)."""
    name: str
    type: str            # "int", "float", "bool" or "str"
    default: object
    doc: str
    low: float = None    # inclusive
    high: float = None


@dataclass(frozen=True)
class HookEntry:
    factory: object      # factory(**args) -> (state, hook)
    params: tuple = ()
    doc: str = ""


COMM_HOOKS = {}


def register_comm_hook(name, factory, params=(), doc=""):
    """Register ``factory(**args) -> (state, hook)`` under ``name``; ``params`` (`HookParam`s) are
    the keyword arguments it takes, i.e. the keys of ``[distributed.comm_hook_args]``."""
    if not isinstance(name, str) or not name or name == "none":
        raise ValueError(f"register_comm_hook: name must be a non-empty string other than 'none', got {name!r}")
    if not callable(factory):
        raise TypeError(f"register_comm_hook: factory for {name!r} must be callable, got {type(factory).__name__}")
    COMM_HOOKS[name] = HookEntry(factory, tuple(params), doc)
    return factory


def registered_comm_hooks():
    return sorted(COMM_HOOKS)


def create_comm_hook(name, **args):
    """``(state, hook)`` of the hook registered as ``name``, built with ``args`` (defaults filled in)."""
    entry = COMM_HOOKS.get(name)
    if entry is None:
        raise ValueError(f"unknown comm hook {name!r}; registered: {', '.join(registered_comm_hooks())}")
    known = {p.name for p in entry.params}
    unknown = sorted(set(args) - known)
    if unknown:
        raise TypeError(f"comm hook {name!r} takes no argument(s) {', '.join(unknown)}; it takes: "
                        f"{', '.join(sorted(known)) or 'none'}")
    full = {p.name: p.default for p in entry.params}
    full.update(args)
    return entry.factory(**full)


register_comm_hook("allreduce", lambda: (None, allreduce_hook), doc="Plain sum over ranks (the default).")
register_comm_hook("fp16", lambda: (None, fp16_compress_hook), doc="float16 on the wire, summed in float16.")
register_comm_hook("bf16", lambda: (None, bf16_compress_hook), doc="bfloat16 on the wire, summed in bfloat16.")
