"""What a collective is, as a few integers, and the check that every rank calls the same one.

MPI pairs the k-th collective of one rank with the k-th of every other, so a
rank that skips one collective, or passes a differently shaped array, gets
its data summed into the wrong operation: silently wrong sums, garbage, or a
hang later. With the check on, every collective is preceded by one small
allgather of a fixed-size int64 descriptor (sequence number, op, reduction,
dtype, element count, root, shape); if the descriptors differ, EVERY rank
raises `CollectiveMismatchError` naming the divergent rank(s) and both
operations -- before the mismatched collective starts, so nothing is summed.

The same descriptor is what a waiting rank tells the stall detector about
the collective it is in (see stall.py).

Switches: ``dist.init(check_collectives=...)``, env ``DISTTRAIN_CHECK_COLLECTIVES``
(``1``/``on``: every collective; ``0``/``off``: none; ``auto``; or a count N:
the first N), config ``distributed.check_collectives``. The default, ``auto``,
checks the first `AUTO_FIRST` collectives of a job, where structural bugs
(a rank taking another branch, another model or batch shape) show up, at a
cost paid only during start-up (see README "Collective checks" for the numbers).
"""
import os

import numpy as np

from .blame import blame

AUTO_FIRST = 64
OPS = ("other", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier", "check")
REDUCTIONS = ("", "sum", "avg", "max", "min")
DTYPES = ("", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "bool", "complex64", "complex128", "bfloat16")
MAX_DIMS = 5
LENGTH = 7 + MAX_DIMS      # seq, op, reduction, dtype, count, root, ndim, dims...


class CollectiveMismatchError(RuntimeError):
    """Ranks called different collectives at the same point of the program."""


def descriptor(op, reduction=None, arr=None, root=-1):
    """What a collective is: (op, reduction, dtype name, shape, root)."""
    if arr is None:
        return (op, reduction or "", "", None, root)
    return (op, reduction or "", str(arr.dtype), tuple(arr.shape), root)


def _index(table, name):
    try:
        return table.index(name)
    except ValueError:
        return -1


def encode(seq, desc):
    """``LENGTH`` int64s for (seq, desc); desc None is an undescribed ('other') operation."""
    op, red, dtype, shape, root = desc if desc is not None else ("other", "", "", None, -1)
    vec = [seq, _index(OPS, op), _index(REDUCTIONS, red), _index(DTYPES, dtype),
           -1 if shape is None else int(np.prod(shape, dtype=np.int64)), root,
           -1 if shape is None else len(shape)]
    dims = list(shape or ())[:MAX_DIMS]
    return vec + dims + [-1] * (MAX_DIMS - len(dims))


def describe(vec):
    """'#5 all_reduce[sum] float64 shape (4,)' from an encoded descriptor."""
    seq, op, red, dtype, count, root, ndim = (int(v) for v in vec[:7])
    name = OPS[op] if 0 <= op < len(OPS) else f"op {op}"
    if 0 < red < len(REDUCTIONS):
        name += f"[{REDUCTIONS[red]}]"
    text = f"#{seq} {name}"
    if name == "broadcast" and root >= 0:
        text += f" from {root}"
    if ndim >= 0:
        dims = [int(d) for d in vec[7:7 + min(ndim, MAX_DIMS)]] + (["..."] if ndim > MAX_DIMS else [])
        shape = "(" + ", ".join(map(str, dims)) + ("," if ndim == 1 else "") + ")"
        text += f" {DTYPES[dtype] if 0 < dtype < len(DTYPES) else 'dtype ?'} shape {shape} ({count} elements)"
    return text


def mode_from(value):
    """None (off), "all" or a count of first collectives, from init()'s argument or the environment."""
    if value is None:
        value = os.environ.get("DISTTRAIN_CHECK_COLLECTIVES", "auto")
    if value is True:
        return "all"
    if value is False:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    text = str(value).strip().lower()
    if text in ("1", "on", "true", "yes", "all", "always"):
        return "all"
    if text in ("0", "off", "false", "no", "never", "none"):
        return None
    if text == "auto":
        return AUTO_FIRST
    if text.isdigit():
        return int(text) or None
    raise ValueError(f"check_collectives / DISTTRAIN_CHECK_COLLECTIVES={value!r}: expected on, off, auto "
                     "or a number of first collectives to check")


class CollectiveChecker:
    """Runs the descriptor allgather before the collectives it is asked to check."""

    def __init__(self, comm, mode):
        self.comm = comm
        self.mode = mode          # "all" or the number of first collectives to check
        self.checked = 0

    def wants(self, n_submitted):
        return self.mode == "all" or n_submitted < self.mode

    def check(self, engine, seq, desc, label):
        comm = self.comm
        mine = np.asarray(encode(seq, desc), np.int64)
        table = np.empty((comm.size, LENGTH), np.int64)
        engine.submit_unchecked(f"check of #{seq} {label}",
                                lambda: comm.iallgather(mine, table),
                                desc=descriptor("check", arr=mine)).wait()
        self.checked += 1
        verify(table, comm.rank, getattr(comm, "hosts", None))


def verify(table, rank, hosts=None):
    """Raise `CollectiveMismatchError` (and blame the divergent ranks) unless all rows agree."""
    rows = [tuple(int(v) for v in row) for row in table]
    if all(r == rows[0] for r in rows):
        return
    groups = {}
    for r, row in enumerate(rows):
        groups.setdefault(row, []).append(r)
    # The reference is the largest group of agreeing ranks (on a tie, the one with the lowest rank).
    ref_row, ref_ranks = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[1][0]))
    odd = sorted(r for r in range(len(rows)) if r not in ref_ranks)
    where = (lambda r: f"rank {r} (host {hosts[r]})") if hosts and len(set(hosts)) > 1 else (lambda r: f"rank {r}")
    ref_name = where(ref_ranks[0]) + (f" and {len(ref_ranks) - 1} other rank(s)" if len(ref_ranks) > 1 else "")
    parts = [f"{where(r)} called {describe(rows[r])}" for r in odd]
    message = (f"collective mismatch: {'; '.join(parts)}, where {ref_name} called {describe(ref_row)}; "
               "every rank must call the same collectives in the same order with the same dtype and "
               "element count (nothing was reduced)")
    if rank == ref_ranks[0]:      # one blame line per job, from a rank that agrees with the majority
        blame(odd, [hosts[r] for r in odd] if hosts else [], "collective-mismatch", rank, message)
    raise CollectiveMismatchError(f"rank {rank}: {message}")
