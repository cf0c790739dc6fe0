"""Driving non-blocking MPI operations: the communication thread and the wait modes.

An MPI non-blocking collective only moves while some thread is inside MPI.
Operations are started by the submitting thread, in submission order (see
`ProgressEngine`); what differs is who drives them while the rank computes:

* ``thread`` (default when MPI grants MPI_THREAD_MULTIPLE): a daemon thread,
  woken by ``progress()`` (DDP calls it from the gradient hooks while more
  backward is to come), polls ``Test()`` on the in-flight operations. Its
  MPI calls release the GIL, and numpy/BLAS/Numba release it during the
  backward kernels, so the transfer really runs during backward.
* ``hooks``: ``progress()`` itself calls ``Test()`` once; between hooks
  nothing moves, so a bucket launched before a long matmul waits for the
  next hook.

Either way ``wait()`` drives the operations from the waiting thread itself:
a bucket launched when backward is over never passes through the thread.

Measured (bench/ddp_sync.py's overlap probe, 2 ranks on this 2-core machine):
a 4 MiB allreduce started before ~21 ms of BLAS work left 0.0-4 ms to wait
for afterwards with the thread, against 8-18 ms with Test() from hooks (the
whole transfer, plus the skew between the ranks, lands after the compute).
Hence the thread is the default and hooks the fallback for MPI libraries
without MPI_THREAD_MULTIPLE.

Waiting: MPICH busy-polls inside ``Wait``, which steals the core of a rank
doing real work when busy threads outnumber cores. ``spin``: the waiter
polls ``Test()`` without pause (and the thread waits inside MPI's ``Wait``);
``sleep``: everyone polls ``Test()`` with short sleeps, leaving the core to
computation; ``adaptive``: the thread sleep-polls (the rank is computing)
and the waiter spins (the rank is blocked anyway). ``auto`` (default) is
``sleep`` when this machine's ranks outnumber its cores, else ``adaptive``
with the thread and ``spin`` with hooks.

Whatever the mode, a wait that has lasted `SPIN_LIMIT` seconds is no longer a
normal wait but a suspected stall: from then on the waiter (and the thread)
sleep-poll, so a rank left waiting for a dead or deadlocked peer does not
burn its core for the minutes until the stall detector acts.
"""
import collections
import os
import threading
import time

from .threads import cores

WAIT_MODES = ("auto", "spin", "sleep", "adaptive")
POLL_INTERVAL = 2e-4    # seconds between Test() calls in sleep mode
_SLICE = 0.05           # how often a waiting rank answers stall queries
SPIN_LIMIT = 1.0        # seconds of spinning before a wait sleep-polls (a suspected stall)
STALLED_POLL = 2e-3     # seconds between Test() calls once a stall is suspected
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


class Work:
    """Handle of one started (or queued) communication; ``wait()`` returns its result."""

    __slots__ = ("engine", "label", "seq", "desc", "_start", "_finish", "_reqs", "_done", "after",
                 "result", "error", "t_submit", "t_start", "t_end")

    def __init__(self, engine, label, start, finish, desc=None, after=None):
        self.engine = engine
        self.after = after      # a Work that must complete before this one starts (see then())
        self.label = label
        self.desc = desc        # collective_check.descriptor(...) or None
        self.seq = -1
        self._start = start
        self._finish = finish
        self._reqs = None
        self._done = False
        self.result = None
        self.error = None
        self.t_submit = self.t_start = self.t_end = None

    def is_completed(self):
        if not self._done:
            self.engine._drive_once()
        return self._done

    def wait(self):
        """Block until complete (checking for stalls); return the result or raise its error."""
        if not self._done:
            self.engine.wait(self)
        if self.error is not None:
            raise self.error
        return self.result

    def then(self, start, finish=None, label=None, desc=None):
        """Continue with another collective once this one completes; returns its `Work`.

        ``start(result)`` (this work's result) starts the next operation and returns its
        request(s); ``finish()`` gives the new work's result after it completes. The new work
        takes its place in the submission order NOW, so its start keeps the same position
        relative to every other collective on every rank (MPI's ordering rule): operations
        submitted after it queue behind it until it has started. If this work fails, the new
        one fails with the same error without starting.
        """
        prev = self
        return self.engine.submit(label or f"{self.label} (then)", lambda: start(prev.result), finish,
                                  desc=desc, after=self)

    def __repr__(self):
        state = "done" if self._done else "pending"
        return f"<Work #{self.seq} {self.label} {state}>"


def resolve_wait_mode(mode, local_size, threaded):
    """``auto`` -> ``sleep`` when this machine's ranks outnumber its cores, else
    ``adaptive`` (communication thread) or ``spin`` (hooks progress)."""
    mode = (mode or os.environ.get("DISTTRAIN_WAIT_MODE") or "auto").lower()
    if mode not in WAIT_MODES:
        raise ValueError(f"wait mode {mode!r}: expected one of {', '.join(WAIT_MODES)}")
    if mode != "auto":
        return mode
    if local_size > cores():
        return "sleep"
    # With a communication thread, spinning all the time would put a second
    # busy thread beside each rank's computation.
    return "adaptive" if threaded else "spin"


