"""Running mpiexec: per-rank output with whole-line `[rank]` prefixes, failure reports,
a wall-time watchdog and Ctrl-C that stops every rank."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import mpi
from .rank import CONTROL, is_machinery

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


class RankStream:
    """Tails one rank's output file and emits whole lines, prefixed with the rank."""

    def __init__(self, rank, kind, path_fn, term, job):
        self.rank, self.kind, self.path_fn, self.term, self.job = rank, kind, path_fn, term, job
        self.path = None
        self.fh = None
        self.partial = b""
        self.lines = []         # kept for the failure report (stderr only)

    def poll(self, final=False):
        if self.fh is None:
            self.path = self.path_fn()
            if not self.path or not os.path.exists(self.path):
                return
            self.fh = open(self.path, "rb")
        data = self.fh.read()
        if data:
            self.partial += data
            *complete, self.partial = self.partial.split(b"\n")
            for raw in complete:
                self.emit(raw.decode("utf-8", "replace"))
        if final and self.partial:
            self.emit(self.partial.decode("utf-8", "replace"))
            self.partial = b""

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

    def close(self):
        if self.fh:
            self.fh.close()


class Job:
    def __init__(self, nprocs, term):
        self.nprocs = nprocs
        self.term = term
        self.pids = {}            # rank -> pid, from the ranks' control lines
        self.failures = []        # (time, rank, why), in the order they arrived
        self.quiet = False
        self.tracebacks = {}      # rank -> traceback lines sent as control lines
        self.done = set()         # ranks whose code returned normally

    def reported(self, rank):
        return any(r == rank for _, r, _ in self.failures)

    def control(self, rank, message):
        kind, _, rest = message.partition(" ")
        if kind == "pid" and rest.isdigit():
            self.pids[int(rest)] = rank
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


