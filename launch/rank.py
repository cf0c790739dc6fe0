"""What each rank runs: `python -m mpi4py -m launch.rank (config RUN_DIR [--resume] | script PATH ARGS...)`.

`python -m mpi4py` turns an uncaught exception or a non-zero `sys.exit` into `MPI_Abort`,
so one failing rank ends the job instead of leaving the others waiting. This module adds
control lines (starting with CONTROL) on stderr that the launcher reads and hides: the
rank's pid (to name a rank killed by a signal) and why the rank failed.
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


def _describe(exc):
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, str) else f"sys.exit({exc.code!r})"
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
        else:
            report_failure(exc)
        raise
    except KeyboardInterrupt as exc:
        control(f"failed {_describe(exc)}")
        raise
    except BaseException as exc:
        report_failure(exc, with_traceback=True)
        raise
    control("done")      # a rank that ends early and cleanly is not the one that failed


def report_failure(exc, with_traceback=False):
    """Tell the launcher why this rank fails (and its traceback, without this module's and
    runpy's frames), then give mpiexec a moment to forward it: MPI_Abort may tear the job down
    before output written just before it has travelled."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return
    control(f"failed {_describe(exc)}")
    if with_traceback:
        for line in _traceback_lines(exc):
            control(f"tb {line}")
    time.sleep(0.3)


def _traceback_lines(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != __file__ and "runpy" not in f.filename]
    lines = ["Traceback (most recent call last):"]
    lines += "".join(traceback.format_list(frames)).rstrip("\n").splitlines()
    lines += "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n").splitlines()
    return lines


if __name__ == "__main__":
    main()