class ProgressEngine:
    """Starts `Work` items in submission order (the order MPI needs) and completes them.

    Who does what (one mechanism for both progress modes):

    * ``submit`` starts the operation at once in the calling thread (under a
      lock, so starts keep submission order); only a start flagged
      ``start_in_thread`` (e.g. a compression hook's encoding) is left to the
      communication thread, and later submissions queue behind it.
    * ``progress()`` says "the caller goes back to computing": with a thread it
      wakes the thread to drive the in-flight operations (``Test()`` polls with
      short sleeps) while the caller computes; without one it tests them once.
    * ``wait()`` drives the operations itself, in the waiting thread: no
      hand-off to a thread and back, so a bucket launched at the very end of
      backward costs what a blocking MPI call costs.

    Measured on 2 ranks x 2 cores (0.17 MB allreduce, blocking Allreduce ~0.1 ms):
    handing every operation to a sleeping thread through a queue cost ~0.25 ms
    in a quiet loop and 1 ms per backward inside DDP (waking the thread
    preempts a busy rank); started and waited in the caller it costs ~0.1 ms.
    Only one thread at a time calls ``Test()``/``Wait()`` on the requests
    (the ``_drive`` lock); MPI forbids two threads completing one request.
    """

    def __init__(self, comm, threaded, wait_mode, stall, checker=None):
        self.comm = comm
        self.checker = checker      # collective_check.CollectiveChecker or None
        self._submitted = 0         # operations submitted (collective checks not counted)
        self.threaded = threaded
        self.wait_mode = wait_mode
        self.stall = stall
        self.timeline = None
        self._seq = 0
        self._lock = threading.Lock()       # submission order: seq numbers and starts
        self._drive = threading.Lock()      # held while calling Test() on requests
        self._unstarted = collections.deque()   # works whose start the thread runs, in order
        self._inflight = collections.deque()    # started, not yet complete, in start order
        self._closed = False
        self._thread = None
        if threaded:
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._run, name="disttrain-comm", daemon=True)
            self._thread.start()

    # -- submission ---------------------------------------------------------
    def submit(self, label, start, finish=None, start_in_thread=False, desc=None, after=None):
        """``start()`` -> request(s) is called in submission order; ``finish()`` -> result after completion.

        The operation starts now, in this thread, unless ``start_in_thread`` asks
        for the communication thread (with no thread it always starts here).
        ``desc`` (`collective_check.descriptor`) says what the collective is, for
        the collective check and the stall detector. With the check on, the
        submitting thread first verifies it across ranks (a blocking allgather
        through this engine, so it keeps its place in the order). ``after``: a
        Work that must complete before this one starts (`Work.then`); until
        then this one and every later submission wait in the start queue,
        which whoever drives the engine (thread, ``progress()``, ``wait()``) runs.
        """
        checker = self.checker
        if checker is not None and checker.wants(self._submitted):
            checker.check(self, self._seq + 1, desc, label)    # the check itself takes seq _seq
        self._submitted += 1
        return self.submit_unchecked(label, start, finish, start_in_thread, desc, after)

    def submit_unchecked(self, label, start, finish=None, start_in_thread=False, desc=None, after=None):
        w = Work(self, label, start, finish, desc, after)
        w.t_submit = time.perf_counter()
        queued = False
        with self._lock:
            w.seq = self._seq
            self._seq += 1
            if self._unstarted or (after is not None and not after._done) or (self.threaded and start_in_thread):
                self._unstarted.append(w)
                queued = self.threaded
            elif after is not None and after.error is not None:
                self._fail(w, after.error)      # the chain stops at the first failure
            elif self._begin_safely(w):
                self._inflight.append(w)
        if queued:
            self._wake.set()
        return w

    def _begin(self, w):
        w.t_start = time.perf_counter()
        reqs = w._start()
        if reqs is None:
            reqs = []
        elif not isinstance(reqs, (list, tuple)):
            reqs = [reqs]
        w._reqs = list(reqs)

    def _begin_safely(self, w):
        try:
            self._begin(w)
            return True
        except BaseException as e:          # reported to whoever waits on it
            self._fail(w, e)
            return False

    def _complete(self, w):
        w.t_end = time.perf_counter()
        w._reqs = None
        if w._finish is not None:
            try:
                w.result = w._finish()
            except BaseException as e:
                w.error = e
        w._done = True
        tl = self.timeline
        if tl is not None:
            tl.complete(w.label, w.t_start, w.t_end, thread="comm", args={"seq": w.seq})

    def _fail(self, w, e):
        w.error = e
        w._done = True

    # -- driving the requests ------------------------------------------------
    def _start_queued(self):
        """Run the queued starts, in order, up to the first whose predecessor (``after``) is unfinished."""
        while True:
            with self._lock:
                if not self._unstarted:
                    return
                w = self._unstarted[0]      # stays first until started: later submits queue behind
            after = w.after
            if after is not None and not after._done:
                return
            if after is not None and after.error is not None:
                self._fail(w, after.error)
                ok = False
            else:
                ok = self._begin_safely(w)  # unlocked: a long encode must not block submit()
            with self._lock:
                self._unstarted.popleft()
                if ok:
                    self._inflight.append(w)

    def _test_inflight(self):
        """Complete the in-flight operations that have finished, in order (caller holds _drive)."""
        pend = self._inflight
        while pend:
            w = pend[0]
            reqs = w._reqs
            try:
                done = reqs[0].Test() if len(reqs) == 1 else all([r.Test() for r in reqs])
            except BaseException as e:
                pend.popleft()
                self._fail(w, e)
                continue
            if not done:
                return
            pend.popleft()
            self._complete(w)

    def _drive_once(self, blocking_s=None):
        """Test the in-flight operations once, unless another thread is doing so (without a
        communication thread, also start what the queue holds once its predecessor is done)."""
        if not self.threaded and self._unstarted:
            self._start_queued()
        if not self._inflight:
            return
        got = self._drive.acquire(True, blocking_s) if blocking_s else self._drive.acquire(False)
        if got:
            try:
                self._test_inflight()
            finally:
                self._drive.release()
            if not self.threaded and self._unstarted:
                self._start_queued()

    def _drive_blocking(self):
        """Complete the first in-flight operation inside MPI's Wait (GIL released: a
        Python loop of Test() calls would fight the other threads for the GIL)."""
        with self._drive:
            self._test_inflight()
            if self._inflight:
                w = self._inflight[0]
                try:
                    for r in w._reqs:
                        r.Wait()
                except BaseException as e:
                    self._inflight.popleft()
                    self._fail(w, e)
                    return
                self._test_inflight()

    def progress(self):
        """The caller returns to computing: keep the in-flight operations moving meanwhile."""
        if self.threaded:
            if self._inflight or self._unstarted:
                self._wake.set()
        elif self._inflight or self._unstarted:
            self._drive_once()

    # -- the communication thread ---------------------------------------------
    def _run(self):
        wake = self._wake
        spin = self.wait_mode == "spin"
        while not self._closed:
            wake.clear()
            if not (self._inflight or self._unstarted):
                wake.wait()
                continue
            self._start_queued()
            stalled = self._suspected_stall()
            if spin and not stalled:
                self._drive_blocking()
            else:
                self._drive_once()
                # Sleep-poll: the rank's own computation keeps its core (each Test()
                # is a few microseconds of MPI progress).
                time.sleep(STALLED_POLL if stalled else POLL_INTERVAL)

    def _suspected_stall(self):
        try:
            t = self._inflight[0].t_start
        except IndexError:
            return False
        return t is not None and time.perf_counter() - t > SPIN_LIMIT

    def close(self):
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            self._thread.join(timeout=5.0)
        # No thread from now on: later submissions (e.g. at exit) start in the
        # caller, and whatever was left queued for the thread starts here, in order.
        self.threaded = False
        self._start_queued()

    # -- waiting -----------------------------------------------------------------
    def current_work(self):
        """The earliest unfinished operation (what this rank waits in), or None."""
        for dq in (self._inflight, self._unstarted):
            try:
                return dq[0]
            except IndexError:
                pass
        return None

    def current_seq(self):
        """Sequence number of the earliest unfinished operation (the next one if none)."""
        w = self.current_work()
        return w.seq if w is not None else self._seq

    def wait(self, w):
        """Drive the operations up to ``w`` from this thread until it completes."""
        t0 = time.perf_counter()
        stall = self.stall
        timeout = stall.timeout if stall is not None else None
        next_report = t0 + timeout if timeout else None
        spin = self.wait_mode in ("spin", "adaptive")
        poll = POLL_INTERVAL
        next_slice = t0 + _SLICE
        while not w._done:
            if self.threaded and self._unstarted:
                self._wake.set()            # its start is the thread's job
            self._drive_once(None if spin else poll)
            if w._done:
                return
            if spin:
                # As MPICH's own busy-wait does: let any other runnable thread on this
                # core (another rank on a busy machine, our comm thread) go first.
                _yield()
            else:
                time.sleep(poll)
            now = time.perf_counter()
            if now < next_slice:
                continue
            next_slice = now + _SLICE
            if poll != STALLED_POLL and now - t0 > SPIN_LIMIT:   # a suspected stall: poll slowly
                spin, poll = False, STALLED_POLL
            if stall is None:
                continue
            stall.service(self.current_work)
            if next_report is not None and now >= next_report:
                stall.report(self._stalled_work(w), now - t0, self.current_work)
                next_report = now + timeout

    def _stalled_work(self, w):
        for dq in (self._inflight, self._unstarted):
            try:
                cur = dq[0]
            except IndexError:
                continue
            return cur if cur.seq < w.seq else w
        return w
