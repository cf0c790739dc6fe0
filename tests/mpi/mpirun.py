"""Run a script under `mpiexec -n N` with a hard timeout (shared by the distributed tests)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH."""
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(cand):
        return cand
    return shutil.which("mpiexec")


def run(n, script, *args, timeout=120):
    """Returns (returncode, stdout, stderr, seconds). Never hangs: both MPICH and we time out."""
    exe = mpiexec()
    if exe is None:
        raise RuntimeError("mpiexec not found next to sys.executable or on PATH (pip install mpich)")
    env = dict(os.environ)
    # conftest.py sets a shared cache; this default serves direct use of this helper
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "disttrain-test-numba-cache"))
    env["MPIEXEC_TIMEOUT"] = str(int(timeout) - 5)     # MPICH kills the job itself first
    env["NUMBA_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISTTRAIN_STALL_TIMEOUT", None)
    cmd = [exe, "-n", str(n), sys.executable, os.path.join(HERE, script), *map(str, args)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mpiexec -n {n} {script} {args} hung for {timeout} s:\n"
                             f"{e.stdout}\n{e.stderr}") from None
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def run_checks(n, script, timeout=240):
    """Launch ``script OUTDIR`` on n ranks; every rank writes OUTDIR/results-<rank>.json (check name ->
    "ok" or the failure). Returns dict(rc, stdout, stderr, secs, results={rank: {...}}, out)."""
    import json
    out = tempfile.mkdtemp(prefix=f"disttrain-{os.path.splitext(script)[0]}{n}-")
    rc, stdout, stderr, secs = run(n, script, out, timeout=timeout)
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
