"""Driving non-blocking MPI operations: the communication thread and the wait modes.

An MPI non-blocking collective only moves while some thread is inside MPI.
Two ways to make DDP's allreduces progress while backward computes:

* ``thread`` (default when MPI grants MPI_THREAD_MULTIPLE): one daemon thread
  starts every operation, in submission order, and drives it to completion.
  Its MPI calls release the GIL, and numpy/BLAS/Numba release it during the
  backward kernels, so the transfer really runs during backward.
* ``hooks``: the calling thread starts operations and calls ``Test()`` on the
  pending ones from every gradient hook (`progress()`); between hooks nothing
  moves, so a bucket launched before a long matmul waits for the next hook.

Measured (bench/ddp_sync.py's overlap probe, 2 ranks on this 2-core machine):
a 4 MiB allreduce started before ~21 ms of BLAS work left 0.0-4 ms to wait
for afterwards with the thread, against 8-18 ms with Test() from hooks (the
whole transfer, plus the skew between the ranks, lands after the compute).
Hence the thread is the default and hooks the fallback for MPI libraries
without MPI_THREAD_MULTIPLE.

Waiting: MPICH busy-polls inside ``Wait``, which steals the core of a rank
doing real work when busy threads outnumber cores. ``spin`` waits inside MPI
(a 7 MB Iallreduce on 2 ranks: 2.3 ms in ``Wait``, 6.4 ms polling ``Test()``
every 0.2 ms, on a busy machine); ``sleep`` polls ``Test()`` with short
sleeps, leaving the core to computation; ``adaptive`` sleep-polls while the
rank computes and spins only while the rank itself is blocked waiting (the
communication thread then has the core to itself). ``auto`` (default) is
``sleep`` when this machine's ranks outnumber its cores, else ``adaptive``
with the thread and ``spin`` with hooks.

"""
import collections
import os
import queue
import threading
import time

WAIT_MODES = ("auto", "spin", "sleep", "adaptive")
POLL_INTERVAL = 2e-4    # seconds between Test() calls in sleep mode
_SLICE = 0.05           # how often a waiting rank answers stall queries


class Work:
    """Handle of one started (or queued) communication; ``wait()`` returns its result."""

    __slots__ = ("engine", "label", "seq", "_start", "_finish", "_reqs", "_event", "_done",
                 "result", "error", "t_submit", "t_start", "t_end")

    def __init__(self, engine, label, start, finish):
        self.engine = engine
        self.label = label
        self.seq = -1
        self._start = start
        self._finish = finish
        self._reqs = None
        self._event = threading.Event()
        self._done = False
        self.result = None
        self.error = None
        self.t_submit = self.t_start = self.t_end = None

    def is_completed(self):
        if not self._done and not self.engine.threaded:
            self.engine.progress()
        return self._done

    def wait(self):
        """Block until complete (checking for stalls); return the result or raise its error."""
        if not self._done:
            self.engine.wait(self)
        if self.error is not None:
            raise self.error
        return self.result

    def __repr__(self):
        state = "done" if self._done else "pending"
        return f"<Work #{self.seq} {self.label} {state}>"


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def resolve_wait_mode(mode, local_size, threaded):
    """``auto`` -> ``sleep`` when this machine's ranks outnumber its cores, else
    ``adaptive`` (communication thread) or ``spin`` (hooks progress)."""
    mode = (mode or os.environ.get("DISTTRAIN_WAIT_MODE") or "auto").lower()
    if mode not in WAIT_MODES:
        raise ValueError(f"wait mode {mode!r}: expected one of {', '.join(WAIT_MODES)}")
    if mode != "auto":
        return mode
    if local_size > _cores():
        return "sleep"
    # With a communication thread, spinning all the time would put a second
    # busy thread beside each rank's computation.
    return "adaptive" if threaded else "spin"


