"""Running mpiexec: per-rank output with whole-line `[rank]` prefixes, failure reports,
a wall-time watchdog and Ctrl-C that stops every rank."""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import mpi
from .rank import CONTROL, FORWARD, is_machinery

POLL_S = 0.05
TAIL_LINES = 40


class Terminal:
    """Rank 0's progress bar lives on the launcher's terminal: ranks send it as control
    lines, and ordinary lines are printed above it."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.bar = ""
        self.lock = threading.Lock()

    def line(self, text, stream=None):
        stream = stream or self.stream
        with self.lock:
            if self.bar and self.tty:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            stream.write(text + "\n")
            stream.flush()
            if self.bar and self.tty:
                self.stream.write(self.bar)
                self.stream.flush()

    def progress(self, text):
        if not self.tty:      # ranks are told to log plain lines then; be safe anyway
            return
        with self.lock:
            self.bar = text
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()

    def end_progress(self):
        with self.lock:
            if self.bar and self.tty:
                self.stream.write("\n")
                self.stream.flush()
            self.bar = ""


class _LineTail:
    """Reads a growing file and hands each whole line to take()."""
    fh = None
    partial = b""

    def poll(self, final=False):
        if not self.ready():
            return
        data = self.fh.read()
        if data:
            self.partial += data
            *complete, self.partial = self.partial.split(b"\n")
            for raw in complete:
                self.take(raw.decode("utf-8", "replace"))
        if final and self.partial:
            self.take(self.partial.decode("utf-8", "replace"))
            self.partial = b""

    def close(self):
        if self.fh:
            self.fh.close()


class RankStream(_LineTail):
    """Tails one rank's output file and emits whole lines, prefixed with the rank."""

    def __init__(self, rank, kind, path_fn, term, job):
        self.rank, self.kind, self.path_fn, self.term, self.job = rank, kind, path_fn, term, job
        self.path = None
        self.lines = []         # kept for the failure report (stderr only)

    def ready(self):
        if self.fh is None:
            self.path = self.path_fn()
            if not self.path or not os.path.exists(self.path):
                return False
            self.fh = open(self.path, "rb")
        return True

    def emit(self, text):
        text = text.rstrip("\r")
        if text.startswith(CONTROL):
            self.job.control(self.rank, text[len(CONTROL):])
            return
        if self.kind == "err":
            self.lines.append(text)
            if len(self.lines) > 400:
                del self.lines[:200]
            if self.job.quiet:      # stopping on purpose: the ranks' KeyboardInterrupt tracebacks are noise
                return
            if text.startswith("Abort(") and self.job.reported(self.rank):
                return              # MPICH's note that the rank aborted: the failure report says it
        self.term.line(f"[{self.rank}] {text}", sys.stderr if self.kind == "err" else sys.stdout)

    take = emit


class MpiexecStream(_LineTail):
    """Tails mpiexec's own output: its messages are kept for the failure report; lines ranks forward
    through it (launch.rank.forward_output, hosts that cannot see the output directory) go to
    their rank's stream, as if read from its file."""

    def __init__(self, path, streams):
        self.fh = open(path, "rb")
        self.streams = {(s.rank, s.kind): s for s in streams}
        self.lines = []

    def ready(self):
        return True

    def take(self, text):
        m = re.match(re.escape(FORWARD) + r"(\d+) (out|err)(\+?) (.*)$", text, re.S) if FORWARD in text else None
        stream = self.streams.get((int(m.group(1)), m.group(2))) if m else None
        if stream is None:
            self.lines.append(text)
        elif m.group(3):                    # a piece of a longer line
            stream.partial += m.group(4).encode("utf-8")
        else:
            stream.emit((stream.partial + m.group(4).encode("utf-8")).decode("utf-8", "replace"))
            stream.partial = b""

    def text(self):
        return "\n".join(self.lines)

    def close(self):
        self.fh.close()


