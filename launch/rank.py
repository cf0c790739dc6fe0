"""What each rank runs: `python -m mpi4py -m launch.rank (config RUN_DIR [--resume] | script PATH ARGS... |
module NAME ARGS...)`.

Before the user's code runs, each rank sends its stdout/stderr into the job's output directory
(DTRUN_IO_DIR/rank<R>.out|err, the same layout under every MPI) and sets torchrun's variables
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT).
An uncaught exception or a non-zero `sys.exit` calls `MPI_Abort` at once, so one failing rank
ends the job instead of leaving the others waiting. Control lines (starting with CONTROL) on
stderr, which the launcher reads and hides, carry the rank's pid and host (to name a rank killed
by a signal) and why the rank failed, with its traceback; the launcher prints that report once.
Other parts of disttrain may send `blame {json}` (see `launch.runner.Job.control`) to say which
rank is at fault when the reporter is not.
"""
import os
import runpy
import sys
import time
import traceback

CONTROL = "\x1edtrun:"


def rank_from_env():
    for key in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def control(message):
    """One control line, written with a single write() so it never interleaves (only under dtrun,
    which reads and hides them)."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return
    try:
        os.write(2, f"{CONTROL}{message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def describe(exc):
    """One line saying why a rank failed: 'ValueError: bad shape', 'sys.exit(3)', a message."""
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, str):       # sys.exit("message"); dtrun's own errors start with "dtrun: "
            return exc.code[len("dtrun: "):] if exc.code.startswith("dtrun: ") else exc.code
        return f"sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0] if text else type(exc).__name__


def hostname():
    """This rank's host as the MPI names it (the name in the host list), else the machine's."""
    import socket
    return os.environ.get("PMI_HOSTNAME") or os.environ.get("PMIX_HOSTNAME") or socket.gethostname()


def redirect_output(io_dir, rank):
    """Send this process's fd 1 and 2 to the job's output files, named by rank, so the launcher reads
    the same layout under every MPI. Where that directory does not exist on this host (another
    machine without a shared filesystem), the lines travel through mpiexec instead, tagged with the
    rank (forward_output)."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return
    if not io_dir or not os.path.isdir(io_dir):
        forward_output(rank)
        return
    for fd, kind in ((1, "out"), (2, "err")):
        target = os.open(os.path.join(io_dir, f"rank{rank}.{kind}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(target, fd)
        os.close(target)


FORWARD = "\x1ddtrun@"      # FORWARD + "RANK KIND TEXT": one line of a rank's output, through mpiexec
_CHUNK = 3000              # < PIPE_BUF: one write() per piece never interleaves with other ranks'
_pumps = []


def forward_output(rank):
    """Replace fd 1 and 2 by pipes whose lines threads write to the original stdout, each whole line in
    one write() as FORWARD + "RANK out|err TEXT" (a piece of a longer line: kind "out+"/"err+")."""
    import atexit
    import threading
    sink = os.dup(1)
    for fd, kind in ((1, "out"), (2, "err")):
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        t = threading.Thread(target=_pump, args=(r, sink, f"{FORWARD}{rank} {kind}"), daemon=True)
        t.start()
        _pumps.append(t)
    atexit.register(finish_forwarding)


def _pump(rfd, sink, head):
    partial = b""
    while True:
        try:
            data = os.read(rfd, 65536)
        except OSError:
            break
        if not data:
            break
        partial += data
        *lines, partial = partial.split(b"\n")
        for line in lines:
            _send(sink, head, line)
    if partial:
        _send(sink, head, partial)


def _send(sink, head, line):
    pieces = [line[i:i + _CHUNK] for i in range(0, len(line), _CHUNK)] or [b""]
    for i, piece in enumerate(pieces):
        more = "+" if i < len(pieces) - 1 else ""
        try:
            os.write(sink, f"{head}{more} ".encode() + piece + b"\n")
        except OSError:
            return


def finish_forwarding():
    """Close this process's ends of the pipes and let the threads send what is left (at exit)."""
    if not _pumps:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    for t in _pumps:
        t.join(timeout=1.0)
    del _pumps[:]


def set_torchrun_env(rank, size, local_rank, local_size, node_rank, master_addr):
    """torchrun's variables, for code written against them."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(local_size), NODE_RANK=str(node_rank), MASTER_ADDR=master_addr)
    os.environ.setdefault("MASTER_PORT", "29500")


def layout(hosts, rank):
    """(local_rank, local_size, node_rank) of `rank` from every rank's host name, in rank order;
    nodes are numbered in the order their first rank appears."""
    mine = hosts[rank]
    nodes = list(dict.fromkeys(hosts))
    return hosts[:rank].count(mine), hosts.count(mine), nodes.index(mine)


def _world():
    """(rank, size, every rank's host) from MPI, which `python -m mpi4py` has initialized."""
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        return comm.Get_rank(), comm.Get_size(), comm.allgather(hostname())
    except Exception:   # no MPI (run by hand): one process
        return rank_from_env(), 1, [hostname()]


def abort(status):
    """End the whole job now with `status`. MPI_Abort may return (a rank cut off from mpiexec), so
    this process ends itself afterwards either way."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    finish_forwarding()
    try:
        from mpi4py import MPI
        MPI.COMM_WORLD.Abort(status)
    except Exception:
        pass
    os._exit(status)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    rank = rank_from_env()
    redirect_output(os.environ.get("DTRUN_IO_DIR"), rank)
    control(f"pid {os.getpid()} host {hostname()}")
    rank, size, hosts = _world()
    set_torchrun_env(rank, size, *layout(hosts, rank), master_addr=hosts[0])
    try:
        if argv and argv[0] == "config":
            from disttrain.training.job import run_from_run_dir
            run_from_run_dir(argv[1], resume="--resume" in argv[2:])
        elif argv and argv[0] == "script":
            path = argv[1]
            sys.argv = [path] + argv[2:]
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
            runpy.run_path(path, run_name="__main__")
        elif argv and argv[0] == "module" and len(argv) > 1:
            sys.argv = [argv[1]] + argv[2:]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            raise SystemExit("usage: python -m mpi4py -m launch.rank (config RUN_DIR [--resume] | script PATH ARGS... "
                             "| module NAME ARGS...)")
    except SystemExit as exc:
        if exc.code in (None, 0):
            control("done")
            raise
        if report_failure(exc):
            abort(exc.code if isinstance(exc.code, int) and 0 < exc.code < 256 else 1)
        raise
    except KeyboardInterrupt as exc:
        control(f"failed {describe(exc)}")
        raise
    except BaseException as exc:
        if report_failure(exc, with_traceback=True):
            abort(1)        # every rank stops now; Python prints no second, noisier traceback
        raise
    control("done")      # a rank that ends early and cleanly is not the one that failed


def report_failure(exc, with_traceback=False):
    """Tell the launcher why this rank fails (and its traceback, without the launcher's frames),
    then give mpiexec a moment to forward it: MPI_Abort may tear the job down before output
    written just before it has travelled. True if the launcher was told (running under dtrun)."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return False
    control(f"failed {describe(exc)}")
    if with_traceback:
        for line in traceback_lines(exc):
            control(f"tb {line}")
    time.sleep(0.1)      # let the launcher read the report before the abort tears the job down
    return True


_LAUNCH_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_MACHINERY = (os.sep + "click" + os.sep, os.sep + "mpi4py" + os.sep, os.sep + "runpy.py", "<frozen runpy>")


def is_machinery(filename):
    """A frame of dtrun itself, click, mpi4py's runner or runpy: nothing to do with the user's bug."""
    return filename.startswith(_LAUNCH_DIR) or any(m in filename for m in _MACHINERY)


def traceback_lines(exc):
    """`exc`'s traceback as lines, without the launch machinery's frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not is_machinery(f.filename)]
    lines = ["Traceback (most recent call last):"] if frames else []
    lines += "".join(traceback.format_list(frames)).rstrip("\n").splitlines()
    lines += "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n").splitlines()
    return lines


if __name__ == "__main__":
    main()
