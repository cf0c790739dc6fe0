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

`abort_job` is the one way this runtime ends a job (the stall detector and the
collective check use it too), and it always ends THIS process: measured with
MPICH across two hosts, ``MPI_Abort`` RETURNS (after ~0 s) when the rank's
proxy cannot reach mpiexec (the link is cut), and a rank that went on would
re-report and re-abort forever. So after ``MPI_Abort`` the rank
``os._exit``s, a timer ends it if ``MPI_Abort`` blocks instead, and a second
fatal path while aborting exits at once. On a host cut off from the
launcher, the MPI daemon that started the ranks is orphaned too: Open MPI's
``MPI_Abort`` ends the rank, but its ``prted`` was measured to linger ~9 s
more (until its own timeout). So in a multi-host job an aborting rank first
starts a small reaper (``sh``) that SIGKILLs its parent daemon if that still
runs `ABORT_GRACE` seconds later (a daemon its launcher can reach is gone by
then: the job is being torn down).
"""
import atexit
import logging
import os
import sys
import threading
import time
import traceback

from .blame import failed

_state = {"installed": False, "exit_code": None, "comm": None, "aborting": False}


# Measured: mpiexec (hydra) sometimes drops output that a rank wrote just before
# MPI_Abort (1 in 30 jobs lost the traceback); a short pause lets it forward the
# message first.
_FORWARD_PAUSE = 0.3
# If MPI_Abort neither ends the process nor returns within this time, end it anyway.
ABORT_GRACE = 3.0
# Parents that are an MPI launcher's per-host daemon (Linux /proc/PID/comm names).
_DAEMONS = ("hydra_pmi_proxy", "prted", "orted")


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
    failed(text.strip().splitlines()[0] if text.strip() else f"aborted (status {code})")
    time.sleep(_FORWARD_PAUSE)
    _reap_daemon_later(comm)
    timer = threading.Timer(ABORT_GRACE, os._exit, (code,))
    timer.daemon = True
    timer.start()
    try:
        comm.abort(code)
    finally:
        # MPI_Abort returned: mpiexec is out of reach, or (measured, MPICH on one host) a
        # rank has already finalized; mpiexec notices this rank's exit and stops the rest.
        os._exit(code)


def _daemon_parent():
    """(pid, name) of this rank's parent if it is an MPI launcher's daemon, else None."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/comm") as f:
            name = f.read().strip()
    except OSError:
        return None
    return (ppid, name) if ppid > 1 and name in _DAEMONS else None


def _reap_daemon_later(comm):
    daemon = _daemon_parent()
    if daemon is None or len(set(getattr(comm, "hosts", None) or ())) < 2:
        return
    import subprocess
    # polls every 0.2 s, so it ends as soon as the daemon does
    script = ('i=0; while [ "$(cat /proc/$0/comm 2>/dev/null)" = "$1" ]; do '
              '[ $i -ge "$2" ] && exec kill -9 "$0"; sleep 0.2; i=$((i+1)); done')
    try:
        subprocess.Popen(["sh", "-c", script, str(daemon[0]), daemon[1], str(int(ABORT_GRACE * 5))],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        pass


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
