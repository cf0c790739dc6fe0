"""The stall detector: who has not joined a collective that has waited too long, and why.

A rank whose wait exceeds ``timeout`` asks every other rank, over a private
point-to-point channel, which collective it is waiting in. Ranks that are
themselves waiting answer within a fraction of a second (every wait services
the channel) with the descriptor of their collective (#seq, op, dtype,
shape; see collective_check.py); a rank that ended cleanly said goodbye on
the same channel when it closed its process group. So the report tells
three cases apart:

* **exited**: the rank closed its process group (it finished its program);
* **in a different collective (#seq, op, shape)**: the program took another
  path on that rank (a skipped or extra collective);
* **not responding**: busy outside communication (computing, sleeping, stuck
  in user code), hung, or unreachable -- when every rank of a host is silent,
  the report says the host is unreachable or down.

With ``abort=True`` (the default) the reporter tells the launcher whom to
blame (blame.py: the stalled ranks, never itself) and aborts the job
(abort.abort_job: this process ends even where ``MPI_Abort`` returns, e.g.
on a host cut off from mpiexec). A rank cut off from the job ends the same
way: its own detector finds every remote rank silent.
"""
import logging
import os
import sys
import time

from . import abort as _abort
from .blame import blame
from .collective_check import describe, encode

QUERY, REPLY, BYE = 1, 2, 3
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


def default_abort():
    v = os.environ.get("DISTTRAIN_STALL_ABORT", "1").strip().lower()
    if v in ("1", "on", "true", "yes"):
        return True
    if v in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"DISTTRAIN_STALL_ABORT={v!r}: expected 1 or 0")


def _encode_work(work):
    return encode(work.seq, work.desc) if work is not None else encode(-1, None)


class StallDetector:
    def __init__(self, comm, timeout=DEFAULT_TIMEOUT, abort=True, log=None):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"stall timeout must be a positive number of seconds or None, got {timeout!r}")
        self.comm = comm
        self.timeout = timeout
        self.abort = abort
        self.log = log or _stderr
        self.reports = []          # the reports made so far (dicts), for tests and tools
        self.exited = set()        # ranks that closed their process group
        self._qid = 0
        self._replies = {}

    def _host(self, rank):
        hosts = getattr(self.comm, "hosts", None)
        return hosts[rank] if hosts else "?"

    def service(self, current_work):
        """Answer other ranks' queries with the collective this rank waits in; collect replies."""
        comm = self.comm
        for src, msg in comm.side_poll():
            if len(msg) < 3:
                continue
            if msg[0] == QUERY:
                comm.side_send(src, [REPLY, msg[1]] + _encode_work(current_work()))
            elif msg[0] == REPLY and msg[1] == self._qid:
                self._replies[src] = [int(v) for v in msg[2:]]
            elif msg[0] == BYE:
                self.exited.add(src)

    def goodbye(self):
        """This rank is closing its group: tell the others (never blocks; best effort)."""
        if _abort.aborting():
            return
        try:
            for r in range(self.comm.size):
                if r != self.comm.rank:
                    self.comm.side_send(r, [BYE, 0, 0])
        except Exception:
            pass

    def report(self, work, waited, current_work):
        comm = self.comm
        if _abort.aborting():           # this rank is already ending the job: no second report
            return None
        self._qid += 1
        self._replies = {}
        others = [r for r in range(comm.size) if r != comm.rank]
        for r in others:
            if r not in self.exited:
                comm.side_send(r, [QUERY, self._qid, work.seq])
        # Waiting ranks answer within one wait slice; give them a generous margin.
        grace = min(1.0, max(0.5, 0.5 * (self.timeout or 1.0)))
        end = time.perf_counter() + grace
        while time.perf_counter() < end and len(self._replies) + len(self.exited) < len(others):
            self.service(current_work)
            time.sleep(0.005)
        mine = _encode_work(work)
        joined = sorted([comm.rank] + [r for r, d in self._replies.items() if d == mine])
        elsewhere = sorted(r for r, d in self._replies.items() if d != mine and r not in self.exited)
        exited = sorted(r for r in self.exited if r in others)
        silent = sorted(set(others) - set(self._replies) - set(exited))
        not_joined = sorted(elsewhere + exited + silent)

        hosts = getattr(comm, "hosts", None) or ["?"] * comm.size
        multi = len(set(hosts)) > 1
        at = (lambda r: f"rank {r} (host {hosts[r]})") if multi else (lambda r: f"rank {r}")
        down = sorted({hosts[r] for r in silent} - {hosts[r] for r in range(comm.size) if r not in silent}) \
            if multi else []
        # the collective check's allgather stands for the collective it checks: name that one
        what = work.label if work.desc and work.desc[0] == "check" else f"{describe(mine)} ({work.label})"
        text = (f"disttrain stall detector: {at(comm.rank)}: collective {what} "
                f"has waited {waited:.1f} s; ranks that have not joined it: {not_joined}")
        why = []
        why += [f"{at(r)} exited (it closed its process group)" for r in exited]
        why += [f"{at(r)} is in a different collective {describe(self._replies[r])}" for r in elsewhere]
        for h in down:
            ranks = [r for r in silent if hosts[r] == h]
            why.append(f"host {h} (ranks {ranks}) is not responding: unreachable or down")
        rest = [r for r in silent if hosts[r] not in down]
        if rest:
            why.append(f"{', '.join(at(r) for r in rest)} not responding "
                       "(busy outside communication, hung, or unreachable)")
        text += " (" + "; ".join(why) + ")" if why else ""
        text += f"; ranks waiting in it: {joined}"
        rec = dict(rank=comm.rank, seq=work.seq, label=work.label, waited=waited, not_joined=not_joined,
                   joined=joined, exited=exited, elsewhere=elsewhere, silent=silent, hosts_down=down)
        self.reports.append(rec)
        self.log(text)
        # In a partition both sides see the other silent; rank 0's side speaks for the job (a rank
        # that cannot reach rank 0's host is more likely the one cut off, and what it says may
        # still reach dtrun through a shared filesystem).
        if self.abort and not_joined and hosts[0] not in down:
            blame(not_joined, [hosts[r] for r in not_joined], "stall", comm.rank,
                  "; ".join(why) + f" ({at(comm.rank)} waited {waited:.1f} s in collective {what})")
        if self.abort and not_joined:
            _abort.abort_job(comm, 1, f"disttrain stall detector: {at(comm.rank)}: aborting the job "
                                      "(stall_abort=True)\n")
        return rec


def _stderr(text):
    # the `disttrain` logger: shown on stderr by default (Python's last-resort handler), filterable
    # by library users with the standard logging configuration
    logging.getLogger("disttrain").warning(text)
    sys.stderr.flush()