def _alive(pid):
    """False once a (local) process has exited, zombie included."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


class DeathWatch(threading.Thread):
    """Notes which local rank exits first. Hydra's 'BAD TERMINATION' banner may name any of the
    ranks it killed during cleanup; the first to vanish is the one that failed."""

    def __init__(self, job, interval=0.005):
        super().__init__(daemon=True)
        self.job, self.interval = job, interval
        self.first_dead = None
        self.stop_flag = threading.Event()

    def run(self):
        if not os.path.isdir("/proc"):
            return
        while not self.stop_flag.is_set() and self.first_dead is None:
            dead = [rank for pid, rank in list(self.job.pids.items())
                    if rank not in self.job.done and not _alive(pid)]
            if len(dead) == 1 and len(self.job.pids) == self.job.nprocs:
                self.first_dead = dead[0]
            elif dead:
                return          # several at once: cannot tell; the banner decides
            self.stop_flag.wait(self.interval)


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


def _rank_from_mpiexec_output(text, pids):
    m = re.search(r"process rank (\d+)", text)          # Open MPI
    if m:
        return int(m.group(1))
    m = re.search(r"RANK (\d+) PID", text)               # newer Hydra banners
    if m:
        return int(m.group(1))
    for pid in re.findall(r"PID (\d+) RUNNING AT", text):  # Hydra banner
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



def run(argv, launcher_env, nprocs, dialect, io_dir, timeout=None, local=True):
    """Run mpiexec to completion; return the exit status dtrun should exit with.

    ``local``: every rank runs on this machine (no host list), so their pids can be watched."""
    term = Terminal()
    job = Job(nprocs, term)
    env = dict(os.environ)
    env.update(launcher_env)
    streams = []
    for rank in range(nprocs):
        for i, kind in ((0, "out"), (1, "err")):
            streams.append(RankStream(
                rank, kind, (lambda r=rank, i=i: mpi.rank_output_paths(io_dir, dialect, r)[i]), term, job))
    mpiexec_log = tempfile.TemporaryFile()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=mpiexec_log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise mpi.LaunchError(f"cannot start {argv[0]}: {exc}") from None

    stopping = {"why": None}

    def on_signal(signum, frame):
        if stopping["why"] is None:
            stopping["why"] = "interrupted"
            job.quiet = True

            def announce_and_stop():
                # not in the handler itself: it runs in the main thread, which may hold term's lock
                term.line("dtrun: interrupted; stopping all ranks", sys.stderr)
                stop(proc)
            threading.Thread(target=announce_and_stop, daemon=True).start()
        else:   # a second Ctrl-C: no more patience
            _signal_group(proc, signal.SIGKILL)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    first_failure_seen = None
    watch = DeathWatch(job)
    if local:
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
            # A rank reported a failure: mpi4py aborts the job; make sure it ends soon.
            if job.failures and stopping["why"] is None:
                if first_failure_seen is None:
                    first_failure_seen = now
                elif now - first_failure_seen > 10:
                    stopping["why"] = "failure"
                    threading.Thread(target=stop, args=(proc,), daemon=True).start()
            time.sleep(POLL_S)
        for s in streams:
            s.poll(final=True)
    finally:
        watch.stop_flag.set()
        for s, h in old.items():
            signal.signal(s, h)
        for s in streams:
            s.close()
        term.end_progress()
    mpiexec_log.seek(0)
    mpiexec_text = mpiexec_log.read().decode("utf-8", "replace")
    mpiexec_log.close()
    elapsed = time.monotonic() - start

    if rc == 0 and stopping["why"] is None:
        return 0
    if stopping["why"] == "interrupted":
        return 130
    if stopping["why"] == "timeout" or (timeout and elapsed >= timeout and "timeout" in mpiexec_text.lower()):
        sys.stderr.write(f"dtrun: job stopped after {elapsed:.1f} s (--timeout {timeout:g}).\n")
        return 124
    report_failure(job, streams, mpiexec_text, rc, watch.first_dead)
    return rc if rc and rc > 0 else 1


def report_failure(job, streams, mpiexec_text, rc, first_dead=None):
    err = {s.rank: s for s in streams if s.kind == "err"}
    if job.failures:
        _, rank, why = sorted(job.failures)[0]
    else:
        rank = _rank_from_abort_lines(err.values())
        if rank is None:
            rank = first_dead if first_dead is not None else _rank_from_mpiexec_output(mpiexec_text, job.pids)
        m = re.search(r"(?:KILLED BY SIGNAL|signal):? (\d+)", mpiexec_text)
        code = re.search(r"EXIT CODE: (\d+)", mpiexec_text)
        if m:
            why = f"killed by {_signal_name(int(m.group(1)))}"
        elif code:
            why = f"exit code {code.group(1)}"
        else:
            why = f"mpiexec exit status {rc}"
    out = sys.stderr
    if rank is None:
        out.write(f"dtrun: the job failed ({why}); mpiexec said:\n")
        out.write("".join(f"  {l}\n" for l in mpiexec_text.strip().splitlines()[-TAIL_LINES:]))
        return
    if job.tracebacks.get(rank):
        write_rank_failure(rank, why, job.tracebacks[rank], out=out)
    else:
        write_rank_failure(rank, why, _traceback_tail(err[rank].lines) if rank in err else [],
                           heading=f"dtrun: rank {rank} stderr (last lines):", out=out)
    out.write(f"dtrun: all {job.nprocs} ranks were stopped.\n")
    out.flush()


def write_rank_failure(rank, why, lines, heading=None, out=None):
    """`dtrun: rank R failed: WHY` and the rank's traceback (or last stderr lines), the same
    report for a rank under mpiexec and for `-n 1` in this process."""
    out = out or sys.stderr
    out.write(f"dtrun: rank {rank} failed: {why}\n")
    if lines:
        out.write((heading or f"dtrun: rank {rank}'s traceback:") + "\n")
        out.write("".join(f"  [{rank}] {line}\n" for line in lines))
    out.flush()


IO_DIR_PREFIX = "dtrun-io-"


def make_io_dir():
    return tempfile.mkdtemp(prefix=IO_DIR_PREFIX)


def io_dir_placeholder():
    """What --dry-run shows for make_io_dir()'s directory, which only exists once a job runs."""
    return os.path.join(tempfile.gettempdir(), IO_DIR_PREFIX + "XXXXXX")


def remove_io_dir(path):
    shutil.rmtree(path, ignore_errors=True)
