"""dtrun running real jobs under mpiexec, MPICH and Open MPI 5 (`mpi_python`, tests/conftest.py):
output prefixing, failures named by rank and host, timeout, signals, -n 1, torchrun conventions,
multi-host launching through --launcher-exec, and the blame contract."""
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from dtrun_helpers import REPO, dtrun, launch_mpi, write

mpi = launch_mpi()

# Every rank prints a partial line, flushes, then finishes it: with MPICH's -prepend-rank the
# halves would be split; the launcher must print whole lines, each with its rank.
SCRIPT = """
import os, sys, time
import numpy as np
import disttrain.distributed as dist
dist.init()
rank, size = dist.get_rank(), dist.get_world_size()
mode = sys.argv[1]
for i in range(3):
    sys.stdout.write(f"rank {rank} line {i} first half / "); sys.stdout.flush()
    time.sleep(0.01)
    print(f"second half {i}", flush=True)
print("rank", rank, "threads", os.environ.get("OPENBLAS_NUM_THREADS"), "args", sys.argv[2:], flush=True)
print("torchrun", *(os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
                                            "MASTER_ADDR", "MASTER_PORT")), flush=True)
total = np.array([float(rank)])
dist.all_reduce(total)
print(f"sum {total[0]:g} of {size}", flush=True)
if rank == 1 and mode == "raise":
    raise ValueError("deliberate failure in rank one")
if rank == 1 and mode == "exit":
    sys.exit(3)
if rank == 1 and mode == "kill":
    os.kill(os.getpid(), 9)
if mode == "hang" and rank == 0:
    time.sleep(600)
dist.barrier()            # the healthy ranks wait here for the failed one
print("finished", rank, flush=True)
"""


@pytest.fixture
def script(tmp_path):
    return write(tmp_path / "job.py", SCRIPT)


HOST = socket.gethostname()


def _io_dirs(tmp):
    return [n for n in os.listdir(tmp) if n.startswith("dtrun-io-")]


def test_two_ranks_whole_prefixed_lines(tmp_path, script, mpi_python):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    rc, out, err, _ = dtrun("-n", "2", script, "ok", "--flag", "x", cwd=tmp_path, timeout=120, python=mpi_python,
                            env={"OPENBLAS_NUM_THREADS": None, "TMPDIR": str(tmp)})
    assert rc == 0, err
    lines = out.splitlines()
    for rank in (0, 1):
        for i in range(3):
            assert f"[{rank}] rank {rank} line {i} first half / second half {i}" in lines
        assert f"[{rank}] sum 1 of 2" in lines and f"[{rank}] finished {rank}" in lines
        assert f"[{rank}] rank {rank} threads {max(1, mpi.cpu_count() // 2)} args ['--flag', 'x']" in lines
        assert f"[{rank}] torchrun {rank} 2 {rank} 2 0 {HOST} 29500" in lines, out
    assert all(line.startswith(("[0] ", "[1] ", "dtrun:")) for line in lines), out
    assert "\x1e" not in out + err                         # control lines never reach the user
    assert _io_dirs(tmp) == []                             # the ranks' output directory is gone


@pytest.mark.parametrize("mode, why, status", [
    ("raise", f"rank 1 (host {HOST}) failed: ValueError: deliberate failure in rank one", 1),
    ("exit", f"rank 1 (host {HOST}) failed: sys.exit(3)", 3),
    ("kill", f"rank 1 (host {HOST}) failed: killed by SIGKILL", 128 + 9),
])
def test_failing_rank_ends_job_and_is_named(tmp_path, script, mode, why, status, mpi_python):
    rc, out, err, seconds = dtrun("-n", "2", script, mode, cwd=tmp_path, timeout=90, python=mpi_python)
    assert rc == status, (out, err)
    assert why in err, err
    assert seconds < 30                                   # not a hang: the healthy rank was stopped
    assert "finished 0" not in out
    if mode == "raise":                                   # its traceback, once, without launcher frames
        report = err[err.index("dtrun: rank 1 (host"):]
        assert 'job.py", line' in report and "raise ValueError" in report
        assert err.count("Traceback (most recent call last)") == 1 and err.count("raise ValueError") == 1, err
        for machinery in ("runpy", "mpi4py", "launch/rank.py", "Abort(", "MPI_ABORT"):
            assert machinery not in err, err


