"""Gradient buckets: flat, dtype-keyed buffers that parameters' gradients are views into.

Parameters are assigned to buckets in a given order (reverse declaration
order at first -- roughly the order backward produces gradients -- and the
observed ready order after the first iteration). A small first bucket gets
communication going early; the rest are filled up to ``cap_bytes``. A bucket
closes once it reaches its cap (a single large parameter gets one bucket).
"""
import numpy as np


class Bucket:
    """One flat buffer holding the gradients of ``indices`` (positions in DDP's parameter list)."""

    __slots__ = ("index", "dtype", "indices", "buffer", "views", "pending", "work")

    def __init__(self, index, dtype, indices, shapes):
        self.index = index
        self.dtype = np.dtype(dtype)
        self.indices = list(indices)
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self.buffer = np.zeros(sum(sizes), self.dtype)
        self.views = []
        off = 0
        for n, s in zip(sizes, shapes):
            self.views.append(self.buffer[off:off + n].reshape(s))
            off += n
        self.pending = len(self.indices)
        self.work = None

    @property
    def nbytes(self):
        return self.buffer.nbytes


def plan(order, shapes, dtypes, cap_bytes, first_cap_bytes):
    """Group parameter indices (taken in ``order``) into lists, one list per bucket.

    Each dtype fills its own buckets; the first bucket of each dtype is capped
    at ``first_cap_bytes``. Buckets are numbered by the position of their
    first parameter in ``order`` so launch order follows gradient order.
    """
    open_ = {}       # dtype -> (list of indices, bytes so far, cap)
    done = []        # (position of first param, indices)
    first_pos = {}
    started = set()
    for pos, i in enumerate(order):
        dt = np.dtype(dtypes[i])
        if dt not in open_:
            cap = first_cap_bytes if dt not in started else cap_bytes
            started.add(dt)
            open_[dt] = [[], 0, cap]
            first_pos[dt] = pos
        cur = open_[dt]
        cur[0].append(i)
        cur[1] += int(np.prod(shapes[i], dtype=np.int64)) * dt.itemsize
        if cur[1] >= cur[2]:
            done.append((first_pos[dt], cur[0]))
            del open_[dt]
    for dt, cur in open_.items():
        done.append((first_pos[dt], cur[0]))
    done.sort(key=lambda t: t[0])
    return [idx for _, idx in done]


def build(groups, shapes, dtypes):
    return [Bucket(k, dtypes[g[0]], g, [shapes[i] for i in g]) for k, g in enumerate(groups)]
