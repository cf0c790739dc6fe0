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
    time.sleep(0.5)       # mid-run
    os.kill(os.getpid(), 9)
if mode == "long":
    print("x" * 10000, flush=True)
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


def _whole_lines_of_both_ranks(out):
    lines = out.splitlines()
    for rank in (0, 1):
        for i in range(3):
            assert f"[{rank}] rank {rank} line {i} first half / second half {i}" in lines, out
        assert f"[{rank}] finished {rank}" in lines, out
    return lines


def test_two_ranks_whole_prefixed_lines(tmp_path, script, mpi_python):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    rc, out, err, _ = dtrun("-n", "2", script, "ok", "--flag", "x", cwd=tmp_path, timeout=120, python=mpi_python,
                            env={"OPENBLAS_NUM_THREADS": None, "TMPDIR": str(tmp)})
    assert rc == 0, err
    lines = _whole_lines_of_both_ranks(out)
    for rank in (0, 1):
        assert f"[{rank}] sum 1 of 2" in lines
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


def test_blame_line_names_the_blamed_rank_not_the_reporter(capsys):
    from launch import runner
    job = runner.Job(4, runner.Terminal(io.StringIO()))
    for rank, host in enumerate(("h0", "h0", "h1", "h1")):
        job.control(rank, f"pid {100 + rank} host {host}")
    job.control(0, "blame {not json")                                   # malformed: ignored
    job.control(0, "blame " + json.dumps({"ranks": [2, 3], "hosts": [], "reason": "stalled", "by": 0,
                                          "message": "no progress for 5 s in allreduce #12"}))
    job.control(0, "failed StallError: ranks 2, 3 have not joined allreduce #12")
    job.control(1, "blame " + json.dumps({"ranks": [1], "reason": "x", "by": 1}))   # later: not the headline
    assert runner.report_failure(job, [], "mpiexec: exit status 1", 1) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("dtrun: ranks 2, 3 (host h1) stalled: no progress for 5 s in allreduce #12; "
                                   "reported by rank 0"), err
    assert "rank 0 failed" not in err and "all 4 ranks were stopped" not in err
    job = runner.Job(2, runner.Terminal(io.StringIO()))
    job.control(1, "blame " + json.dumps({"ranks": [0], "hosts": ["hA"], "reason": "not responding", "by": 1}))
    runner.report_failure(job, [], "", 1)
    assert capsys.readouterr().err.splitlines()[0] == "dtrun: rank 0 (host hA) not responding; reported by rank 1"


BLAMING = """
import json, os, sys
import disttrain.distributed as dist
from launch.rank import control
dist.init()
if dist.get_rank() == 0:      # as the stall detector does: the reporter names the late rank, then fails
    control("blame " + json.dumps({"ranks": [1], "hosts": [], "reason": "stalled", "by": 0,
                                   "message": "rank 1 never joined barrier #1"}))
    raise RuntimeError("stall detected by rank 0")
import time; time.sleep(60)
"""


def test_blamed_rank_is_the_headline_end_to_end(tmp_path, mpi_python):
    script = write(tmp_path / "blame.py", BLAMING)
    rc, out, err, seconds = dtrun("-n", "2", script, cwd=tmp_path, timeout=90, python=mpi_python)
    assert rc == 1 and seconds < 30, (out, err)
    assert err.splitlines()[0] == f"dtrun: rank 1 (host {HOST}) stalled: rank 1 never joined barrier #1; " \
                                  "reported by rank 0", err


# A stand-in for ssh: `LAUNCHER -x HOST COMMAND...` runs COMMAND here, in a UTS namespace whose host
# name is HOST (Open MPI tells nodes apart by host name), under a shell that stays (as an ssh client
# would), and notes its pid per host so a test can "crash" that host.
FAKE_SSH = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -x|-q|-T) shift;; -o|-p|-l) shift 2;; *) break;; esac; done
host=$1; shift
echo $$ > "$(dirname "$0")/launcher-$host.pid"
echo "$host" >> "$(dirname "$0")/launched.log"
if [ "$host" = "$FAKE_SSH_PRIVATE_HOST" ]; then
    # this host shares no filesystem with dtrun's for these directories: empty ones hide them
    mounts=""
    for dir in $FAKE_SSH_PRIVATE_DIRS; do mounts="$mounts mount -t tmpfs none $dir &&"; done
    exec unshare --uts --mount /bin/sh -c "hostname $host && $mounts $*"