def test_timeout_stops_every_rank(tmp_path, script, mpi_python):
    rc, out, err, seconds = dtrun("-n", "2", "--timeout", "4", script, "hang", cwd=tmp_path, timeout=90,
                                  python=mpi_python)
    assert rc == 124, (out, err)
    assert "exceeded --timeout 4 s" in err and seconds < 25
    assert "KeyboardInterrupt" not in err                 # stopping on purpose is not reported as a crash


# A script that never calls dist.init(): one rank fails, the other sleeps. Its helper module
# raises, so the traceback has two user frames and the launcher's own frames must not show.
NO_INIT = """
import os, sys, time
import helper
rank = int(os.environ["RANK"])
if rank == 1:
    time.sleep(0.3)
    print("failing at", time.time(), flush=True)
    helper.fail(sys.argv[1])
time.sleep(60)
"""
HELPER = """
import sys
def fail(mode):
    if mode == "exit":
        sys.exit(5)
    raise RuntimeError("no init, rank one fails")
"""


@pytest.mark.parametrize("mode, status", [("raise", 1), ("exit", 5)])
def test_script_without_init_fails_fast_with_its_own_traceback(tmp_path, mode, status, mpi_python):
    write(tmp_path / "helper.py", HELPER)
    script = write(tmp_path / "noinit.py", NO_INIT)
    rc, out, err, _ = dtrun("-n", "2", script, mode, cwd=tmp_path, timeout=90, python=mpi_python)
    ended = time.time()
    failed_at = float(re.search(r"\[1\] failing at ([\d.]+)", out).group(1))
    assert rc == status, (out, err)
    assert ended - failed_at <= 5, f"{ended - failed_at:.1f} s from the failure to the end of dtrun"
    assert "KeyboardInterrupt" not in err and "[0]" not in err, err     # not rank 0's interruption
    if mode == "raise":
        lines = err.splitlines()
        assert lines[0] == f"dtrun: rank 1 (host {HOST}) failed: RuntimeError: no init, rank one fails", err
        frames = re.findall(r'\[1\]   File "(.*)", line \d+', err)
        assert [os.path.basename(f) for f in frames] == ["noinit.py", "helper.py"], err   # user frames only
    else:
        assert err.startswith(f"dtrun: rank 1 (host {HOST}) failed: sys.exit(5)"), err


