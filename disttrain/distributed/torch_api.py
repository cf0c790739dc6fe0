"""torch.distributed's names over disttrain's process group: ``init_process_group``,
``is_available``, ``broadcast_object_list``, ``all_gather_object``.

Every backend name ("nccl", "gloo", "mpi", ...) is served by MPI under an MPI
launch (``dtrun``/``mpiexec``) and by a one-process group otherwise. Objects
travel pickle-free: plain data (None, bools, numbers, strings, lists, tuples,
dicts, numpy arrays, Tensors), encoded as `dt.save` does; anything else is
refused on every rank with the same message, so no rank is left waiting.
"""
import os
import sys

import numpy as np

from ..serialization import to_bytes, from_bytes, SaveError
from .collectives import broadcast, all_gather
from .process_group import init, default_group, _launched_by_mpi

_noted = set()


def is_available():
    return True


def _launched_size():
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def _launched_rank():
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """PyTorch's ``init_process_group``. The job's processes come from the launcher (``dtrun -n N``),
    so ``world_size``/``rank``, when given, must match it; ``world_size=1`` makes a one-process group
    (what ``mp.spawn(fn, nprocs=1)`` asks for). ``init_method``/``store``/``MASTER_ADDR`` are not needed."""
    if backend not in (None, "mpi") and backend not in _noted:
        _noted.add(backend)
        print(f"disttrain: backend {backend!r} requested; disttrain communicates over MPI", file=sys.stderr)
    size, me = _launched_size(), _launched_rank()
    if world_size == 1 and rank in (-1, 0, None):
        return init("single")
    if world_size not in (-1, None) and int(world_size) != size:
        raise RuntimeError(f"init_process_group(world_size={world_size}): this job has {size} process(es); "
                           f"start it with `dtrun -n {world_size} your_script.py`")
    if rank not in (-1, None) and int(rank) != me:
        raise RuntimeError(f"init_process_group(rank={rank}) on the process the launcher numbered {me}: "
                           "ranks are assigned by dtrun/mpiexec, pass the launcher's rank (dist.get_rank())")
    return init("mpi" if _launched_by_mpi() else None)


def _checked_payload(obj, what, group):
    """(uint8 array, error or None): encoding failures become a length of -1 that every rank sees."""
    try:
        return np.frombuffer(to_bytes(obj, what), dtype=np.uint8), None
    except SaveError as exc:
        return np.zeros(0, np.uint8), f"rank {group.rank}: {exc}"


def broadcast_object_list(object_list, src=0, group=None, device=None):
    """Replace ``object_list``'s items on every rank by rank ``src``'s (plain data only, no pickle)."""
    group = group or default_group()
    if group.rank == src:
        payload, err = _checked_payload(list(object_list), "object_list", group)
    else:
        payload, err = np.zeros(0, np.uint8), None
    n = np.array([-1 if err else payload.size], np.int64)
    broadcast(n, src, group=group)
    if n[0] < 0:
        raise SaveError(f"broadcast_object_list: rank {src}'s objects cannot be sent without pickle"
                        + (f" ({err})" if err else f" (see rank {src}'s error)"))
    buf = np.empty(int(n[0]), np.uint8) if group.rank != src else np.ascontiguousarray(payload).copy()
    if buf.size:
        broadcast(buf, src, group=group)
    received = from_bytes(buf.tobytes())
    if len(received) != len(object_list):
        raise ValueError(f"broadcast_object_list: rank {src} sent {len(received)} objects, rank {group.rank}'s "
                         f"list has {len(object_list)} slots")
    object_list[:] = received


def all_gather_object(object_list, obj, group=None):
    """Fill ``object_list`` (length world_size) with every rank's ``obj`` (plain data only, no pickle)."""
    group = group or default_group()
    payload, err = _checked_payload(obj, "obj", group)
    sizes = all_gather(np.array([-1 if err else payload.size], np.int64), group=group).reshape(-1)
    bad = [r for r, s in enumerate(sizes) if s < 0]
    if bad:
        raise SaveError(f"all_gather_object: the object of rank(s) {bad} cannot be sent without pickle"
                        + (f" ({err})" if err else ""))
    if len(object_list) != group.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} slots for {group.size} ranks")
    width = int(sizes.max()) if sizes.size else 0
    padded = np.zeros(max(width, 1), np.uint8)
    padded[:payload.size] = payload
    everything = all_gather(padded, group=group)
    for r in range(group.size):
        object_list[r] = from_bytes(everything[r, :int(sizes[r])].tobytes())
