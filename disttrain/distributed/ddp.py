"""DistributedDataParallel: averaged gradients, reduced while backward still runs.

Mechanism, per synchronised backward pass:

1. Each parameter's post-accumulate-grad hook copies its gradient, times
   1/world_size, into its slot of a flat bucket (or scales it in place when
   the gradient already IS that slot, as it is from the second step on when
   the optimizer zeroes gradients in place). A large parameter (>= 1 MiB)
   has a bucket of its own that adopts the gradient array itself: scaled in
   place and reduced where it lies, with no copy (see buckets.py).
2. When a bucket's last gradient arrives, every complete bucket from the
   next one to launch onward is handed to the comm hook (default: a
   non-blocking allreduce) -- strictly in bucket-index order, the same on
   every rank, as MPI requires.
3. The engine's end-of-backward callback fills in unused parameters (or
   names them in an error), waits for the buckets and makes each
   parameter's ``_grad`` a view into its bucket, so the next backward
   accumulates straight into the bucket and the optimizer reads the result
   without a copy.

After the first synchronised pass the buckets are rebuilt in the order the
gradients actually became ready (rank 0's order, broadcast).
"""
import hashlib
import json
import time
from contextlib import contextmanager

import numpy as np

from ..autograd.engine import current_pass, queue_callback
from ..autograd.tensor import Tensor
from . import buckets as _buckets
from .comm_hooks import GradBucket, allreduce_hook
from .process_group import default_group
from .timeline import Timeline

MB = 1024 * 1024
# Parameters with gradients at least this large get a bucket of their own that
# reduces the gradient array in place (no copy into a flat buffer; see buckets.py).
SOLO_BYTES = 1 * MB


class ModelMismatchError(RuntimeError):
    """The ranks hold different models (parameter/buffer count, names, shapes or dtypes)."""


