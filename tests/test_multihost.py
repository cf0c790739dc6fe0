"""Multi-host jobs on two network-namespace hosts (tests/netns.py), over TCP, on MPICH and Open MPI 5.

Each test runs `dtrun -n 4 --hosts h0:2,h1:2` inside host h0; tests/nsexec.sh is the launcher
(what ssh is on a cluster). The failure drills kill a rank, a whole host or the link mid-run and
time how long the whole job takes to end, and check that no process is left on either host.
"""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = os.path.join(REPO, "tests", "mpi", "multihost_cases.py")
STALL_TIMEOUT = 3.0

_why_not = netns.unavailable()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=f"no namespace hosts: {_why_not}")


@pytest.fixture(scope="module")
def hosts():
    h = netns.NetnsHosts(2)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def cluster(hosts):
    """The two hosts, link up; every process left in them is killed (by pid) after the test."""
    hosts.link(True)
    try:
        yield hosts
    finally:
        hosts.kill_all()
        hosts.link(True)


def dtrun_argv(python, *args, stall_timeout=STALL_TIMEOUT):
    return [python, "-m", "launch", "-n", "4", "--hosts", "h0:2,h1:2", "--launcher", "ssh",
            "--launcher-exec", netns.NSEXEC, "--iface", "veth0", "--force-tcp", "--timeout", "60",
            "--env", f"DISTTRAIN_STALL_TIMEOUT={stall_timeout:g}", *map(str, args)]


def _env(cluster, **extra):
    env = cluster.env(**extra)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")   # the Open MPI venv runs this checkout
    env.pop("DISTTRAIN_STALL_TIMEOUT", None)
    return env


