"""The communicator interface and its two implementations.

Everything above this module (collectives, DDP, the stall detector) talks to a
`Communicator`; only `MPICommunicator` imports mpi4py. Operations START a
transfer and return a request with ``Test()``/``Wait()`` (mpi4py's own
requests, or `DoneRequest` in a single process); who drives those requests --
the communication thread or the caller -- is `progress.py`'s business.

Arrays travel through mpi4py's buffer (upper-case) API: no pickling.
"""
import socket

import numpy as np

from . import wire16

OPS = ("sum", "avg", "max", "min")


class DoneRequest:
    """A request that completed when it was started (single process, empty buffers)."""

    __slots__ = ()

    def Test(self):
        return True

    def Wait(self):
        return None


DONE = DoneRequest()


def check_op(op):
    op = getattr(op, "value", op)
    if not isinstance(op, str) or op.lower() not in OPS:
        raise ValueError(f"unknown reduction op {op!r}; expected one of {', '.join(OPS)}")
    return op.lower()


class Communicator:
    """One group of ranks. ``rank``/``size`` in the group, ``local_*`` on this machine,
    ``hosts[r]``: the host name of rank r (for reports that name hosts)."""

    backend = "none"
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    thread_level_multiple = True

    # Collectives: each starts the operation and returns a request. Buffers
    # are C-contiguous numpy arrays that must stay alive until completion.
    def iallreduce(self, buf, op, wire_dtype=None):
        """In place; op in sum/max/min (avg is sum + scale). ``wire_dtype`` "fp16"/"bf16": ``buf``
        holds 16-bit bit patterns of that format (uint16; float16 also for fp16) and the sum is
        done in that format at every step of the reduction (see wire16.py)."""
        raise NotImplementedError

    def ibcast(self, buf, root):
        raise NotImplementedError

    def iallgather(self, sendbuf, recvbuf):  # recvbuf: (size, *sendbuf.shape)
        raise NotImplementedError

    def ireduce_scatter(self, sendbuf, recvbuf, op):  # sendbuf: (size * n,), recvbuf: (n,)
        raise NotImplementedError

    def ibarrier(self):
        raise NotImplementedError

    # Point-to-point side channel of the stall detector (never blocks).
    def side_send(self, dest, payload):
        raise NotImplementedError

    def side_poll(self):
        """Messages that arrived on the side channel: list of (source, int64 array)."""
        return []

    def abort(self, code=1):
        raise SystemExit(code)


class SingleProcessCommunicator(Communicator):
    """The group of one: every collective is the identity (a copy where shapes change)."""

    backend = "single"

    def __init__(self):
        self.hosts = [socket.gethostname()]

    def iallreduce(self, buf, op, wire_dtype=None):
        if wire_dtype is not None:
            wire16.check_wire_dtype(wire_dtype, buf)
        return DONE

    def ibcast(self, buf, root):
        if root != 0:
            raise ValueError(f"broadcast: root {root} is not a rank of a 1-process group")
        return DONE

    def iallgather(self, sendbuf, recvbuf):
        recvbuf[0] = sendbuf
        return DONE

    def ireduce_scatter(self, sendbuf, recvbuf, op):
        recvbuf[...] = sendbuf
        return DONE

    def ibarrier(self):
        return DONE

    def side_send(self, dest, payload):
        pass

    def abort(self, code=1):
        import os
        import sys
        sys.stderr.flush()
        os._exit(code)


_SIDE_TAG = 0x5A11


class MPICommunicator(Communicator):
    """COMM_WORLD (or a given mpi4py communicator) through non-blocking collectives.

    Two private duplicates: one carries the collectives (in one order on every
    rank), the other the stall detector's point-to-point messages, so those can
    never be matched against a collective.
    """

    backend = "mpi"

    def __init__(self, comm=None):
        from mpi4py import MPI
        self.MPI = MPI
        base = MPI.COMM_WORLD if comm is None else comm
        self.comm = base.Dup()
        self.side = base.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        local = base.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = local.Get_rank()
        self.local_size = local.Get_size()
        local.Free()
        self.hosts = self._gather_hosts(base)
        self.thread_level_multiple = MPI.Query_thread() >= MPI.THREAD_MULTIPLE
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self._sends = []      # (request, buffer) pairs of side-channel sends still in flight
        self._status = MPI.Status()

    def _gather_hosts(self, base, width=64):
        """Every rank's processor (host) name, through one fixed-size allgather at init."""
        name = self.MPI.Get_processor_name().encode("utf-8", "replace")[:width]
        mine = np.zeros(width, np.uint8)
        mine[:len(name)] = np.frombuffer(name, np.uint8)
        table = np.empty((self.size, width), np.uint8)
        base.Allgather(mine, table)
        return [bytes(row).rstrip(b"\0").decode("utf-8", "replace") for row in table]

    def iallreduce(self, buf, op, wire_dtype=None, *, native=None):
        """``native`` (fp16 only): sum with MPI's float16 type (default: where the library has one)
        rather than the user-defined op."""
        if wire_dtype is not None:
            wire16.check_wire_dtype(wire_dtype, buf)
            if op != "sum":
                raise ValueError(f"iallreduce: wire_dtype {wire_dtype!r} supports op 'sum' only, got {op!r}")
            if buf.size == 0:
                return DONE
            native = wire16.native_fp16(self) if native is None else native
            return wire16.iallreduce_16bit(self.MPI, self.comm, buf, wire_dtype, native)
        if buf.size == 0:
            return DONE
        return self.comm.Iallreduce(self.MPI.IN_PLACE, buf, self._ops[op])

    def ibcast(self, buf, root):
        if buf.size == 0:
            return DONE
        return self.comm.Ibcast(buf, root=root)

    def iallgather(self, sendbuf, recvbuf):
        if sendbuf.size == 0:
            return DONE
        return self.comm.Iallgather(sendbuf, recvbuf)

    def ireduce_scatter(self, sendbuf, recvbuf, op):
        if recvbuf.size == 0:
            return DONE
        return self.comm.Ireduce_scatter_block(sendbuf, recvbuf, self._ops[op])

    def ibarrier(self):
        return self.comm.Ibarrier()

    def side_send(self, dest, payload):
        buf = np.ascontiguousarray(payload, dtype=np.int64)
        self._sends.append((self.side.Isend(buf, dest=dest, tag=_SIDE_TAG), buf))
        self._sends = [(r, b) for r, b in self._sends if not r.Test()]

    def side_poll(self):
        out = []
        st = self._status
        while self.side.Iprobe(source=self.MPI.ANY_SOURCE, tag=_SIDE_TAG, status=st):
            n = st.Get_count(self.MPI.INT64_T)
            buf = np.empty(n, np.int64)
            src = st.Get_source()
            self.side.Recv(buf, source=src, tag=_SIDE_TAG)
            out.append((src, buf))
        return out

    def abort(self, code=1):
        # May RETURN (MPICH, when this host's proxy cannot reach mpiexec): callers go
        # through abort.abort_job, which ends the process then.
        self.MPI.COMM_WORLD.Abort(code)
