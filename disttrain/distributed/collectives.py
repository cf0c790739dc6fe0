"""Collectives on numpy arrays and Tensors: all_reduce, broadcast, all_gather, reduce_scatter, barrier.

Each blocking call has a non-blocking twin (``async_op=True`` or the ``i``
prefix) returning a `Work` whose ``wait()`` gives the result. In-place ops
(all_reduce, broadcast) work on the array itself (a Tensor's ``.data``),
which must be C-contiguous and writeable; all_gather and reduce_scatter
return new arrays. Every wait is watched by the stall detector.
"""
import numpy as np

from ..autograd.tensor import Tensor
from .collective_check import descriptor
from .communicator import check_op
from .process_group import default_group


class ReduceOp:
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"


def _array(x, what, group, inplace):
    arr = x.data if isinstance(x, Tensor) else x
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"dist.{what}: rank {group.rank}: expected a numpy array or Tensor, "
                        f"got {type(x).__name__}")
    if inplace and (not arr.flags.c_contiguous or not arr.flags.writeable):
        raise ValueError(f"dist.{what}: rank {group.rank}: the array of shape {arr.shape} must be "
                         f"C-contiguous and writeable to be reduced in place (use np.ascontiguousarray)")
    return arr


def _wrap(x, arr):
    return Tensor(arr) if isinstance(x, Tensor) else arr


def _finish(work, async_op):
    if not async_op:
        return work.wait()
    work.engine.progress()      # the caller goes on computing: drive it in the background
    return work


def _check_avg(arr, what, group):
    if not np.issubdtype(arr.dtype, np.inexact):
        raise TypeError(f"dist.{what}: rank {group.rank}: op 'avg' needs a floating array, got {arr.dtype}")


def all_reduce(x, op="sum", async_op=False, group=None):
    """Reduce ``x`` over all ranks in place (sum, avg, max, min); returns ``x``."""
    group = group or default_group()
    op = check_op(op)
    arr = _array(x, "all_reduce", group, inplace=True)
    comm, n = group.comm, group.size
    if op == "avg":
        _check_avg(arr, "all_reduce", group)

    def finish():
        if op == "avg" and n > 1:
            np.multiply(arr, arr.dtype.type(1.0 / n), out=arr)
        return x

    work = group.engine.submit(f"all_reduce[{op}] {arr.shape}",
                               lambda: comm.iallreduce(arr, "sum" if op == "avg" else op), finish,
                               desc=descriptor("all_reduce", op, arr))
    return _finish(work, async_op)


def broadcast(x, src=0, async_op=False, group=None):
    """Overwrite ``x`` on every rank with rank ``src``'s values; returns ``x``."""
    group = group or default_group()
    if not 0 <= src < group.size:
        raise ValueError(f"dist.broadcast: src {src} is not a rank of a group of size {group.size}")
    arr = _array(x, "broadcast", group, inplace=True)
    comm = group.comm
    work = group.engine.submit(f"broadcast {arr.shape} from {src}",
                               lambda: comm.ibcast(arr, src), lambda: x,
                               desc=descriptor("broadcast", None, arr, src))
    return _finish(work, async_op)


def all_gather(x, async_op=False, group=None):
    """Every rank's ``x`` stacked along a new first axis: shape ``(world_size, *x.shape)``."""
    group = group or default_group()
    arr = np.ascontiguousarray(_array(x, "all_gather", group, inplace=False))
    out = np.empty((group.size,) + arr.shape, arr.dtype)
    comm = group.comm
    work = group.engine.submit(f"all_gather {arr.shape}",
                               lambda: comm.iallgather(arr, out), lambda: _wrap(x, out),
                               desc=descriptor("all_gather", None, arr))
    return _finish(work, async_op)


def reduce_scatter(x, op="sum", async_op=False, group=None):
    """Reduce ``x`` over ranks and give rank r the r-th of ``world_size`` equal slices along axis 0."""
    group = group or default_group()
    op = check_op(op)
    arr = np.ascontiguousarray(_array(x, "reduce_scatter", group, inplace=False))
    n = group.size
    if arr.ndim == 0 or arr.shape[0] % n:
        raise ValueError(f"dist.reduce_scatter: rank {group.rank}: the first axis of shape {arr.shape} "
                         f"must be divisible by the world size {n}")
    if op == "avg":
        _check_avg(arr, "reduce_scatter", group)
    out = np.empty((arr.shape[0] // n,) + arr.shape[1:], arr.dtype)
    comm = group.comm

    def finish():
        if op == "avg" and n > 1:
            np.multiply(out, out.dtype.type(1.0 / n), out=out)
        return _wrap(x, out)

    work = group.engine.submit(f"reduce_scatter[{op}] {arr.shape}",
                               lambda: comm.ireduce_scatter(arr, out, "sum" if op == "avg" else op),
                               finish, desc=descriptor("reduce_scatter", op, arr))
    return _finish(work, async_op)


def barrier(async_op=False, group=None):
    group = group or default_group()
    comm = group.comm
    return _finish(group.engine.submit("barrier", comm.ibarrier, desc=descriptor("barrier")), async_op)


def iall_reduce(x, op="sum", group=None):
    return all_reduce(x, op, async_op=True, group=group)


def ibroadcast(x, src=0, group=None):
    return broadcast(x, src, async_op=True, group=group)


def iall_gather(x, group=None):
    return all_gather(x, async_op=True, group=group)


def ireduce_scatter(x, op="sum", group=None):
    return reduce_scatter(x, op, async_op=True, group=group)


def ibarrier(group=None):
    return barrier(async_op=True, group=group)
