"""Ctrl-C before the ranks start: exit 130 with one line, never a traceback or click's "Aborted!",
and never lost. An interrupt that lands inside a C callback (Numba compiling kernels through
llvmlite during the launcher's preflight) is printed as "Exception ignored" and swallowed by
Python; the flag set here remembers it, and `check()` (called once the preflight is done, before
anything is written or launched) ends dtrun then. The runner installs its own handler for the
launched job (stop every rank, exit 130)."""
import signal
import sys

_state = {"interrupted": False}


def _handler(signum, frame):
    _state["interrupted"] = True
    raise KeyboardInterrupt


def install():
    """From now on SIGINT sets the flag and raises KeyboardInterrupt (main thread only); a swallowed
    one is not reported as "Exception ignored ... Traceback" (the flag has it). Returns a function
    that restores the previous handlers (dtrun's CLI called in-process, e.g. by tests)."""
    try:
        old_handler = signal.signal(signal.SIGINT, _handler)
    except ValueError:         # not the main thread (e.g. dtrun's CLI called from a test runner's thread)
        return lambda: None
    old_hook = sys.unraisablehook

    def hook(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt) and _state["interrupted"]:
            return
        old_hook(unraisable)
    sys.unraisablehook = hook

    def restore():
        signal.signal(signal.SIGINT, old_handler)
        sys.unraisablehook = old_hook
    return restore


def exit_interrupted():
    sys.stderr.write("\ndtrun: interrupted; nothing was started\n")
    sys.stderr.flush()
    raise SystemExit(130)


def check():
    """Exit 130 if an interrupt arrived (even one that Python swallowed)."""
    if _state["interrupted"]:
        exit_interrupted()
