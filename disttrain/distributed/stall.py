"""The stall detector: who has not joined a collective that has waited too long.

A rank whose wait exceeds ``timeout`` asks every other rank, over a private
point-to-point channel, which collective it is waiting in. Ranks that are
themselves waiting answer within a fraction of a second (every wait services
the channel); a rank that is busy elsewhere (computing, sleeping, stuck in
user code) cannot answer -- that silence is exactly what names it. The
report is logged and, with ``abort=True``, the job is aborted.
"""
import logging
import os
import sys
import time

QUERY, REPLY = 1, 2
DEFAULT_TIMEOUT = 60.0


def default_timeout():
    v = os.environ.get("DISTTRAIN_STALL_TIMEOUT")
    if v is None:
        return DEFAULT_TIMEOUT
    try:
        t = float(v)
    except ValueError:
        raise ValueError(f"DISTTRAIN_STALL_TIMEOUT={v!r} is not a number of seconds") from None
    return t if t > 0 else None


class StallDetector:
    def __init__(self, comm, timeout=DEFAULT_TIMEOUT, abort=False, log=None):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"stall timeout must be a positive number of seconds or None, got {timeout!r}")
        self.comm = comm
        self.timeout = timeout
        self.abort = abort
        self.log = log or _stderr
        self.reports = []          # the reports made so far (dicts), for tests and tools
        self._qid = 0
        self._replies = {}

    def service(self, current_seq):
        """Answer other ranks' queries with the collective this rank waits in; collect replies."""
        comm = self.comm
        for src, msg in comm.side_poll():
            if len(msg) < 3:
                continue
            if msg[0] == QUERY:
                comm.side_send(src, [REPLY, msg[1], current_seq])
            elif msg[0] == REPLY and msg[1] == self._qid:
                self._replies[src] = int(msg[2])

    def report(self, work, waited, current_seq):
        comm = self.comm
        self._qid += 1
        self._replies = {}
        others = [r for r in range(comm.size) if r != comm.rank]
        for r in others:
            comm.side_send(r, [QUERY, self._qid, work.seq])
        # Waiting ranks answer within one wait slice; give them a generous margin.
        grace = min(1.0, max(0.5, 0.5 * (self.timeout or 1.0)))
        end = time.perf_counter() + grace
        while time.perf_counter() < end and len(self._replies) < len(others):
            self.service(current_seq())
            time.sleep(0.005)
        joined = [comm.rank] + sorted(r for r, s in self._replies.items() if s == work.seq)
        behind = sorted(r for r, s in self._replies.items() if s != work.seq)
        missing = sorted(set(others) - set(self._replies))
        not_joined = sorted(missing + behind)
        text = (f"disttrain stall detector: rank {comm.rank}: collective #{work.seq} ({work.label}) "
                f"has waited {waited:.1f} s; ranks that have not joined it: {not_joined}")
        if missing:
            text += f" (no answer from {missing}: busy outside communication or hung)"
        if behind:
            text += " (waiting in other collectives: " + ", ".join(
                f"rank {r} in #{self._replies[r]}" for r in behind) + ")"
        text += f"; ranks waiting in it: {joined}"
        rec = dict(rank=comm.rank, seq=work.seq, label=work.label, waited=waited,
                   not_joined=not_joined, joined=joined)
        self.reports.append(rec)
        self.log(text)
        if self.abort:
            self.log(f"disttrain stall detector: rank {comm.rank}: aborting the job (stall_abort=True)")
            time.sleep(0.3)         # let mpiexec forward the report before the abort (see abort.py)
            comm.abort(1)
        return rec


def _stderr(text):
    # the `disttrain` logger: shown on stderr by default (Python's last-resort handler), filterable
    # by library users with the standard logging configuration
    logging.getLogger("disttrain").warning(text)
    sys.stderr.flush()
