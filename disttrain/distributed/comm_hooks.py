"""Communication hooks: how one bucket's (pre-scaled) gradients are reduced across ranks.

A hook is ``hook(state, bucket) -> work`` where ``bucket`` is a `GradBucket`
and ``work.wait()`` returns a flat array of ``bucket.buffer()``'s size and
shape holding the reduced values in the bucket's dtype (the buffer itself
for in-place hooks, as all the built-ins are). DDP has already multiplied
every gradient by 1/world_size, so a hook only sums. Register one with
``ddp_model.register_comm_hook(state, hook)``.

Built-ins: `allreduce_hook` (default) and the compression hooks
`fp16_compress_hook` and `bf16_compress_hook`: cast the (pre-divided, so the
sum cannot overflow where the average does not) bucket to 16 bits, allreduce
the 16-bit buffer, cast back. The sum is done in 16 bits at every step of
MPI's reduction, as PyTorch's hooks over NCCL do, so traffic per rank is a
float32 allreduce's halved, whatever the world size.

* fp16: MPICH's native ``MPIX_C_FLOAT16`` (mpi4py ``MPI.FLOAT16_T``) with
  ``MPI.SUM``; where the MPI library lacks it, the same user-defined op
  route as bf16 (float16 bit patterns as uint16).
* bf16: MPI has no bfloat16 sum, so the bit patterns travel as uint16 under a
  user-defined commutative op (`bf16_sum_bits`): decode to float32, add,
  round back to bfloat16 nearest-even -- one correctly rounded 16-bit add.

User-defined ops are created once per process (MPI_Op_create, on first use)
and freed at interpreter exit while MPI is still up. MPI calls them from
inside ``Test``/``Wait``, i.e. in whichever thread drives the request (the
communication thread or the waiter); mpi4py re-takes the GIL for the call.
"""
import atexit
import threading

import numpy as np

from .communicator import DONE


class GradBucket:
    """What a comm hook sees: the flat buffer and which parameters it holds."""

    def __init__(self, index, buffer, parameters, names, group, label, is_last):
        self.index = index
        self._buffer = buffer
        self.parameters = parameters
        self.names = names
        self.group = group
        self.label = label
        self._is_last = is_last

    def buffer(self):
        return self._buffer

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


# -- 16-bit formats -------------------------------------------------------------
def to_bf16_bits(a):
    """float -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    # NaN stays NaN (rounding could carry it into infinity).
    rounded = np.where((u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000), u | np.uint32(0x00400000), rounded)
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16_bits(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def bf16_sum_bits(a, b):
    """Elementwise bfloat16 sum of two uint16 bit-pattern arrays, rounded to nearest even.

    A float32 add of two bfloat16 values followed by one rounding equals the
    correctly rounded bfloat16 sum (float32 holds more than 2x8+2 bits).
    """
    with np.errstate(over="ignore"):      # overflow gives inf, as MPI's float sums do
        return to_bf16_bits(from_bf16_bits(a) + from_bf16_bits(b))


def fp16_sum_bits(a, b):
    """Elementwise float16 sum of two uint16 arrays holding float16 bit patterns."""
    with np.errstate(over="ignore"):
        return (a.view(np.float16) + b.view(np.float16)).view(np.uint16)


_SUM_BITS = {"fp16": fp16_sum_bits, "bf16": bf16_sum_bits}
_user_ops = {}                  # fmt -> MPI.Op, created once per process
_user_ops_lock = threading.Lock()


def _user_op(MPI, fmt):
    with _user_ops_lock:
        op = _user_ops.get(fmt)
        if op is None:
            add = _SUM_BITS[fmt]

            def reduce(invec, inoutvec, datatype):
                # MPI's contract: inoutvec[i] = invec[i] (op) inoutvec[i], both uint16 here.
                b = np.frombuffer(inoutvec, np.uint16)
                b[...] = add(np.frombuffer(invec, np.uint16), b)

            op = _user_ops[fmt] = MPI.Op.Create(reduce, commute=True)
        return op


@atexit.register
def _free_user_ops():
    # Registered at import, before dist.init() registers the engine's close:
    # atexit runs this after the communication thread has stopped, and before
    # mpi4py finalizes MPI.
    import sys
    MPI = sys.modules.get("mpi4py.MPI")
    with _user_ops_lock:
        ops = list(_user_ops.values())
        _user_ops.clear()
    if MPI is None or MPI.Is_finalized():
        return
    for op in ops:
        op.Free()


def native_fp16(comm):
    """True when ``comm`` sums float16 natively (MPICH's MPIX_C_FLOAT16)."""
    MPI = getattr(comm, "MPI", None)
    dt = getattr(MPI, "FLOAT16_T", None)
    return dt is not None and dt != MPI.DATATYPE_NULL and dt.Get_size() == 2


def iallreduce_16bit(comm, wire, fmt, native=None):
    """Start an in-place sum over ranks of ``wire``: uint16 bit patterns of ``fmt``
    ("fp16" or "bf16"; fp16 may also be a float16 array). Returns a request.

    ``native`` (fp16 only): use MPI's float16 type (default: when available)
    rather than the user-defined op.
    """
    if fmt not in _SUM_BITS:
        raise ValueError(f"iallreduce_16bit: unknown format {fmt!r}; expected 'fp16' or 'bf16'")
    if comm.size == 1 or wire.size == 0:
        return DONE
    MPI = comm.MPI
    bits = wire.view(np.uint16)
    if fmt == "fp16" and (native_fp16(comm) if native is None else native):
        return comm.comm.Iallreduce(MPI.IN_PLACE, [bits, MPI.FLOAT16_T], MPI.SUM)
    return comm.comm.Iallreduce(MPI.IN_PLACE, [bits, MPI.UINT16_T], _user_op(MPI, fmt))


def _compressed(bucket, fmt, encode, decode):
    buf = bucket.buffer()
    group = bucket.group
    box = {}

    def start():
        # Encoding runs in the communication thread (when there is one), off backward's path.
        box["wire"] = wire = np.ascontiguousarray(encode(buf))
        return iallreduce_16bit(group.comm, wire, fmt)

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