class Job:
    def __init__(self, nprocs, term):
        self.nprocs = nprocs
        self.term = term
        self.pids = {}            # pid -> rank, from the ranks' control lines (ranks on this machine)
        self.host_pids = {}       # (host, pid) -> rank, every rank
        self.hosts = {}           # rank -> host it runs on
        self.blames = []          # (rank that reported, blame dict), in the order they arrived
        self.failures = []        # (time, rank, why), in the order they arrived
        self.quiet = False
        self.tracebacks = {}      # rank -> traceback lines sent as control lines
        self.done = set()         # ranks whose code returned normally

    def failures_of(self, rank):
        return next((why for _, r, why in self.failures if r == rank), None)

    def reported(self, rank):
        return any(r == rank for _, r, _ in self.failures)

    def control(self, rank, message):
        kind, _, rest = message.partition(" ")
        if kind == "pid":                   # "pid 1234 host h1"
            words = rest.split()
            if words and words[0].isdigit():
                host = words[2] if len(words) >= 3 and words[1] == "host" else None
                if _is_rank_process(int(words[0])):     # on this machine (or a namespace "host" of it)
                    self.pids[int(words[0])] = rank
                if host is not None:
                    self.hosts[rank] = host
                    self.host_pids[(host, int(words[0]))] = rank
        elif kind == "blame":
            blame = parse_blame(rest, rank)
            if blame:
                self.blames.append((rank, blame))
        elif kind == "failed":
            self.failures.append((time.monotonic(), rank, rest))
        elif kind == "done":
            self.done.add(rank)
        elif kind == "tb":
            self.tracebacks.setdefault(rank, []).append(rest)
        elif kind == "progress":
            self.term.progress(rest)
        elif kind == "progress-end":
            self.term.end_progress()


def parse_blame(text, reporter):
    """`blame {"ranks": [1], "hosts": ["h1"], "reason": "stalled", "by": 0, "message": "..."}`: a rank
    saying which ranks are at fault (e.g. the stall detector naming the rank that never arrived).
    Returns the dict with checked types, or None for a malformed line."""
    try:
        data = json.loads(text)
        ranks = [int(r) for r in data.get("ranks", [])]
        hosts = [str(h) for h in data.get("hosts", [])]
        by = int(data.get("by", reporter))
    except (ValueError, TypeError, AttributeError):
        return None
    if not ranks and not hosts:
        return None
    return dict(ranks=ranks, hosts=hosts, reason=str(data.get("reason") or "failed"), by=by,
                message=str(data.get("message") or ""))