class ProgressEngine:
    """Starts and completes `Work` items in submission order (the order MPI needs)."""

    def __init__(self, comm, threaded, wait_mode, stall):
        self.comm = comm
        self.threaded = threaded
        self.wait_mode = wait_mode
        self.stall = stall
        self.timeline = None
        self._seq = 0
        self._lock = threading.Lock()
        self._current = None            # the work the comm thread is driving
        self._waiters = 0               # threads blocked in wait(): the thread may spin (adaptive)
        self._pending = collections.deque()
        self._queue = None
        self._thread = None
        if threaded:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name="disttrain-comm", daemon=True)
            self._thread.start()

    # -- submission ---------------------------------------------------------
    def submit(self, label, start, finish=None):
        """``start()`` -> request(s) is called in order; ``finish()`` -> result after completion."""
        w = Work(self, label, start, finish)
        w.t_submit = time.perf_counter()
        with self._lock:
            w.seq = self._seq
            self._seq += 1
            if self.threaded:
                self._queue.put(w)
                return w
        try:
            self._begin(w)
        except BaseException as e:
            self._fail(w, e)
            return w
        self._pending.append(w)
        return w

    def _begin(self, w):
        w.t_start = time.perf_counter()
        reqs = w._start()
        if reqs is None:
            reqs = []
        elif not isinstance(reqs, (list, tuple)):
            reqs = [reqs]
        w._reqs = list(reqs)

    def _complete(self, w):
        w.t_end = time.perf_counter()
        w._reqs = None
        if w._finish is not None:
            try:
                w.result = w._finish()
            except BaseException as e:
                w.error = e
        w._done = True
        w._event.set()
        tl = self.timeline
        if tl is not None:
            tl.complete(w.label, w.t_start, w.t_end, thread="comm", args={"seq": w.seq})

    def _fail(self, w, e):
        w.error = e
        w._done = True
        w._event.set()

    # -- the communication thread ---------------------------------------------
    def _run(self):
        q = self._queue
        while True:
            w = q.get()
            if w is None:
                return
            self._current = w
            try:
                self._begin(w)
                mode = self.wait_mode
                for r in w._reqs:
                    while not r.Test():
                        if mode == "spin" or (mode == "adaptive" and self._waiters):
                            r.Wait()        # spins inside MPI, GIL released
                            break
                        time.sleep(POLL_INTERVAL)
            except BaseException as e:      # reported to whoever waits on it
                self._current = None
                self._fail(w, e)
                continue
            self._current = None
            self._complete(w)

    def close(self):
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    # -- progress from the calling thread (hooks mode) -------------------------
    def progress(self):
        """Test the pending operations once each (a no-op with the thread)."""
        if self.threaded:
            return
        pend = self._pending
        while pend:
            w = pend[0]
            if all(r.Test() for r in w._reqs):
                pend.popleft()
                self._complete(w)
            else:
                # Test the later ones too: each call drives MPI's progress engine.
                for later in list(pend)[1:]:
                    for r in later._reqs:
                        r.Test()
                return

    def _progress_for(self, w, seconds):
        end = time.perf_counter() + seconds
        spin = self.wait_mode in ("spin", "adaptive")
        while True:
            self.progress()
            if w._done or time.perf_counter() >= end:
                return w._done
            if not spin:
                time.sleep(POLL_INTERVAL)

    # -- waiting -----------------------------------------------------------------
    def current_seq(self):
        """Sequence number of the earliest unfinished operation (for stall replies)."""
        if self.threaded:
            cur = self._current
            return cur.seq if cur is not None else self._seq
        return self._pending[0].seq if self._pending else self._seq

    def wait(self, w):
        t0 = time.perf_counter()
        stall = self.stall
        timeout = stall.timeout if stall is not None else None
        next_report = t0 + timeout if timeout else None
        with self._lock:
            self._waiters += 1
        try:
            self._wait_loop(w, t0, stall, timeout, next_report)
        finally:
            with self._lock:
                self._waiters -= 1

    def _wait_loop(self, w, t0, stall, timeout, next_report):
        while True:
            if self.threaded:
                done = w._event.wait(_SLICE)
            else:
                done = self._progress_for(w, _SLICE)
            if done:
                return
            if stall is None:
                continue
            stall.service(self.current_seq())
            now = time.perf_counter()
            if next_report is not None and now >= next_report:
                stall.report(self._stalled_work(w), now - t0, self.current_seq)
                next_report = now + timeout

    def _stalled_work(self, w):
        cur = self._current if self.threaded else (self._pending[0] if self._pending else None)
        return cur if cur is not None and cur.seq < w.seq else w
