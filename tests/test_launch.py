"""dtrun running real jobs under mpiexec: output prefixing, failures, timeout, -n 1."""
import os
import re
import sys

import pytest

from dtrun_helpers import dtrun, launch_mpi, write

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


def test_two_ranks_whole_prefixed_lines(tmp_path, script):
    rc, out, err, _ = dtrun("-n", "2", script, "ok", "--flag", "x", cwd=tmp_path, timeout=120,
                            env={"OPENBLAS_NUM_THREADS": None})
    assert rc == 0, err
    lines = out.splitlines()
    for rank in (0, 1):
        for i in range(3):
            assert f"[{rank}] rank {rank} line {i} first half / second half {i}" in lines
        assert f"[{rank}] sum 1 of 2" in lines and f"[{rank}] finished {rank}" in lines
        assert f"[{rank}] rank {rank} threads {max(1, mpi.cpu_count() // 2)} args ['--flag', 'x']" in lines
    assert all(line.startswith(("[0] ", "[1] ", "dtrun:")) for line in lines), out
    assert "\x1e" not in out + err                         # control lines never reach the user


@pytest.mark.parametrize("mode, why, status", [
    ("raise", "rank 1 failed: ValueError: deliberate failure in rank one", 1),
    ("exit", "rank 1 failed: sys.exit(3)", 3),
    ("kill", "rank 1 failed: killed by SIGKILL", 9),
])
def test_failing_rank_ends_job_and_is_named(tmp_path, script, mode, why, status):
    rc, out, err, seconds = dtrun("-n", "2", script, mode, cwd=tmp_path, timeout=90)
    assert rc == status, (out, err)
    assert why in err, err
    assert seconds < 30                                   # not a hang: the healthy rank was stopped
    assert "finished 0" not in out
    if mode == "raise":                                   # its traceback, once, without launcher frames
        report = err[err.index("dtrun: rank 1 failed"):]
        assert 'job.py", line' in report and "raise ValueError" in report
        assert err.count("Traceback (most recent call last)") == 1 and err.count("raise ValueError") == 1, err
        for machinery in ("runpy", "mpi4py", "launch/rank.py", "Abort("):
            assert machinery not in err, err


def test_timeout_stops_every_rank(tmp_path, script):
    rc, out, err, seconds = dtrun("-n", "2", "--timeout", "4", script, "hang", cwd=tmp_path, timeout=90)
    assert rc == 124, (out, err)
    assert "exceeded --timeout 4 s" in err and seconds < 25
    assert "KeyboardInterrupt" not in err                 # stopping on purpose is not reported as a crash


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


def test_ctrl_c_stops_every_rank(tmp_path, script):
    import signal
    import subprocess
    import time
    proc = subprocess.Popen([sys.executable, "-m", "launch", "-n", "2", script, "hang"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "[1] sum 1 of 2" not in seen and time.monotonic() < deadline:   # both ranks are up
            seen += proc.stdout.readline()
        assert "[1] sum 1 of 2" in seen
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and time.monotonic() - t0 < 15
        assert "interrupted; stopping all ranks" in err
    finally:
        if proc.poll() is None:
            proc.kill()
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert script not in ps                               # no rank left behind


# A stand-in for Open MPI's mpirun (no Open MPI here): it speaks the flags dtrun passes and writes
# each rank's output where Open MPI >= 4 puts it (--output-filename DIR -> DIR/1/rank.N/stdout).
FAKE_OPENMPI = """
import os, subprocess, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("mpirun (Open MPI) 4.1.5")
    sys.exit(0)
n, env, outdir, i = 1, dict(os.environ), None, 0
while i < len(args):
    a = args[i]
    if a == "-n":
        n, i = int(args[i + 1]), i + 2
    elif a == "-x":
        k, _, v = args[i + 1].partition("=")
        env[k], i = v, i + 2
    elif a == "--output-filename":
        outdir, i = args[i + 1], i + 2
    elif a in ("--timeout", "--host", "--hostfile"):
        i += 2
    elif a in ("--allow-run-as-root", "--oversubscribe"):
        i += 1
    else:
        break
procs = []
for r in range(n):
    d = os.path.join(outdir, "1", f"rank.{r}")
    os.makedirs(d, exist_ok=True)
    e = dict(env, OMPI_COMM_WORLD_RANK=str(r), OMPI_COMM_WORLD_SIZE=str(n))
    procs.append(subprocess.Popen(args[i:], env=e, stdout=open(os.path.join(d, "stdout"), "wb"),
                                  stderr=open(os.path.join(d, "stderr"), "wb")))
rcs = [p.wait() for p in procs]
bad = [(r, c) for r, c in enumerate(rcs) if c != 0]
if bad:
    print(f"Primary job terminated normally, but 1 process returned a non-zero exit code. process rank {bad[0][0]}")
    sys.exit(1)
"""

RANK_SCRIPT = """
import os, sys, time
r = int(os.environ["OMPI_COMM_WORLD_RANK"])
sys.stdout.write(f"rank {r} half / "); sys.stdout.flush(); time.sleep(0.05); print("rest", os.environ["MY_VAR"])
if r == 1 and sys.argv[1] == "raise":
    raise ValueError("open mpi boom")
"""


def test_openmpi_dialect_end_to_end_with_stand_in_mpirun(tmp_path):
    fake = write(tmp_path / "mpirun", f"#!{sys.executable}\n" + FAKE_OPENMPI)
    os.chmod(fake, 0o755)
    script = write(tmp_path / "s.py", RANK_SCRIPT)
    rc, out, err, _ = dtrun("--mpiexec", fake, "-n", "2", "--env", "MY_VAR=42", script, "ok", cwd=tmp_path, timeout=60)
    assert rc == 0, err
    assert sorted(out.splitlines()) == ["[0] rank 0 half / rest 42", "[1] rank 1 half / rest 42"]
    rc, out, err, _ = dtrun("--mpiexec", fake, "-n", "2", "--env", "MY_VAR=1", script, "raise", cwd=tmp_path,
                            timeout=60)
    assert rc == 1 and "dtrun: rank 1 failed: ValueError: open mpi boom" in err, err
