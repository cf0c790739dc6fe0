"""What each rank runs: `python -m mpi4py -m launch.rank (config RUN_DIR [--resume] | script PATH ARGS...)`.

`python -m mpi4py` turns an uncaught exception or a non-zero `sys.exit` into `MPI_Abort`,
so one failing rank ends the job instead of leaving the others waiting. This module adds
control lines (starting with CONTROL) on stderr that the launcher reads and hides: the
rank's pid (to name a rank killed by a signal) and why the rank failed, with its traceback.
The launcher prints that report once; the rank then exits with status 1 without printing
the traceback (and launcher frames) a second time.
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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    control(f"pid {os.getpid()}")
    try:
        if argv and argv[0] == "config":
            from disttrain.training.job import run_from_run_dir
            run_from_run_dir(argv[1], resume="--resume" in argv[2:])
        elif argv and argv[0] == "script":
            path = argv[1]
            sys.argv = [path] + argv[2:]
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
            runpy.run_path(path, run_name="__main__")
        else:
            raise SystemExit("usage: python -m mpi4py -m launch.rank (config RUN_DIR [--resume] | script PATH ARGS...)")
    except SystemExit as exc:
        if exc.code in (None, 0):
            control("done")
            raise
        if report_failure(exc) and not isinstance(exc.code, int):
            raise SystemExit(1) from None      # the launcher prints the message
        raise
    except KeyboardInterrupt as exc:
        control(f"failed {describe(exc)}")
        raise
    except BaseException as exc:
        if report_failure(exc, with_traceback=True):
            # mpi4py still aborts the job (status 1); Python prints no second, noisier traceback
            raise SystemExit(1) from None
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
    time.sleep(0.3)
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
