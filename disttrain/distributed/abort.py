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
import os
import logging
import sys
import threading
import time
import traceback

_state = {"installed": False, "exit_code": None, "comm": None, "aborting": False}


# Measured: mpiexec (hydra) sometimes drops output that a rank wrote just before
# MPI_Abort (1 in 30 jobs lost the traceback); a short pause lets it forward the
# message first.
_FORWARD_PAUSE = 0.3
# If MPI_Abort neither ends the process nor returns within this time, end it anyway.
ABORT_GRACE = 5.0


def aborting():
    """True once this rank has started to abort the job (reports after that are noise)."""
    return _state["aborting"]


def abort_job(comm, code, text):
    """Print ``text``, abort the job through ``comm`` and end this process, whatever MPI does."""
    code = code if isinstance(code, int) and 0 < code < 256 else 1
    if _state["aborting"]:          # a second fatal path (a thread, an exit handler): no second report
        os._exit(code)
    _state["aborting"] = True
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
    timer = threading.Timer(ABORT_GRACE, os._exit, (code,))
    timer.daemon = True
    timer.start()
    try:
        comm.abort(code)
    finally:
        # MPI_Abort returned: mpiexec is out of reach (or the group is a single process).
        os._exit(code)


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
        abort_job(_state["comm"], 1, f"{prefix}: uncaught exception, aborting the job:\n{text}")

    def thread_hook(args):
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        name = args.thread.name if args.thread is not None else "?"
        abort_job(_state["comm"], 1,
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
        abort_job(_state["comm"], status,
               f"{prefix}: exited with sys.exit({code!r}), aborting the job\n")

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    sys.exit = exit
    atexit.register(at_exit)
