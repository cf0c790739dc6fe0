"""Node-level MPI machinery for the sharded optimizer: node/cross communicators, shared windows,
sleep-polled barriers, and the variable-count collectives (reduce-scatter, all-gather, gather).

MPI-only (it calls the mpi4py communicator that `MPICommunicator` holds); the single-process
group never gets here. Kept out of `communicator.py` so the `Communicator` interface stays the
small set every backend implements.

Windows: ``MPI.Win.Allocate_shared`` on the node communicator; ``Shared_query(r)`` gives local
rank r's segment, which every rank of the node maps into its own address space. One passive
epoch (``Lock_all(MODE_NOCHECK)``) is opened right after allocation because ``Win_sync`` (the
memory barrier of MPI's unified model) is only legal inside one. Publishing a write is
``Win_sync`` -> node barrier -> ``Win_sync``.

Every wait goes through the progress engine (``engine.submit(...).wait()``): it sleep-polls
when ranks outnumber cores, answers the stall detector, and a rank that dies makes the job end
through the usual abort path -- a barrier on a window is an ordinary non-blocking MPI barrier
here, never a spin on a flag in shared memory that a dead peer would never set.
"""
import numpy as np

ALIGN = 64      # bytes: every slice and every bucket in a window starts on a cache line


def aligned(nbytes, align=ALIGN):
    return (nbytes + align - 1) // align * align


class Node:
    """This rank's node (``local``: the ranks sharing memory) and its peers of the same local rank on
    the other nodes (``cross``). ``ranks_per_node`` forces nodes of consecutive ranks (for tests of
    the hierarchical path on one machine); by default the node is what MPI says shares memory."""

    def __init__(self, group, ranks_per_node=None):
        MPI = group.comm.MPI
        world = group.comm.comm
        self.MPI, self.group, self.engine = MPI, group, group.engine
        rank = world.Get_rank()
        if ranks_per_node is None:
            self.local = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        else:
            self.local = world.Split(rank // int(ranks_per_node), rank)
        self.local_rank, self.local_size = self.local.Get_rank(), self.local.Get_size()
        self.cross = world.Split(self.local_rank, rank)
        self.node_index, self.nodes = self.cross.Get_rank(), self.cross.Get_size()
        sizes = np.empty(world.Get_size(), np.int64)
        world.Allgather(np.array([self.local_size], np.int64), sizes)
        if (sizes != sizes[0]).any():
            raise ValueError(f"ShardedOptimizer: rank {rank}: the node-shared path needs the same number of ranks "
                             f"on every node, got {sorted(set(sizes.tolist()))}; pass shared_memory=False")
        where = np.empty(2 * world.Get_size(), np.int64)
        world.Allgather(np.array([self.node_index, self.local_rank], np.int64), where)
        self.placement = [tuple(x) for x in where.reshape(-1, 2).tolist()]   # rank -> (node, local rank)
        self.windows = []

    def allocate(self, nbytes):
        """A shared window where this rank contributes ``nbytes``; returns (window, [uint8 array of
        each local rank's segment])."""
        MPI = self.MPI
        try:
            win = MPI.Win.Allocate_shared(int(nbytes), 1, comm=self.local)
        except MPI.Exception as exc:
            raise RuntimeError(f"ShardedOptimizer: rank {self.group.rank}: allocating a {nbytes / 2**20:.1f} MiB "
                               f"shared-memory window failed ({exc.Get_error_string()}); MPI backs these windows with "
                               "/dev/shm (64 MiB by default in containers: docker run --shm-size). Pass "
                               "shared_memory=False (config: [distributed] shared_memory = false) to use the "
                               "any-topology path instead") from None
        win.Lock_all(MPI.MODE_NOCHECK)
        self.windows.append(win)
        segs = []
        for r in range(self.local_size):
            buf, _ = win.Shared_query(r)
            segs.append(np.frombuffer(buf, np.uint8))
        return win, segs

    def barrier(self, what):
        """Publish this rank's writes to its node: Win_sync, sleep-polled node barrier, Win_sync."""
        self.finish_barrier(self.start_barrier(what))

    def start_barrier(self, what):
        """The non-blocking half of `barrier`: returns its Work (finish it with `finish_barrier`)."""
        self.sync()
        return self.engine.submit(f"node barrier: {what}", self.local.Ibarrier)

    def finish_barrier(self, work):
        work.wait()
        self.sync()

    def sync(self):
        """Win_sync on every window: a memory barrier between this rank's and its peers' accesses."""
        for w in self.windows:
            w.Sync()

    def cross_allreduce(self, buf, label):
        """Start the sum of ``buf`` (in place) over the same local rank of every node; returns the Work."""
        MPI, cross = self.MPI, self.cross
        return self.engine.submit(label, lambda: cross.Iallreduce(MPI.IN_PLACE, buf, MPI.SUM))

    def free(self):
        for w in self.windows:
            try:
                w.Unlock_all()
                w.Free()
            except Exception:     # at exit after a failure: MPI may be gone already
                pass
        self.windows = []
        for c in (self.local, self.cross):
            try:
                c.Free()
            except Exception:
                pass


# -- variable-count collectives on the group's communicator -----------------------------------
def ireduce_scatter(group, sendbuf, recvbuf, counts, label, finish=None):
    """Sum ``sendbuf`` over the ranks; rank r receives elements of its block (``counts[r]`` long)."""
    comm, MPI = group.comm.comm, group.comm.MPI
    return group.engine.submit(label, lambda: comm.Ireduce_scatter(sendbuf, recvbuf, counts, MPI.SUM), finish)


def iallgather_inplace(group, buf, counts, displs, label):
    """Every rank's block of ``buf`` (at ``displs[r]``, ``counts[r]`` long) copied to every rank, in place."""
    comm, MPI = group.comm.comm, group.comm.MPI
    return group.engine.submit(label, lambda: comm.Iallgatherv(MPI.IN_PLACE, [buf, (counts, displs)]))


def igather(group, sendbuf, recvbuf, counts, displs, root, label):
    """Rank ``root`` receives every rank's ``sendbuf`` into ``recvbuf`` at ``displs``."""
    comm = group.comm.comm
    recv = [recvbuf, (counts, displs)] if group.rank == root else None
    return group.engine.submit(label, lambda: comm.Igatherv(sendbuf, recv, root=root))
