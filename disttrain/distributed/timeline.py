"""An optional per-rank timeline in Chrome-trace JSON (open it in Perfetto or chrome://tracing).

Events are complete events (``"ph": "X"``) in microseconds since the
timeline started, one row per thread: ``main`` (forward, backward, bucket
copy-in, waiting, optimizer step) and ``comm`` (each allreduce from start to
end). Overlap of the ``comm`` row with ``backward`` is the evidence that
communication hides behind computation.
"""
import json
import os
import threading
import time
from contextlib import contextmanager

_TIDS = {"main": 0, "comm": 1}
MAX_EVENTS = 200_000


class Timeline:
    def __init__(self, path, rank=0):
        self.path = str(path).replace("{rank}", str(rank))
        self.rank = rank
        self.t0 = time.perf_counter()
        self.events = []
        self._lock = threading.Lock()
        self.dropped = 0

    def complete(self, name, t_start, t_end, thread="main", args=None, cat="disttrain"):
        """Record an event that ran from ``t_start`` to ``t_end`` (perf_counter seconds)."""
        if t_start is None or t_end is None:
            return
        ev = {"name": name, "cat": cat, "ph": "X", "pid": self.rank, "tid": _TIDS.get(thread, 2),
              "ts": round((t_start - self.t0) * 1e6, 3), "dur": round(max(0.0, t_end - t_start) * 1e6, 3)}
        if args:
            ev["args"] = args
        with self._lock:
            if len(self.events) < MAX_EVENTS:
                self.events.append(ev)
            else:
                self.dropped += 1

    @contextmanager
    def span(self, name, thread="main", args=None):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.complete(name, t, time.perf_counter(), thread, args)

    def to_dict(self):
        meta = [{"name": "process_name", "ph": "M", "pid": self.rank, "tid": 0,
                 "args": {"name": f"rank {self.rank}"}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": self.rank, "tid": tid, "args": {"name": n}}
                 for n, tid in _TIDS.items()]
        with self._lock:
            events = list(self.events)
        return {"traceEvents": meta + events, "displayTimeUnit": "ms",
                "otherData": {"rank": self.rank, "dropped_events": self.dropped}}

    def save(self, path=None):
        """Write the trace (atomically) and return its path."""
        path = path or self.path
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f)
        os.replace(tmp, path)
        return path