def _start(args, cwd, python=None):
    """dtrun in the background; its stdout lines collected by a thread (a blocking readline()
    in the test would defeat the deadlines)."""
    proc = subprocess.Popen([python or sys.executable, "-m", "launch", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


def _wait_for(lines, text, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in line for line in list(lines)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not printed within {seconds} s: {lines}")


def _rank_processes(marker):
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "launch.rank" in line]


def _wait_gone(marker, seconds):
    deadline = time.monotonic() + seconds
    while _rank_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _rank_processes(marker)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_to_dtrun_stops_every_rank(tmp_path, script, sig, mpi_python):
    proc, lines = _start(["-n", "2", script, "hang"], tmp_path, mpi_python)
    try:
        _wait_for(lines, "[1] sum 1 of 2")                 # both ranks are up
        proc.send_signal(sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 <= 5 and proc.returncode == 128 + sig, (proc.returncode, err)
        assert ("interrupted; stopping all ranks" if sig == signal.SIGINT else f"{sig.name}: stopping all ranks") in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_gone(script, 1) == []                    # no rank left behind


def test_sigkill_of_dtrun_tears_the_job_down(tmp_path, script, mpi_python):
    proc, lines = _start(["-n", "2", script, "hang"], tmp_path, mpi_python)
    try:
        _wait_for(lines, "[1] sum 1 of 2")
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_gone(script, 5) == []                # mpiexec got SIGTERM when dtrun died
    finally:
        if proc.poll() is None:
            proc.kill()
        for line in _rank_processes(script):
            os.kill(int(line.split()[0]), signal.SIGKILL)


MODULE = """
import os, sys
print("env", *(os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK")),
      __name__, sys.argv[1:], flush=True)
"""


def test_module_on_hosts_localhost(tmp_path, mpi_python):
    # `-m package.module ARGS` like python -m; `--hosts localhost` with more ranks than cores (Open MPI
    # counts slots: dtrun gives localhost all 3)
    os.makedirs(tmp_path / "pkg")
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "job.py", MODULE)
    rc, out, err, _ = dtrun("-np", "3", "--hosts", "localhost", "-m", "pkg.job", "a", "-n", "b", cwd=tmp_path,
                            timeout=90, python=mpi_python)
    assert rc == 0, err
    assert sorted(out.splitlines()) == [f"[{r}] env {r} 3 {r} 3 0 __main__ ['a', '-n', 'b']" for r in range(3)], out


def test_stale_io_dirs_of_dead_dtruns_are_removed(tmp_path, monkeypatch):
    import tempfile
    from launch import runner
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    for name in (f"dtrun-io-{dead.pid}-abc", f"dtrun-io-{os.getpid()}-live", "dtrun-io-other"):
        os.makedirs(tmp_path / name / "x")
    fresh = runner.make_io_dir()
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(fresh), f"dtrun-io-{os.getpid()}-live",
                                                   "dtrun-io-other"])
    runner.remove_io_dir(fresh)


def test_n1_runs_in_process_without_mpiexec(tmp_path):
    script = write(tmp_path / "one.py", "import sys, os\nimport disttrain.distributed as dist\ndist.init()\n"
                   "print('size', dist.get_world_size(), 'args', sys.argv[1:], 'mpi', 'PMI_RANK' in os.environ)\n")
    rc, out, err, _ = dtrun("-n", "1", script, "a", "b", cwd=tmp_path, timeout=60,
                            env={"PMI_RANK": None, "PMI_SIZE": None})
    assert rc == 0, err
    assert out.strip() == "size 1 args ['a', 'b'] mpi False"
    fail = write(tmp_path / "fail.py", "raise SystemExit(4)\n")
    rc, out, err, _ = dtrun(fail, cwd=tmp_path, timeout=60)
    assert rc == 4 and err == "dtrun: rank 0 failed: sys.exit(4)\n", err


def test_n1_failure_reported_like_a_rank_without_launcher_frames(tmp_path):
    write(tmp_path / "helper.py", "def check(x):\n    raise ValueError(f'bad value {x}')\n")
    script = write(tmp_path / "bad.py", "import helper\n\ndef main():\n    helper.check(3)\n\nmain()\n")
    rc, out, err, _ = dtrun("-n", "1", script, cwd=tmp_path, timeout=60)
    assert rc == 1, err
    lines = err.splitlines()
    assert lines[0] == "dtrun: rank 0 failed: ValueError: bad value 3", err
    assert lines[1:3] == ["dtrun: rank 0's traceback:", "  [0] Traceback (most recent call last):"], err
    frames = [re.match(r'  \[0\]   File "(.*)", line (\d+)', line) for line in lines
              if line.startswith("  [0]   File ")]
    assert [(os.path.basename(m.group(1)), int(m.group(2))) for m in frames] == \
        [("bad.py", 6), ("bad.py", 4), ("helper.py", 2)], err          # only the user's frames
    assert lines[-1] == "  [0] ValueError: bad value 3"
    for machinery in ("click", "launcher.py", "cli.py", "runpy"):
        assert machinery not in err, err
