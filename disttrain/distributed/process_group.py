"""The process group: which ranks take part, and the machinery every collective uses.

``dist.init()`` picks MPI when the process was started by an MPI launcher
with more than one rank (``PMI_SIZE``/``OMPI_COMM_WORLD_SIZE``/``PMIX_SIZE``
in the environment, or an already initialised mpi4py with size > 1) and a
single-process group otherwise, so ``python train.py`` runs unchanged (mpi4py
is not even imported then). In an MPI job it also limits BLAS/Numba threads
per rank, installs abort-on-error and starts the communication thread.

Backends are a registry: ``register_backend(name, factory)`` adds a transport,
``factory()`` returning a `communicator.Communicator`; "mpi" and "single" are
registered here, and ``init(backend=name)`` / ``DISTTRAIN_BACKEND`` pick one.
"""
import atexit
import os
import sys

from .communicator import MPICommunicator, SingleProcessCommunicator
from .progress import ProgressEngine, resolve_wait_mode
from .stall import StallDetector, default_abort, default_timeout
from .collective_check import CollectiveChecker, mode_from
from . import abort as _abort
from . import threads as _threads

PROGRESS_MODES = ("thread", "hooks")
_BACKENDS = {}       # name -> factory() -> Communicator


def register_backend(name, factory):
    """Make ``init(backend=name)`` use ``factory()`` (a `Communicator`) for the process group."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_backend: name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"register_backend: factory for {name!r} must be callable, got {type(factory).__name__}")
    _BACKENDS[name] = factory
    return factory


def registered_backends():
    return sorted(_BACKENDS)


register_backend("mpi", MPICommunicator)
register_backend("single", SingleProcessCommunicator)
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_group = None


class ProcessGroup:
    def __init__(self, comm, engine, stall, thread_limits):
        self.comm = comm
        self.engine = engine
        self.stall = stall
        self.thread_limits = thread_limits

    @property
    def rank(self):
        return self.comm.rank

    @property
    def size(self):
        return self.comm.size

    @property
    def backend(self):
        return self.comm.backend

    def __repr__(self):
        return (f"ProcessGroup(backend={self.backend!r}, rank={self.rank}, size={self.size}, "
                f"progress={'thread' if self.engine.threaded else 'hooks'}, wait={self.engine.wait_mode!r})")


def _launched_by_mpi():
    for var in _SIZE_VARS[:3]:
        v = os.environ.get(var)
        if v is not None:
            try:
                return int(v) > 1
            except ValueError:
                pass
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_size() > 1
    return False


def init(backend=None, *, progress=None, wait_mode=None, stall_timeout="default", stall_abort=None,
         limit_threads=True, abort_on_error=True, check_collectives=None):
    """Initialise the default process group (idempotent: a second call returns the first group).

    backend: a registered backend (``"mpi"``, ``"single"``, or one added by
    `register_backend`) or None (detect: "mpi" under an MPI launcher). progress: ``"thread"``
    (a communication thread drives MPI; default when MPI_THREAD_MULTIPLE is
    available) or ``"hooks"`` (Test() from gradient hooks); env
    DISTTRAIN_PROGRESS. wait_mode: ``"auto"``/``"spin"``/``"sleep"``; env
    DISTTRAIN_WAIT_MODE. stall_timeout: seconds before a waiting collective
    is reported (default 60, env DISTTRAIN_STALL_TIMEOUT; None disables);
    stall_abort: abort the job after reporting (default True, env
    DISTTRAIN_STALL_ABORT=0 turns it off), so a deadlocked script ends.
    check_collectives: verify before each collective that every rank calls
    the same one (True: all, False: none, N: the first N; default "auto", the
    first 64; env DISTTRAIN_CHECK_COLLECTIVES).
    """
    global _group
    if _group is not None:
        return _group
    if backend is None:
        backend = os.environ.get("DISTTRAIN_BACKEND") or ("mpi" if _launched_by_mpi() else "single")
    factory = _BACKENDS.get(backend)
    if factory is None:
        raise ValueError(f"dist.init: unknown backend {backend!r}; registered backends: "
                         f"{', '.join(registered_backends())} (add one with dist.register_backend(name, factory))")
    comm = factory()

    progress = progress or os.environ.get("DISTTRAIN_PROGRESS") or "thread"
    if progress not in PROGRESS_MODES:
        raise ValueError(f"dist.init: progress {progress!r}: expected 'thread' or 'hooks'")
    # A communication thread calling MPI beside the main thread needs
    # MPI_THREAD_MULTIPLE; a single process needs no thread at all.
    threaded = progress == "thread" and comm.size > 1 and comm.thread_level_multiple
    wait = resolve_wait_mode(wait_mode, comm.local_size, threaded)

    if stall_timeout == "default":
        stall_timeout = default_timeout()
    if stall_abort is None:
        stall_abort = default_abort()
    stall = StallDetector(comm, stall_timeout, stall_abort) if comm.size > 1 else None
    check = mode_from(check_collectives)
    checker = CollectiveChecker(comm, check) if comm.size > 1 and check else None

    limits = {"blas": None, "numba": None}
    if comm.size > 1 and limit_threads and comm.local_size > 1:
        limits = _threads.limit_threads(comm.local_size)
    engine = ProgressEngine(comm, threaded, wait, stall, checker)
    atexit.register(_close, engine, stall)
    if comm.size > 1 and abort_on_error:
        # Registered after engine.close, so its exit handler runs first (atexit is LIFO):
        # a dying rank aborts at once instead of first joining a thread stuck in MPI.
        _abort.install(comm)
    _group = ProcessGroup(comm, engine, stall, limits)
    return _group


def default_group():
    """The default group, initialised on first use."""
    return _group if _group is not None else init()


def is_initialized():
    return _group is not None


def destroy_process_group():
    """Stop the communication thread and forget the group (MPI itself stays up)."""
    global _group
    if _group is not None:
        _close(_group.engine, _group.stall)
        _group = None


def _close(engine, stall):
    if stall is not None and not engine._closed:
        stall.goodbye()      # peers still waiting will report this rank "exited", not "not responding"
    engine.close()


def get_rank():
    return default_group().rank


def get_world_size():
    return default_group().size


def get_local_rank():
    return default_group().comm.local_rank


def get_local_world_size():
    return default_group().comm.local_size


def get_backend():
    return default_group().backend
