"""Gradient buckets: flat, dtype-keyed buffers that parameters' gradients are views into.

Parameters are assigned to buckets in a given order (reverse declaration
order at first -- roughly the order backward produces gradients -- and the
observed ready order after the first iteration). A small first bucket gets
communication going early; the rest are filled up to ``cap_bytes``. A bucket
closes once it reaches its cap (a single large parameter gets one bucket).

A parameter of at least ``solo_bytes`` always gets a bucket of its own
("solo"), and such a bucket has no buffer of its own: each step it adopts
the parameter's gradient array itself (the array backward just made), so
the gradient is reduced where it lies instead of being copied into a flat
buffer first. Measured here for a 4 MB gradient: scaling it by 1/world_size
in place costs 0.24 ms, copying it scaled into a bucket 0.58 ms.
"""
import numpy as np


class Bucket:
    """One flat buffer holding the gradients of ``indices`` (positions in DDP's parameter list)."""

    __slots__ = ("index", "dtype", "indices", "buffer", "views", "pending", "work", "solo", "_shape", "_own")

    def __init__(self, index, dtype, indices, shapes, solo=False):
        self.index = index
        self.dtype = np.dtype(dtype)
        self.indices = list(indices)
        self.pending = len(self.indices)
        self.work = None
        self.solo = solo and len(self.indices) == 1
        self._own = None
        if self.solo:
            self._shape = tuple(shapes[0])
            self.buffer, self.views = None, [None]     # adopted each step (or use_own())
            return
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self.buffer = np.zeros(sum(sizes), self.dtype)
        self.views = []
        off = 0
        for n, s in zip(sizes, shapes):
            self.views.append(self.buffer[off:off + n].reshape(s))
            off += n

    def rebind(self, buffer):
        """Move a (non-solo) bucket into ``buffer`` (flat, its size and dtype), e.g. shared memory."""
        if self.solo or buffer.shape != self.buffer.shape or buffer.dtype != self.dtype:
            raise ValueError(f"bucket {self.index}: cannot rebind a {'solo ' if self.solo else ''}bucket of "
                             f"{self.buffer.size if self.buffer is not None else '?'} {self.dtype} values to "
                             f"{buffer.size} {buffer.dtype} values")
        buffer[...] = self.buffer
        off = 0
        views = []
        for v in self.views:
            views.append(buffer[off:off + v.size].reshape(v.shape))
            off += v.size
        self.buffer, self.views = buffer, views

    def can_adopt(self, g):
        """Whether a solo bucket can reduce ``g`` where it lies: a whole, writeable,
        C-contiguous array of the bucket's dtype and shape (what backward makes)."""
        return (self.solo and type(g) is np.ndarray and g.dtype == self.dtype and g.shape == self._shape
                and (g.base is None or g is self.views[0]) and g.flags.c_contiguous and g.flags.writeable)

    def adopt(self, g):
        self.views[0] = g
        self.buffer = g.reshape(-1)

    def use_own(self):
        """A solo bucket's own memory, for a gradient it cannot adopt (or none at all)."""
        if self._own is None:
            self._own = np.zeros(self._shape, self.dtype)
        self.adopt(self._own)
        return self._own

    @property
    def nbytes(self):
        if self.solo:
            return int(np.prod(self._shape, dtype=np.int64)) * self.dtype.itemsize
        return self.buffer.nbytes


def plan(order, shapes, dtypes, cap_bytes, first_cap_bytes, solo_bytes=None):
    """Group parameter indices (taken in ``order``) into lists, one list per bucket.

    Each dtype fills its own buckets; the first bucket of each dtype is capped
    at ``first_cap_bytes``. A parameter of at least ``solo_bytes`` gets a
    bucket of its own (the open bucket of small ones stays open past it).
    Buckets are numbered by the position of their LAST parameter in
    ``order`` -- the order in which they become complete -- so launch order
    follows gradient order.
    """
    open_ = {}       # dtype -> [indices, bytes so far, cap, position of the last one]
    done = []        # (position of its last parameter, indices)
    started = set()
    for pos, i in enumerate(order):
        dt = np.dtype(dtypes[i])
        nbytes = int(np.prod(shapes[i], dtype=np.int64)) * dt.itemsize
        if solo_bytes is not None and nbytes >= solo_bytes:
            done.append((pos, [i]))
            continue
        if dt not in open_:
            cap = first_cap_bytes if dt not in started else cap_bytes
            started.add(dt)
            open_[dt] = [[], 0, cap, pos]
        cur = open_[dt]
        cur[0].append(i)
        cur[1] += nbytes
        cur[3] = pos
        if cur[1] >= cur[2]:
            done.append((pos, cur[0]))
            del open_[dt]
    for dt, cur in open_.items():
        done.append((cur[3], cur[0]))
    done.sort(key=lambda t: t[0])
    return [idx for _, idx in done]


def build(groups, shapes, dtypes, solo_bytes=None):
    def solo(g):
        return (solo_bytes is not None and len(g) == 1
                and int(np.prod(shapes[g[0]], dtype=np.int64)) * np.dtype(dtypes[g[0]]).itemsize >= solo_bytes)
    return [Bucket(k, dtypes[g[0]], g, [shapes[i] for i in g], solo(g)) for k, g in enumerate(groups)]