def test_traffic_crosses_the_veth_and_sums_are_right(cluster, mpi_python):
    rx0, tx0 = cluster.veth_bytes("h0")
    p = cluster.run("h0", dtrun_argv(mpi_python, CASES, "sum"), env=_env(cluster), cwd=REPO,
                    capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    found = sorted(re.findall(r"SUM rank=(\d) host=(h\d) value=(\S+)", p.stdout))
    assert found == [("0", "h0", "10"), ("1", "h0", "10"), ("2", "h1", "10"), ("3", "h1", "10")], p.stdout
    rx1, tx1 = cluster.veth_bytes("h0")
    # the 800 kB allreduce went over TCP between the hosts (not through shared memory)
    assert rx1 - rx0 > 400_000 and tx1 - tx0 > 400_000, (rx1 - rx0, tx1 - tx0)


class Drill:
    """A 4-rank job looping over allreduces; the test breaks something and times the end."""

    def __init__(self, cluster, python):
        self.cluster = cluster
        self.proc = cluster.popen("h0", dtrun_argv(python, CASES, "loop"), env=_env(cluster), cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pids = {}
        deadline = time.monotonic() + 60
        while len(self.pids) < 4 and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"UP rank (\d) pid (\d+) host (h\d)", line)
            if m:
                self.pids[int(m.group(1))] = (int(m.group(2)), m.group(3))
        if len(self.pids) < 4:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the job did not start on both hosts: {self.pids}\n{out}\n{err}")

    def ended(self, t_break, bound):
        """Wait for dtrun to end; returns (rc, stdout, stderr, seconds since the break); also waits
        (up to `bound` s after the break) for every process on both hosts to be gone."""
        try:
            out, err = self.proc.communicate(timeout=bound + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"dtrun did not end {bound + 30:.0f} s after the break:\n{out}\n{err}")
        secs = time.monotonic() - t_break
        left = self.cluster.processes()
        while left and time.monotonic() - t_break < bound:
            time.sleep(0.1)
            left = self.cluster.processes()
        gone = time.monotonic() - t_break
        print(f"drill: dtrun ended {secs:.2f} s after the break (rc {self.proc.returncode}); "
              f"every process gone after {gone:.2f} s")
        assert not left, f"processes left {gone:.1f} s after the break: {left}\n{out}\n{err}"
        return self.proc.returncode, out, err, secs


def _headline(ok, mpi_python, err):
    """dtrun's account of the failure (the launcher's part). Known gap: under Open MPI, dtrun does not
    yet name the rank/host/signal of a remote death (it cannot see remote pids; prterun's own message
    names the wrong rank or exits 0). The job still ends in time and leaves nothing behind (asserted
    before this)."""
    if not ok and mpi_python != sys.executable:
        pytest.xfail(f"dtrun's headline under Open MPI does not name the remote failure yet:\n{err}")
    assert ok, err


def test_kill_9_of_a_remote_rank_ends_the_job_naming_rank_host_and_signal(cluster, mpi_python):
    drill = Drill(cluster, mpi_python)
    pid, host = drill.pids[3]
    assert host == "h1"
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    rc, out, err, secs = drill.ended(t, 5.0)
    assert secs <= 5.0, (rc, secs, err)
    _headline(rc != 0 and "rank 3" in err and "h1" in err and "SIGKILL" in err, mpi_python, err)


def test_losing_every_process_of_the_remote_host_ends_the_job_naming_host_and_ranks(cluster, mpi_python):
    drill = Drill(cluster, mpi_python)
    t = time.monotonic()
    for pid in cluster.pids("h1"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    rc, out, err, secs = drill.ended(t, 5.0)
    assert secs <= 5.0, (rc, secs, err)
    _headline(rc != 0 and "h1" in err and re.search(r"ranks 2, 3|ranks \[2, 3\]", err), mpi_python, err)


def test_cut_link_names_the_unreachable_host_and_every_process_ends(cluster, mpi_python):
    drill = Drill(cluster, mpi_python)
    t = time.monotonic()
    cluster.link(False)
    rc, out, err, secs = drill.ended(t, STALL_TIMEOUT + 10)
    assert rc != 0 and secs <= STALL_TIMEOUT + 10, (rc, secs, err)
    # the stall report, from a rank on h0, names the silent host and its ranks ...
    assert "host h1 (ranks [2, 3]) is not responding: unreachable or down" in err, err
    # ... and dtrun's headline blames them, not the reporter
    headline = [l for l in err.splitlines() if l.startswith("dtrun: ")][0]
    assert "ranks 2, 3" in headline and "h1" in headline and "stall" in headline, err
    assert not re.search(r"dtrun: rank [01]\b.*failed", err), err



DIGITS = [os.path.join(REPO, "configs", "digits_mlp.toml"), "--set", "train.epochs=2"]
METRICS = ("steps", "final_val_loss", "final_val_accuracy", "best_val_accuracy")


def _summary(run_dir):
    import json
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    return {k: s[k] for k in METRICS}


@pytest.fixture(scope="module")
def one_host_digits(tmp_path_factory):
    """configs/digits_mlp.toml on 4 ranks of this machine (no namespaces): the reference."""
    run_dir = tmp_path_factory.mktemp("one-host") / "run"
    p = subprocess.run([sys.executable, "-m", "launch", "-n", "4", *DIGITS, "--run-dir", str(run_dir)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return _summary(run_dir)


def _two_host_digits(cluster, tmp_path, one_host_digits, noshare):
    runs = tmp_path / "runs"
    runs.mkdir()
    env = _env(cluster, noshare=["h1"] if noshare else (), noshare_dir=str(runs))
    p = cluster.run("h0", dtrun_argv(sys.executable, *DIGITS, "--run-dir", runs / "run"), env=env, cwd=REPO,
                    capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    got = _summary(runs / "run")
    assert got["steps"] == one_host_digits["steps"]
    assert got["final_val_accuracy"] == one_host_digits["final_val_accuracy"], (got, one_host_digits)
    assert got["final_val_loss"] == pytest.approx(one_host_digits["final_val_loss"], rel=1e-6), (got, one_host_digits)


def test_digits_on_two_hosts_matches_four_ranks_on_one(cluster, tmp_path, one_host_digits):
    rx0, _ = cluster.veth_bytes("h0")
    _two_host_digits(cluster, tmp_path, one_host_digits, noshare=False)
    assert cluster.veth_bytes("h0")[0] - rx0 > 100_000       # the gradients crossed the veth


def test_digits_on_two_hosts_without_a_shared_run_directory(cluster, tmp_path, one_host_digits):
    # host h1 sees an empty tmpfs where the run directory is: only rank 0 may read it
    _two_host_digits(cluster, tmp_path, one_host_digits, noshare=True)


def test_sharded_node_shared_on_two_hosts_matches_one_host(cluster, tmp_path):
    """Issue 11: the sharded optimizer's node-shared path across two namespace hosts (2 nodes x 2 local
    ranks: node-local reduction in shared memory + a cross-node allreduce per slice) gives the results
    of the same job on 4 ranks of one node (one node, 4 local ranks)."""
    shard = ["--set", "distributed.shard_optimizer=true"]
    ref = tmp_path / "one-host"
    p = subprocess.run([sys.executable, "-m", "launch", "-n", "4", *DIGITS, *shard, "--run-dir", str(ref)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "node-shared, 4 rank(s) per node x 1 node(s)" in p.stdout, p.stdout
    runs = tmp_path / "runs"
    runs.mkdir()
    rx0, _ = cluster.veth_bytes("h0")
    p = cluster.run("h0", dtrun_argv(sys.executable, *DIGITS, *shard, "--run-dir", runs / "run"), env=_env(cluster),
                    cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert cluster.veth_bytes("h0")[0] - rx0 > 50_000       # the slices crossed the veth
    assert "node-shared, 2 rank(s) per node x 2 node(s)" in p.stdout, p.stdout     # the hierarchical path
    got, want = _summary(runs / "run"), _summary(ref)
    assert got["steps"] == want["steps"]
    # the same sums in another order (2 nodes x 2 vs 1 node x 4): float32 rounding apart
    assert got["final_val_loss"] == pytest.approx(want["final_val_loss"], rel=1e-4), (got, want)
    assert abs(got["final_val_accuracy"] - want["final_val_accuracy"]) <= 2 / 360 + 1e-9, (got, want)
