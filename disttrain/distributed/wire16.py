"""16-bit wire formats for reductions: float16 and bfloat16 sums of uint16 bit patterns.

`MPICommunicator.iallreduce(wire, "sum", wire_dtype="fp16"|"bf16")` comes here: the
summing is done in 16 bits at every step of MPI's reduction, as PyTorch's hooks over
NCCL do, so traffic per rank is a float32 allreduce's halved, whatever the world size.

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

WIRE_DTYPES = ("fp16", "bf16")


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

            if fmt == "bf16":       # the Numba kernel: one pass, no temporaries (kernels/bits16.py)
                from ..kernels.bits16 import bf16_add_into

                def reduce(invec, inoutvec, datatype):
                    bf16_add_into(np.frombuffer(invec, np.uint16), np.frombuffer(inoutvec, np.uint16))
            else:
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
    """True when ``comm`` (an MPICommunicator) sums float16 natively (MPICH's MPIX_C_FLOAT16)."""
    MPI = getattr(comm, "MPI", None)
    dt = getattr(MPI, "FLOAT16_T", None)
    return dt is not None and dt != MPI.DATATYPE_NULL and dt.Get_size() == 2


def check_wire_dtype(wire_dtype, buf):
    if wire_dtype not in WIRE_DTYPES:
        raise ValueError(f"iallreduce: unknown wire_dtype {wire_dtype!r}; expected one of {', '.join(WIRE_DTYPES)}")
    if buf.dtype.itemsize != 2:
        raise ValueError(f"iallreduce: wire_dtype {wire_dtype!r} needs a buffer of 16-bit bit patterns (uint16"
                         f"{' or float16' if wire_dtype == 'fp16' else ''}), got {buf.dtype} {buf.shape}")


def iallreduce_16bit(MPI, comm, buf, wire_dtype, native):
    """Start an in-place sum over ``comm`` (an mpi4py communicator) of ``buf``'s 16-bit values."""
    bits = buf.view(np.uint16)
    if wire_dtype == "fp16" and native:
        return comm.Iallreduce(MPI.IN_PLACE, [bits, MPI.FLOAT16_T], MPI.SUM)
    return comm.Iallreduce(MPI.IN_PLACE, [bits, MPI.UINT16_T], _user_op(MPI, wire_dtype))