class DistributedDataParallel:
    """Wrap ``module`` so that ``loss.backward()`` leaves rank-averaged gradients in ``p.grad``.

    Arguments: ``bucket_cap_mb`` (bucket size; the first bucket is capped at
    ``first_bucket_cap_mb``), ``find_unused_parameters`` (reduce parameters
    that got no gradient as zeros instead of raising), ``broadcast_buffers``
    (copy rank 0's buffers before every forward), ``timeline`` (a path, may
    contain ``{rank}``: write a Chrome-trace JSON of every step), ``group``
    (a ProcessGroup; default: ``dist.init()``'s).
    """

    def __init__(self, module, bucket_cap_mb=25, find_unused_parameters=False, broadcast_buffers=True,
                 first_bucket_cap_mb=1, timeline=None, group=None):
        for name, v in (("bucket_cap_mb", bucket_cap_mb), ("first_bucket_cap_mb", first_bucket_cap_mb)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"DistributedDataParallel: {name} must be a positive number, got {v!r}")
        self.module = module
        self.group = group = group or default_group()
        self.find_unused_parameters = bool(find_unused_parameters)
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_cap_bytes = int(bucket_cap_mb * MB)
        self.first_bucket_cap_bytes = int(min(first_bucket_cap_mb, bucket_cap_mb) * MB)
        self.solo_bytes = max(1, min(SOLO_BYTES, self.bucket_cap_bytes))

        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._buffers = [(n, b) for n, b in _named_buffers(module)]
        for n, p in named:
            if not p.data.flags.c_contiguous:
                p.data = np.ascontiguousarray(p.data)
        _verify_same_model(group, self._fingerprint())
        self._broadcast_state()

        self._shapes = [p.data.shape for p in self._params]
        self._dtypes = [p.data.dtype for p in self._params]
        self._scale = {}
        self._prescale = True      # False once a ShardedOptimizer folds 1/N into its update
        order = list(reversed(range(len(self._params))))
        self._set_buckets(self._plan(order))
        self._rebuilt = False
        self._require_sync = True
        self._active = None        # token of the backward pass in progress
        self._step = 0
        self._hook_state, self._hook = None, allreduce_hook
        self.timeline = Timeline(timeline, group.rank) if timeline else None
        if self.timeline is not None:
            group.engine.timeline = self.timeline
            import atexit
            atexit.register(self.save_timeline)
        self.last_sync_stats = None
        self._t_backward = None
        self._handles = [p.register_post_accumulate_grad_hook(self._make_hook(i))
                         for i, p in enumerate(self._params)]

    # -- delegation ----------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self.broadcast_buffers and self._buffers and self.group.size > 1:
            self._broadcast_buffers()
        t0 = time.perf_counter()
        out = self.module(*args, **kwargs)
        if self.timeline is not None:
            self.timeline.complete("forward", t0, time.perf_counter())
        self._t_backward = None
        first = _first_grad_tensor(out)
        if first is not None:
            first.register_hook(self._mark_backward_start)
        return out

    forward = __call__

    def __getattr__(self, name):
        # Only reached for names not found on the wrapper: hand them to the module.
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)

    def parameters(self, recurse=True):
        return self.module.parameters(recurse)

    def named_parameters(self, prefix="", recurse=True):
        return self.module.named_parameters(prefix, recurse)

    def buffers(self, recurse=True):
        return self.module.buffers(recurse)

    def named_buffers(self, prefix="", recurse=True):
        return self.module.named_buffers(prefix, recurse)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, *args, **kwargs):
        return self.module.load_state_dict(state_dict, *args, **kwargs)

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        return self.module.zero_grad(set_to_none)

    def __repr__(self):
        return f"DistributedDataParallel(\n  {self.module!r}\n)"

    # -- user controls ---------------------------------------------------------
    @contextmanager
    def no_sync(self):
        """Backward passes inside accumulate local gradients; the next one outside syncs the sum."""
        old = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = old

    def register_comm_hook(self, state, hook):
        """Use ``hook(state, bucket) -> work`` to reduce every bucket (see comm_hooks, which also
        states the averaging contract: gradients arrive pre-scaled by 1/world_size, hooks sum)."""
        if not callable(hook):
            raise TypeError(f"register_comm_hook: hook must be callable, got {type(hook).__name__}")
        if self._active is not None and self._active is current_pass():
            raise RuntimeError("register_comm_hook cannot be called during a backward pass")
        self._hook_state, self._hook = state, hook

    @property
    def comm_hook_state(self):
        """The registered comm hook's state (None for the default allreduce)."""
        return self._hook_state

    def trace_optimizer(self, optimizer):
        """Record ``optimizer.step()`` calls in the timeline (no-op without one); returns the optimizer."""
        if self.timeline is None:
            return optimizer
        step, tl = optimizer.step, self.timeline

        def traced_step(*args, **kwargs):
            with tl.span("optimizer.step"):
                return step(*args, **kwargs)

        optimizer.step = traced_step
        return optimizer

    def save_timeline(self, path=None):
        if self.timeline is None:
            raise RuntimeError("save_timeline: this DistributedDataParallel was created without timeline=...")
        return self.timeline.save(path)

    def remove_hooks(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def bucket_layout(self):
        """Parameter names per bucket, in launch order."""
        return [[self._names[i] for i in b.indices] for b in self._buckets_list]

    # -- hand-off to a sharded optimizer (sharded.py) ---------------------------
    def _attach_sharded(self, hook_state, hook, solo=True, cap_mb=None):
        """Let a `ShardedOptimizer` reduce the buckets: its ``hook`` replaces the allreduce, gradients
        are not pre-scaled (it folds 1/N into the update), the bucket layout is frozen from now on
        (its slices follow it) and, with ``solo=False``, every gradient is copied into a bucket
        buffer (which the caller may then move into shared memory with ``Bucket.rebind``), in
        buckets of at most ``cap_mb`` when given."""
        if self._hook is not allreduce_hook:
            raise RuntimeError(f"ShardedOptimizer: rank {self.group.rank}: this DistributedDataParallel has the "
                               f"comm hook {getattr(self._hook, '__name__', self._hook)!r}; the sharded optimizer "
                               "reduces the buckets itself and cannot be combined with a comm hook")
        if self._active is not None and self._active is current_pass():
            raise RuntimeError("ShardedOptimizer cannot be created during a backward pass")
        self._prescale = False
        self._rebuilt = True
        if not solo and (cap_mb is not None or any(b.solo for b in self._buckets_list)):
            order = [i for b in self._buckets_list for i in b.indices]
            self.solo_bytes = None
            if cap_mb is not None:
                self.bucket_cap_bytes = min(self.bucket_cap_bytes, int(cap_mb * MB))
                self.first_bucket_cap_bytes = min(self.first_bucket_cap_bytes, self.bucket_cap_bytes)
            self._set_buckets(self._plan(order))
            for p in self._params:
                p._grad = None
        self._hook_state, self._hook = hook_state, hook
        return self._buckets_list

    # -- construction helpers --------------------------------------------------
    def _fingerprint(self):
        entries = [["parameter", n, list(p.data.shape), p.data.dtype.str] for n, p in
                   zip(self._names, self._params)]
        entries += [["buffer", n, list(b.data.shape), b.data.dtype.str] for n, b in self._buffers]
        return entries

    def _broadcast_state(self):
        if self.group.size == 1:
            return
        works = [self._ibcast(p.data, f"broadcast parameter {n}") for n, p in zip(self._names, self._params)]
        works += [self._ibcast(b.data, f"broadcast buffer {n}") for n, b in self._buffers]
        for w in works:
            w.wait()

    def _broadcast_buffers(self):
        for w in [self._ibcast(b.data, f"broadcast buffer {n}") for n, b in self._buffers]:
            w.wait()

    def _ibcast(self, arr, label):
        comm = self.group.comm
        if arr.flags.c_contiguous and arr.flags.writeable:
            return self.group.engine.submit(label, lambda: comm.ibcast(arr, 0))
        tmp = np.ascontiguousarray(arr)

        def finish():
            arr[...] = tmp
        return self.group.engine.submit(label, lambda: comm.ibcast(tmp, 0), finish)

    def _plan(self, order):
        return _buckets.plan(order, self._shapes, self._dtypes, self.bucket_cap_bytes,
                             self.first_bucket_cap_bytes, self.solo_bytes)

    def _set_buckets(self, groups):
        self._buckets_list = _buckets.build(groups, self._shapes, self._dtypes, self.solo_bytes)
        self._where = [None] * len(self._params)
        for b in self._buckets_list:
            for k, i in enumerate(b.indices):
                self._where[i] = (b, k)

    # -- the backward pass -----------------------------------------------------
    def _mark_backward_start(self, grad):
        if self._t_backward is None:
            self._t_backward = time.perf_counter()

    def _make_hook(self, i):
        def hook(param):
            self._on_grad_ready(i, param)
        return hook

    def _begin_pass(self):
        # The engine's token for this pass: a pass that raised before its end
        # (so _finalize never ran) cannot make the next one look like a continuation.
        self._active = current_pass()
        if self._t_backward is None:
            self._t_backward = time.perf_counter()
        queue_callback(self._finalize)
        if not self._require_sync:
            return
        n = len(self._params)
        # Python lists, not numpy arrays: these are touched once per parameter per step
        # from the gradient hooks, where a numpy scalar access costs several times more.
        self._ready = [False] * n
        self._had_grad = [False] * n
        self._order = []
        self._next_launch = 0
        for b in self._buckets_list:
            b.pending = len(b.indices)
            b.work = None

    def _on_grad_ready(self, i, param):
        if self._active is not current_pass():
            self._begin_pass()
        if not self._require_sync:
            return
        if self._ready[i]:
            raise RuntimeError(f"DistributedDataParallel: rank {self.group.rank}: parameter "
                               f"{self._names[i]!r} received two gradients in one backward pass")
        tl = self.timeline
        t0 = time.perf_counter() if tl is not None else 0.0
        self._copy_in(i, param)
        if not self._rebuilt:
            self._order.append(i)
        self._mark_ready(i)
        if tl is not None:
            tl.complete(f"copy-in {self._names[i]}", t0, time.perf_counter())
        if self._next_launch < len(self._buckets_list):
            # More backward to come: keep the launched buckets moving meanwhile. Once all
            # are launched, _finalize's wait drives them from this thread (no hand-off).
            self.group.engine.progress()

    def _scale_for(self, dtype):
        s = self._scale.get(dtype)
        if s is None:
            s = self._scale[dtype] = dtype.type(1.0 / self.group.size)
        return s

    def _copy_in(self, i, param):
        b, k = self._where[i]
        g = param._grad
        self._had_grad[i] = g is not None
        if b.solo:
            if g is not None and b.can_adopt(g):
                # Reduce the gradient where it lies (in place, as torch's DDP writes the
                # average back into .grad): no copy into a flat buffer.
                b.adopt(g)
                if self.group.size > 1 and self._prescale:
                    np.multiply(g, self._scale_for(g.dtype), out=g)
                return
            view = b.use_own()
        else:
            view = b.views[k]
        if g is None:
            view[...] = 0
            return
        if self.group.size == 1 or not self._prescale:
            if g is not view:
                view[...] = g
        else:
            np.multiply(g, self._scale_for(view.dtype), out=view)

    def _mark_ready(self, i):
        self._ready[i] = True
        b, _ = self._where[i]
        b.pending -= 1
        if b.pending == 0:
            self._launch_ready()

    def _launch_ready(self):
        bl = self._buckets_list
        nb = len(bl)
        while self._next_launch < nb and bl[self._next_launch].pending == 0:
            b = bl[self._next_launch]
            gb = GradBucket(b.index, b.buffer, [self._params[i] for i in b.indices],
                            [self._names[i] for i in b.indices], self.group,
                            f"allreduce bucket {b.index} of {nb} (step {self._step})", b.index == nb - 1,
                            views=list(b.views))
            b.work = self._hook(self._hook_state, gb)
            self._next_launch += 1

    def _finalize(self):
        t_compute_end = time.perf_counter()
        self._active = None
        tl = self.timeline
        if not self._require_sync:
            if tl is not None:
                tl.complete("backward (no_sync)", self._t_backward, t_compute_end)
            return
        rank = self.group.rank
        unready = [i for i, r in enumerate(self._ready) if not r]
        error = None
        if unready and not self.find_unused_parameters:
            names = [self._names[i] for i in unready]
            error = (f"DistributedDataParallel: rank {rank}: {len(names)} parameter(s) received no gradient "
                     f"in this backward pass: {', '.join(names)}. Every parameter must take part in the "
                     f"loss, or pass find_unused_parameters=True to DistributedDataParallel.")
        # Reduce missing gradients as zeros either way, and raise only at the very
        # end: the other ranks take part in these buckets' allreduces (and the
        # one-time bucket rebuild), so skipping them here would hang those ranks,
        # or misalign every later collective if this rank's error is caught.
        for i in unready:
            self._copy_in(i, self._params[i])
            self._mark_ready(i)
        used_work = None
        if self.find_unused_parameters and self.group.size > 1:
            # "had a gradient" (from this backward or accumulated earlier) on any rank decides,
            # the same way on every rank, whether .grad is set: ranks must never disagree.
            used = np.array(self._had_grad, np.int32)
            comm = self.group.comm
            used_work = self.group.engine.submit(f"allreduce used-parameter map (step {self._step})",
                                                 lambda: comm.iallreduce(used, "sum"), lambda: used)

        t_wait = time.perf_counter()
        for b in self._buckets_list:
            result = b.work.wait()
            if result is not b.buffer:
                result = np.asarray(result)
                if result.size != b.buffer.size:
                    raise RuntimeError(
                        f"DistributedDataParallel: rank {rank}: comm hook {getattr(self._hook, '__name__', '?')} "
                        f"returned {result.size} values for bucket {b.index} of {b.buffer.size}")
                b.buffer[...] = result.reshape(b.buffer.shape)
        globally_used = None
        if used_work is not None:
            globally_used = used_work.wait() > 0
        elif self.find_unused_parameters:
            globally_used = np.array(self._had_grad, bool)
        t_done = time.perf_counter()

        for i, p in enumerate(self._params):
            b, k = self._where[i]
            if globally_used is not None and not globally_used[i]:
                continue            # no rank had a gradient: leave .grad as it was (None)
            p._grad = b.views[k]

        self._record_stats(t_compute_end, t_wait, t_done)
        if not self._rebuilt:
            self._rebuild()
        self._step += 1
        if error is not None:
            raise RuntimeError(error)

    def _record_stats(self, t_compute_end, t_wait, t_done):
        t0 = self._t_backward if self._t_backward is not None else t_compute_end
        comm_s = hidden = 0.0
        for b in self._buckets_list:
            w = b.work
            ts, te = getattr(w, "t_start", None), getattr(w, "t_end", None)
            if ts is None or te is None:     # a user hook's own handle: no timestamps
                continue
            comm_s += te - ts
            hidden += max(0.0, min(te, t_compute_end) - max(ts, t0))
        self.last_sync_stats = {
            "step": self._step, "backward_s": t_compute_end - t0, "wait_s": t_done - t_wait,
            "comm_s": comm_s, "hidden_fraction": hidden / comm_s if comm_s > 0 else 1.0,
            "buckets": len(self._buckets_list),
        }
        tl = self.timeline
        if tl is not None:
            tl.complete("backward", t0, t_compute_end, args={"step": self._step})
            tl.complete("wait for buckets", t_wait, t_done, args={"step": self._step})

    def _rebuild(self):
        """Re-bucket once, in the order gradients became ready on rank 0."""
        self._rebuilt = True
        n = len(self._params)
        seen = set(self._order)
        order = np.array(self._order + [i for i in reversed(range(n)) if i not in seen], np.int64)
        if self.group.size > 1:
            comm = self.group.comm
            self.group.engine.submit("broadcast bucket order", lambda: comm.ibcast(order, 0)).wait()
        groups = self._plan(order.tolist())
        if groups == [b.indices for b in self._buckets_list]:
            return
        old = self._where
        self._set_buckets(groups)
        for i, p in enumerate(self._params):
            ob, ok = old[i]
            g = p._grad
            if g is not None and g is ob.views[ok]:
                b, k = self._where[i]
                if b.solo and b.can_adopt(g):
                    b.adopt(g)
                    continue
                view = b.use_own() if b.solo else b.views[k]
                view[...] = g
                p._grad = view


def _named_buffers(module):
    fn = getattr(module, "named_buffers", None)
    if fn is None:
        return []
    return [(n, b) for n, b in fn() if b is not None and hasattr(b, "data")]


def _first_grad_tensor(out):
    if isinstance(out, Tensor):
        return out if out.requires_grad and out._node is not None else None
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_grad_tensor(o)
            if t is not None:
                return t
    return None


def _verify_same_model(group, entries):
    """Raise `ModelMismatchError` on every rank unless all ranks hold the same parameters/buffers.

    Cheap when they agree (one allgather of a digest); on disagreement every
    rank fetches every rank's list (JSON text, no pickling) and computes the
    same message, so all ranks fail together instead of hanging later.
    """
    if group.size == 1:
        return
    from .collectives import all_gather
    text = json.dumps(entries, separators=(",", ":")).encode()
    digest = np.frombuffer(hashlib.sha256(text).digest(), np.int64)
    mine = np.concatenate([[len(entries)], digest]).astype(np.int64)
    allfp = all_gather(mine, group=group)
    if (allfp == allfp[0]).all():
        return
    lengths = all_gather(np.array([len(text)], np.int64), group=group)[:, 0]
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:len(text)] = np.frombuffer(text, np.uint8)
    everything = all_gather(padded, group=group)
    lists = [json.loads(everything[r, :lengths[r]].tobytes().decode()) for r in range(group.size)]
    raise ModelMismatchError(_mismatch_message(lists, group.rank))


def _describe(e):
    return f"{e[0]} {e[1]!r} with shape {tuple(e[2])} and dtype {np.dtype(e[3]).name}"


def _mismatch_message(lists, rank):
    ref = lists[0]
    differing = [r for r in range(1, len(lists)) if lists[r] != ref]
    r = differing[0]
    other = lists[r]
    detail = None
    for k in range(min(len(ref), len(other))):
        if ref[k] != other[k]:
            detail = (f"entry #{k} is {_describe(ref[k])} on rank 0 but {_describe(other[k])} on rank {r}")
            break
    if detail is None:
        longer, lr, shorter_rank = (ref, 0, r) if len(ref) > len(other) else (other, r, 0)
        k = min(len(ref), len(other))
        detail = (f"rank 0 has {len(ref)} entries and rank {r} has {len(other)}; the first extra one is "
                  f"{_describe(longer[k])} on rank {lr}, missing on rank {shorter_rank}")
    return (f"DistributedDataParallel: rank {rank}: the model differs across ranks (ranks {differing} differ "
            f"from rank 0): {detail}. Every rank must build the same model before wrapping it.")
