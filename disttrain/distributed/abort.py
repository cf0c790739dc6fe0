"""Abort the whole job when one rank dies, so `mpiexec -n N python x.py` cannot hang.

Measured with the mpich wheel: a rank that leaves through an uncaught
exception or ``sys.exit(1)`` sits in mpi4py's exit-time ``MPI_Finalize``
while the other ranks wait for it forever. `install` (called by
``dist.init()`` in an MPI job) makes such a rank print its rank and traceback
and call ``MPI_Abort``, which ends every rank -- what ``python -m mpi4py``
arranges for its scripts.

Covered: uncaught exceptions in the main thread (``sys.excepthook``) and in
other threads (``threading.excepthook``), ``sys.exit(code)`` with a non-zero
code (``sys.exit`` records the code; an ``atexit`` handler, which runs before
MPI's own finalisation, aborts). Not covered: ``raise SystemExit(1)`` written
out by hand (Python offers no hook that sees its code).
"""
import atexit
import logging
import sys
import threading
import time
import traceback

_state = {"installed": False, "exit_code": None, "comm": None}


# Measured: mpiexec (hydra) sometimes drops output that a rank wrote just before
# MPI_Abort (1 in 30 jobs lost the traceback); a short pause lets it forward the
# message first.
_FORWARD_PAUSE = 0.3


def _abort(comm, code, text):
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        logging.getLogger("disttrain").critical(text.rstrip("\n"))    # stderr unless the user routes it
        sys.stderr.flush()
    except Exception:
        pass
    time.sleep(_FORWARD_PAUSE)
    comm.abort(code)


def install(comm):
    """Route fatal exits of this rank to ``comm.abort`` (idempotent)."""
    _state["comm"] = comm
    if _state["installed"]:
        return
    _state["installed"] = True
    prefix = f"disttrain: rank {comm.rank} of {comm.size}"
    prev_hook = sys.excepthook

    def excepthook(tp, value, tb):
        if issubclass(tp, SystemExit):      # never reaches here in CPython; be safe
            return prev_hook(tp, value, tb)
        text = "".join(traceback.format_exception(tp, value, tb))
        _abort(_state["comm"], 1, f"{prefix}: uncaught exception, aborting the job:\n{text}")

    def thread_hook(args):
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        name = args.thread.name if args.thread is not None else "?"
        _abort(_state["comm"], 1,
               f"{prefix}: uncaught exception in thread {name!r}, aborting the job:\n{text}")

    real_exit = sys.exit

    def exit(code=None):
        _state["exit_code"] = code
        real_exit(code)

    def at_exit():
        code = _state["exit_code"]
        if code is None or code == 0:
            return
        status = code if isinstance(code, int) else 1     # Python printed a message code already
        _abort(_state["comm"], status,
               f"{prefix}: exited with sys.exit({code!r}), aborting the job\n")

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    sys.exit = exit
    atexit.register(at_exit)
