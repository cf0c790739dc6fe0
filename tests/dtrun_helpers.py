"""Running `dtrun` as a real subprocess for the launcher/job tests."""
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


def dtrun(*args, cwd, timeout=120, env=None, python=None):
    """(returncode, stdout, stderr, seconds) of `python -m launch ARGS`; ``python``: the interpreter
    (and so the MPI) to run dtrun with, default this one (MPICH)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")   # the Open MPI venv
    for key, value in (env or {}).items():     # None: remove the variable
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    t0 = time.monotonic()
    proc = subprocess.run([python or sys.executable, "-m", "launch", *map(str, args)], cwd=cwd, env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def launch_mpi():
    """launch/mpi.py loaded by path: tests/mpi/launch.py (the distributed tests' helper) puts a
    module named `launch` first on sys.path, so `import launch` here could get either one."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("dtrun_launch_mpi", os.path.join(REPO, "launch", "mpi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)