fi
unshare --uts /bin/sh -c "hostname $host && $*"
"""


def _fake_ssh(tmp_path):
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"hosts need their own host names (unshare --uts), not possible here: {probe.stderr.strip()}")
    path = write(tmp_path / "fake-ssh", FAKE_SSH)
    os.chmod(path, 0o755)
    return ["--launcher", "ssh", "--launcher-exec", path]


def test_output_of_a_host_that_cannot_see_the_output_directory(tmp_path, script, mpi_python):
    # h1 shares no filesystem with dtrun for its temporary directory: its ranks' lines (and their
    # control lines: failure reports, pid and host) travel through mpiexec
    private = tmp_path / "tmp"
    private.mkdir()
    env = {"TMPDIR": str(private), "FAKE_SSH_PRIVATE_HOST": "h1", "FAKE_SSH_PRIVATE_DIRS": str(private)}
    rc, out, err, _ = dtrun("-n", "2", "-H", "h0:1,h1:1", *_fake_ssh(tmp_path), script, "long", cwd=tmp_path,
                            timeout=120, python=mpi_python, env=env)
    assert rc == 0, err
    lines = _whole_lines_of_both_ranks(out)
    assert "[1] torchrun 1 2 0 1 1 h0 29500" in lines and f"[1] {'x' * 10000}" in lines, out   # sent in pieces
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines) and err == "", (out, err)
    rc, out, err, _ = dtrun("-n", "2", "-H", "h0:1,h1:1", *_fake_ssh(tmp_path), script, "raise", cwd=tmp_path,
                            timeout=120, python=mpi_python, env=env)
    assert rc == 1 and err.startswith("dtrun: rank 1 (host h1) failed: ValueError: deliberate failure"), err
    assert "  [1]     raise ValueError(\"deliberate failure in rank one\")" in err.splitlines(), err
    assert [n for n in os.listdir(private) if n.startswith("dtrun-io-")] == []


def _an_interface_besides_lo():
    names = sorted(n for n in os.listdir("/sys/class/net") if n != "lo" and
                   open(f"/sys/class/net/{n}/operstate").read().strip() == "up")
    if not names:
        pytest.skip("no network interface besides lo is up (Open MPI's TCP transport does not use lo)")
    return names[0]


def _descendants(pid):
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(k) for k in kids] + [d for k in kids for d in _descendants(int(k))]


def test_multi_host_through_launcher_exec(tmp_path, script, mpi_python):
    # mpiexec starts a proxy/daemon per host through the launcher; the fake runs it here (with the
    # host's name), so placement, variables, TCP and the failure reports are the real ones.
    iface = "lo" if mpi_python == sys.executable else _an_interface_besides_lo()   # Open MPI's TCP skips lo
    rc, out, err, _ = dtrun("-n", "4", "-H", "h0:2,h1:2", *_fake_ssh(tmp_path), "--iface", iface, "--force-tcp",
                            script, "ok", cwd=tmp_path, timeout=120, python=mpi_python)
    assert rc == 0, err
    assert sorted(open(tmp_path / "launched.log").read().split()) == ["h0", "h1"]
    for rank in range(4):
        assert f"[{rank}] torchrun {rank} 4 {rank % 2} 2 {rank // 2} h0 29500" in out.splitlines(), out
        assert f"[{rank}] sum 6 of 4" in out.splitlines()
    # kill -9 of a rank on the remote host: named with its host and signal
    rc, out, err, seconds = dtrun("-n", "2", "-H", "h0:1,h1:1", *_fake_ssh(tmp_path), script, "kill",
                                  cwd=tmp_path, timeout=120, python=mpi_python)
    if mpi_python == sys.executable:
        assert rc == 128 + 9 and "dtrun: rank 1 (host h1) failed: killed by SIGKILL" in err, (rc, err)
    else:   # Open MPI: rank 0 may see the connection close (and abort) before the daemon reports the
        # signal; then the rank that vanished first is named if dtrun saw it, and rank 0 never is
        headline = err.splitlines()[0]
        assert rc != 0 and not headline.startswith("dtrun: rank 0"), (rc, err)
        assert headline.startswith(("dtrun: rank 1 (host h1) failed: killed", "dtrun: the job failed")), err


def test_lost_host_is_named(tmp_path, script, mpi_python):
    proc, lines = _start(["-n", "4", "-H", "h0:2,h1:2", *_fake_ssh(tmp_path), script, "hang"], tmp_path, mpi_python)
    try:
        _wait_for(lines, "[3] sum 6 of 4")
        # the host "crashes": everything started on it dies (the ssh client then exits)
        host_pids = _descendants(int(open(tmp_path / "launcher-h1.pid").read()))
        for pid in host_pids:
            os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 <= 5 and proc.returncode != 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    headline = err.splitlines()[0]
    # which processes die first is a race the watcher usually wins; when it cannot tell, it says so
    assert headline.startswith(("dtrun: lost host h1 and its ranks 2, 3 (host down",
                                "dtrun: the job failed: mpiexec lost contact with a host (h0: ranks 0, 1; "
                                "h1: ranks 2, 3)")) or \
        re.fullmatch(r"dtrun: rank [23] \(host h1\) failed: killed \(.*or its host went down\)", headline), err
    assert _wait_gone(script, 5) == []


@pytest.mark.parametrize("how", ["SIGHUP", "SIGKILL"])
def test_stopping_dtrun_stops_every_host(tmp_path, script, mpi_python, how):
    proc, lines = _start(["-n", "4", "-H", "h0:2,h1:2", *_fake_ssh(tmp_path), script, "hang"], tmp_path, mpi_python)
    try:
        _wait_for(lines, "[3] sum 6 of 4")
        proc.send_signal(getattr(signal, how))
        proc.wait(timeout=30)
        # SIGHUP: dtrun stops the job itself; SIGKILL: mpiexec's parent-death signal does
        assert _wait_gone(script, 5) == [], f"ranks still running 5 s after {how} to dtrun"
        if how == "SIGHUP":
            assert proc.returncode == 128 + signal.SIGHUP
    finally:
        if proc.poll() is None:
            proc.kill()
        for line in _rank_processes(script):
            os.kill(int(line.split()[0]), signal.SIGKILL)


def _dummy_ranks(n):
    """Processes whose command line says launch.rank, as the death watch checks (once they have started:
    a rank sends its pid from its own code)."""
    from launch import runner
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "launch.rank"]) for _ in range(n)]
    deadline = time.monotonic() + 30
    while not all(runner._is_rank_process(p.pid) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    return procs


@pytest.mark.parametrize("case", ["one_rank", "whole_host", "remote_ranks_unseen"])
def test_death_watch_names_the_first_rank_or_the_lost_host(case):
    from launch import runner
    procs = _dummy_ranks(4 if case != "remote_ranks_unseen" else 2)
    try:
        nprocs = 4
        job = runner.Job(nprocs, runner.Terminal(io.StringIO()))
        for rank in range(nprocs):
            pid = procs[rank].pid if rank < len(procs) else 999999999 - rank      # not on this machine
            job.control(rank, f"pid {pid} host {'h0' if rank < 2 else 'h1'}")
        watch = runner.DeathWatch(job)
        watch.start()
        time.sleep(0.2)
        victims = {"one_rank": [procs[1]], "whole_host": procs[2:], "remote_ranks_unseen": [procs[0]]}[case]
        for p in victims:
            p.kill()
            p.wait()
        watch.join(timeout=5)
        assert not watch.is_alive()
        expected = {"one_rank": [(1, None)], "whole_host": [(2, "h1"), (None, "h1")],   # (both seen at once)
                    "remote_ranks_unseen": [(None, None)]}[case]
        assert (watch.first_dead, watch.lost_host) in expected
    finally:
        for p in procs:
            p.kill()
            p.wait()