def _is_rank_process(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"launch.rank" in f.read()
    except OSError:
        return False


def _alive(pid):
    """False once a (local) process has exited, zombie included."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class DeathWatch(threading.Thread):
    """Notes which rank exits first, when this machine can see every rank's process (a one-host job;
    network-namespace "hosts" of this machine too). Hydra's 'BAD TERMINATION' banner may name any of the ranks
    it killed during cleanup; the first to vanish is the one that failed. When every rank of one host
    of several vanishes at once, that host was lost (mpiexec then only says a connection closed)."""

    def __init__(self, job, interval=0.005):
        super().__init__(daemon=True)
        self.job, self.interval = job, interval
        self.first_dead = None
        self.lost_host = None
        self.stop_flag = threading.Event()

    def run(self):
        if not os.path.isdir("/proc"):
            return
        fds = {}                # pid -> pidfd, which turns readable the moment the process ends
        poller = select.poll() if hasattr(os, "pidfd_open") else None
        try:
            while not self.stop_flag.is_set():
                if poller is not None:
                    for pid in list(self.job.pids):
                        if pid not in fds:
                            try:
                                fds[pid] = os.pidfd_open(pid)
                                poller.register(fds[pid], select.POLLIN)
                            except OSError:
                                fds[pid] = None
                    poller.poll(self.interval * 10 * 1000)
                else:
                    self.stop_flag.wait(self.interval)
                self._check()
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)

    def _dead(self):
        return [rank for pid, rank in list(self.job.pids.items())
                if rank not in self.job.done and not _alive(pid)]

    def _check(self, settle=0.5, step=0.005):
        first = self._dead()
        if not first:
            return
        if len(self.job.pids) < self.job.nprocs:
            # some ranks run where this machine cannot see them: a death seen here may be mpiexec's
            # clean-up after one there, so it proves nothing
            self.stop_flag.set()
            return
        if len(first) == 1:
            self.first_dead = first[0]
        # A lost host's processes die within moments of each other (kill -9 goes one pid at a time),
        # before mpiexec's clean-up reaches the other hosts. Note when each rank is first seen gone
        # for a while, then: a host (of 2+ ranks: one rank alone may just have been killed) whose
        # ranks were all gone before any rank of another host died was lost. (A single rank killed by
        # a signal can look alike when its host's proxy cleans up first; mpiexec's banner then names
        # the signal, and the report believes the banner.)
        t0 = time.monotonic()
        died = dict.fromkeys(first, t0)
        while time.monotonic() < t0 + settle and len(died) < len(self.job.hosts):
            time.sleep(step)
            now = time.monotonic()
            for r in self._dead():
                died.setdefault(r, now)
        hosts = self.job.hosts
        for host in set(hosts.values()):
            on_host = {r for r, h in hosts.items() if h == host}
            others = [t for r, t in died.items() if r not in on_host]
            if (len(on_host) >= 2 and set(first) <= on_host and on_host <= set(died)
                    and max(died[r] for r in on_host) < min(others, default=float("inf"))):
                self.lost_host = host
        self.stop_flag.set()


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc, grace=3.0):
    """SIGINT (mpiexec forwards it to every rank), then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        if sig == signal.SIGINT:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
        else:
            _signal_group(proc, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # ranks started by a local Hydra proxy share mpiexec's process group
    _signal_group(proc, signal.SIGKILL)


def _rank_from_mpiexec_output(text, pids, host_pids=None):
    host_pids = host_pids or {}
    # Open MPI names the rank that died; a rank 'calling "abort"' without having said why (launch.rank
    # reports every failure it sees) aborted because it lost a peer: not the one to blame
    m = re.search(r"process rank (\d+) with PID \d+ on node \S+ (?:exited|killed|was killed)", " ".join(text.split()))
    if m:
        return int(m.group(1))
    m = re.search(r"RANK (\d+) PID", text)               # newer Hydra banners
    if m:
        return int(m.group(1))
    for pid, host in re.findall(r"PID (\d+) RUNNING AT (\S+)", text):  # Hydra banner
        if (host, int(pid)) in host_pids:
            return host_pids[(host, int(pid))]
        if int(pid) in pids:
            return pids[int(pid)]
    return None


def _rank_from_abort_lines(err_streams):
    """MPICH prints 'application called MPI_Abort(MPI_COMM_WORLD, 3) - process 1' on the aborting rank."""
    for s in err_streams:
        for line in s.lines:
            m = re.search(r"called MPI_Abort\(.*\) - process (\d+)", line)
            if m:
                return int(m.group(1))
    return None


def _signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _traceback_tail(lines):
    """The last traceback in a rank's stderr (or its last lines)."""
    start = None
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            start = i
    body = lines[start:] if start is not None else lines[-10:]
    out, skipping = [], False
    for line in body:
        if line.startswith("Abort("):
            continue
        if line.startswith("  File "):
            # frames of the launch machinery (runpy, mpi4py, launch.rank) say nothing about the bug
            m = re.match(r'  File "(.*)", line', line)
            skipping = bool(m) and is_machinery(m.group(1))
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            out.append(line)
    return out[-TAIL_LINES:]



def _parent_death_signal():
    """A function for mpiexec's child to run before exec: SIGTERM it when dtrun dies, even by SIGKILL, so
    mpiexec tears the job down on every host instead of running on unsupervised (Linux; elsewhere
    None). prctl is looked up here, in dtrun: the child after fork only calls it."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm():
        prctl(1, int(signal.SIGTERM), 0, 0, 0)     # PR_SET_PDEATHSIG
        if os.getppid() != parent:                  # dtrun died before that took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def run(argv, launcher_env, nprocs, io_dir, timeout=None):
    """Run mpiexec to completion; return the exit status dtrun should exit with."""
    term = Terminal()
    job = Job(nprocs, term)
    env = dict(os.environ)
    env.update(launcher_env)
    streams = []
    for rank in range(nprocs):
        for i, kind in ((0, "out"), (1, "err")):
            streams.append(RankStream(
                rank, kind, (lambda r=rank, i=i: mpi.rank_output_paths(io_dir, r)[i]), term, job))
    log_path = os.path.join(io_dir, "mpiexec.log")
    start = time.monotonic()
    try:
        with open(log_path, "wb") as mpiexec_log:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=mpiexec_log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_parent_death_signal())
    except OSError as exc:
        raise mpi.LaunchError(f"cannot start {argv[0]}: {exc}") from None
    streams.append(MpiexecStream(log_path, streams))

    stopping = {"why": None}

    def on_signal(signum, frame):
        if stopping["why"] is None:
            stopping["why"] = "interrupted"
            stopping["signal"] = signum
            job.quiet = True

            def announce_and_stop():
                # not in the handler itself: it runs in the main thread, which may hold term's lock
                term.line(f"dtrun: {_signal_name(signum)}: stopping all ranks" if signum != signal.SIGINT
                          else "dtrun: interrupted; stopping all ranks", sys.stderr)
                stop(proc)
            threading.Thread(target=announce_and_stop, daemon=True).start()
        else:   # a second Ctrl-C: no more patience
            _signal_group(proc, signal.SIGKILL)

    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    first_failure_seen = None
    watch = DeathWatch(job)
    watch.start()
    try:
        while True:
            for s in streams:
                s.poll()
            rc = proc.poll()
            if rc is not None:
                break
            now = time.monotonic()
            if timeout and now - start > timeout and stopping["why"] is None:
                stopping["why"] = "timeout"
                job.quiet = True
                term.line(f"dtrun: the job exceeded --timeout {timeout:g} s; stopping all ranks", sys.stderr)
                threading.Thread(target=stop, args=(proc,), daemon=True).start()
            # A rank reported a failure and called MPI_Abort: make sure the job ends soon even if
            # the abort did not reach every rank.
            if job.failures and stopping["why"] is None:     # (a blame alone may be a warning)
                if first_failure_seen is None:
                    first_failure_seen = now
                elif now - first_failure_seen > FAILURE_GRACE_S:
                    stopping["why"] = "failure"
                    job.quiet = True
                    # the job has failed already: no graceful minutes for it (measured: Open MPI's
                    # prterun ignores SIGINT/SIGTERM while a host it must clean up is unreachable)
                    threading.Thread(target=stop, args=(proc, 1.0), daemon=True).start()
            time.sleep(POLL_S)
        for s in streams:
            s.poll(final=True)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in streams:
            s.close()
        term.end_progress()
    watch.join(timeout=0.5)         # it may be settling on who died first
    watch.stop_flag.set()
    mpiexec_text = streams[-1].text()
    streams = streams[:-1]
    elapsed = time.monotonic() - start

    if rc == 0 and stopping["why"] is None:
        # Every rank said where it runs; one that never said it finished ended without finishing, even
        # though mpiexec says 0 (measured: Open MPI's prterun exits 0 after losing a whole host).
        # (Every rank reports its host at start, remote ones too; a rank may end with os._exit(0) or lose
        # its control line, so one missing 'done' alone is no failure: a whole host missing is.)
        unfinished = sorted(set(job.hosts) - job.done) if len(job.hosts) == nprocs else []
        if unfinished and _whole_hosts(job, unfinished):
            return report_unfinished(job, unfinished, mpiexec_text, watch.first_dead, watch.lost_host)
        return 0
    if stopping["why"] == "interrupted":
        return 128 + stopping["signal"]         # 130 for Ctrl-C, as shells report it
    if stopping["why"] == "timeout" or (timeout and elapsed >= timeout and "timeout" in mpiexec_text.lower()):
        sys.stderr.write(f"dtrun: job stopped after {elapsed:.1f} s (--timeout {timeout:g}).\n")
        return 124
    # a rank that finished cleanly is not the one that failed, nor part of a lost host
    first_dead = watch.first_dead if watch.first_dead not in job.done else None
    lost = watch.lost_host if not any(job.hosts.get(r) == watch.lost_host for r in job.done) else None
    return report_failure(job, streams, mpiexec_text, rc, first_dead, lost)


FAILURE_GRACE_S = 3.0


def _banner_signal(text):
    """The signal mpiexec says a rank died of: Hydra 'EXIT STRING: Killed (signal 9)' or 'KILLED BY
    SIGNAL: 9', Open MPI 'exited on signal 9 (Killed)'."""
    m = re.search(r"(?:KILLED BY SIGNAL:|exited on signal|\(signal) (\d+)", text)
    return int(m.group(1)) if m else None


def _ranks(ranks):
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _who(job, ranks, hosts=()):
    """'rank 1 (host h1)', 'ranks 2, 3 (host h1)' ..."""
    ranks = list(ranks)
    hosts = list(hosts) or list(dict.fromkeys(job.hosts[r] for r in ranks if r in job.hosts))
    text = _ranks(ranks) if ranks else ""
    if hosts:
        where = ("host " if len(hosts) == 1 else "hosts ") + ", ".join(hosts)
        text = f"{text} ({where})" if text else where
    return text


def _lost_host(job, flat, first_dead, seen):
    """The host a multi-host job lost, if it can be told: the one Open MPI names ('Remote daemon: [...]
    on node H'), the one the death watch saw go first as a whole, or (mpiexec naming no exit code or
    signal: its proxy there died too) the host of the first rank seen gone, if it ran 2+ ranks."""
    hosts = set(job.hosts.values())
    if len(hosts) < 2:
        return None
    m = re.search(r"Remote daemon: \[[^\]]*\] on node (\S+)", flat)
    if m and m.group(1) in hosts:
        return m.group(1)
    if "prterun" in flat or "PRTE" in flat:
        # Open MPI names a lost daemon itself (above); its ranks abort on a peer's death too fast for the
        # order of deaths to tell a lost host from one killed rank
        return None
    if seen:
        return seen
    host = job.hosts.get(first_dead)
    if host and sum(1 for h in job.hosts.values() if h == host) >= 2:
        return host
    return None


def _whole_hosts(job, ranks):
    """The hosts of a multi-host job all of whose ranks are among `ranks`."""
    hosts = set(job.hosts.values())
    if len(hosts) < 2:
        return []
    return sorted(h for h in hosts if {r for r, x in job.hosts.items() if x == h} <= set(ranks))


def report_unfinished(job, ranks, mpiexec_text, first_dead=None, lost_host=None):
    """mpiexec exited 0 but `ranks` never finished: name them (or their host, if it lost all its ranks)."""
    out = sys.stderr
    lost = _lost_host(job, " ".join(mpiexec_text.split()), first_dead, lost_host)
    if lost:
        on_host = [r for r, h in sorted(job.hosts.items()) if h == lost]
        out.write(f"dtrun: lost host {lost} and its {_ranks(on_host)} (host down, unreachable, or every process on "
                  "it killed); mpiexec exited 0 without every rank finishing\n")
    else:
        out.write(f"dtrun: {_who(job, ranks)} ended without finishing and without an error (a signal such as "
                  "SIGKILL, or its host went down); mpiexec exited 0\n")
    tail = mpiexec_text.strip().splitlines()[-TAIL_LINES:]
    if tail:
        out.write("dtrun: mpiexec said:\n" + "".join(f"  {line}\n" for line in tail))
    out.flush()
    return 1


def report_failure(job, streams, mpiexec_text, rc, first_dead=None, lost_host=None):
    """Print why the job failed, naming the rank at fault (and its host); return dtrun's exit status."""
    err = {s.rank: s for s in streams if s.kind == "err"}
    out = sys.stderr
    flat = " ".join(mpiexec_text.split())         # Open MPI wraps its messages
    status = rc if rc and rc > 0 else 1
    sig = _banner_signal(flat)
    if job.blames:                                # a rank named who is at fault: believe it, not the reporter
        reporter, b = job.blames[0]
        out.write(f"dtrun: {_who(job, b['ranks'], b['hosts'])} {b['reason']}" +
                  (f": {b['message']}" if b["message"] else "") + f"; reported by rank {b['by']}\n")
        for r in b["ranks"]:
            if job.tracebacks.get(r):
                write_rank_failure(r, job.failures_of(r), job.tracebacks[r], out=out, headline=False)
        out.write(f"dtrun: job ended (mpiexec exit status {rc}).\n")
        out.flush()
        return status
    if job.failures:
        _, rank, why = sorted(job.failures)[0]
    else:
        rank = _rank_from_abort_lines(err.values())
        m = re.search(r"process rank (\d+) with PID \d+ on node \S+ calling \"?abort", flat)
        if m and int(m.group(1)) == first_dead:
            first_dead = None   # Open MPI: it aborted on losing a peer (one that died unseen), not first
        if rank is None:
            rank = first_dead if first_dead is not None else _rank_from_mpiexec_output(mpiexec_text, job.pids,
                                                                                        job.host_pids)
        code = re.search(r"EXIT CODE: (\d+)", flat)
        if sig is None and code is None:
            lost_host = _lost_host(job, flat, first_dead, lost_host)
        if lost_host and sig is None and code is None:
            ranks = [r for r, h in sorted(job.hosts.items()) if h == lost_host]
            out.write(f"dtrun: lost host {lost_host}" + (f" and its {_ranks(ranks)}" if ranks else "") +
                      " (host down, unreachable, or every process on it killed); mpiexec said:\n")
            out.write("".join(f"  {l}\n" for l in mpiexec_text.strip().splitlines()[-TAIL_LINES:]))
            out.flush()
            return status
        if sig is None and code and rank is not None and not job.reported(rank) and rank not in job.done \
                and 0 < int(code.group(1)) < 65:
            # a remote Hydra proxy reports a rank killed by signal N as 'EXIT CODE: N'; a rank that
            # exits by itself says why first (launch.rank), so one that said nothing was killed
            sig = int(code.group(1))
        if sig is not None:
            why = f"killed by {_signal_name(sig)}"
            status = 128 + sig
        elif rank is not None and rank == first_dead and not job.reported(rank):
            # it vanished first without saying why (launch.rank reports every exit it can see)
            why = "killed (it ended without a word: a signal such as SIGKILL, or its host went down)"
        elif code:
            why = f"exit code {code.group(1)}"
        else:
            why = f"mpiexec exit status {rc}"
    if rank is None and len(set(job.hosts.values())) > 1 and sig is None and code is None:
        by_host = {}
        for r, h in sorted(job.hosts.items()):
            by_host.setdefault(h, []).append(r)
        out.write("dtrun: the job failed: mpiexec lost contact with a host (" +
                  "; ".join(f"{h}: {_ranks(rs)}" for h, rs in by_host.items()) +
                  "): a host went down or became unreachable, or every process on it was killed; mpiexec said:\n")
        out.write("".join(f"  {l}\n" for l in mpiexec_text.strip().splitlines()[-TAIL_LINES:]))
        out.flush()
        return status
    if rank is None:
        out.write(f"dtrun: the job failed ({why}); mpiexec said:\n")
        out.write("".join(f"  {l}\n" for l in mpiexec_text.strip().splitlines()[-TAIL_LINES:]))
        return status
    who = _who(job, [rank])
    if job.tracebacks.get(rank):
        write_rank_failure(rank, why, job.tracebacks[rank], out=out, who=who)
    else:
        write_rank_failure(rank, why, _traceback_tail(err[rank].lines) if rank in err else [],
                           heading=f"dtrun: rank {rank} stderr (last lines):", out=out, who=who)
    out.write(f"dtrun: all {job.nprocs} ranks were stopped.\n")
    out.flush()
    return status


def write_rank_failure(rank, why, lines, heading=None, out=None, who=None, headline=True):
    """`dtrun: rank R (host H) failed: WHY` and the rank's traceback (or last stderr lines), the same
    report for a rank under mpiexec and for `-n 1` in this process."""
    out = out or sys.stderr
    if headline:
        out.write(f"dtrun: {who or f'rank {rank}'} failed: {why}\n")
    if lines:
        out.write((heading or f"dtrun: rank {rank}'s traceback:") + "\n")
        out.write("".join(f"  [{rank}] {line}\n" for line in lines))
    out.flush()


IO_DIR_PREFIX = "dtrun-io-"


def make_io_dir():
    """A fresh directory for the ranks' output, named with dtrun's pid; directories of earlier
    dtruns that were killed before they could remove theirs are removed here."""
    clean_stale_io_dirs()
    return tempfile.mkdtemp(prefix=f"{IO_DIR_PREFIX}{os.getpid()}-")


def clean_stale_io_dirs():
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        m = re.match(re.escape(IO_DIR_PREFIX) + r"(\d+)-", name)
        if m and not _pid_exists(int(m.group(1))):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def _pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def io_dir_placeholder():
    """What --dry-run shows for make_io_dir()'s directory, which only exists once a job runs."""
    return os.path.join(tempfile.gettempdir(), IO_DIR_PREFIX + "PID-XXXXXXXX")


def remove_io_dir(path):
    shutil.rmtree(path, ignore_errors=True)
