"""`ShardedOptimizer`: the UPDATE done once per parameter element across the ranks (ZeRO stage 1).

Data-parallel ranks hold identical parameters and would run identical updates with identical
optimizer state. Here each rank owns a contiguous slice of every DDP gradient bucket (balanced by
bytes, starting on a 64-byte boundary), keeps optimizer state for its slices only and updates
only them. Two ways to get there, the same arithmetic:

* **any topology** (``shared_memory=False``, or ranks on different nodes): DDP hands each full
  bucket to a reduce-scatter instead of an allreduce (rank r receives the sum of its slice only,
  while backward still runs), ``step()`` applies the rule to the slice with the 1/N average
  folded into the update (the built-in kernels read the gradient once anyway), and an in-place
  all-gather per bucket copies every rank's updated slice into every rank's parameters. The
  parameters of a bucket are views into one flat array laid out like the bucket, so the
  all-gather writes straight into them. Traffic: one allreduce's worth.
* **node-shared** (default when ranks share a node): the parameters (one copy per node) and every
  rank's gradient buckets live in MPI shared-memory windows. After backward, a node barrier; each
  local rank sums its slice of all local ranks' buckets by reading them directly, (with several
  nodes: allreduces that partial sum with the same local rank of the other nodes,) updates its
  slice of the shared parameters, and a second node barrier publishes the step. No all-gather
  and no copy into MPI buffers. State per rank is 1/(ranks per node). Every rank flags each
  bucket it has finished (a third, tiny window), so a rank that waits at the first barrier for
  slower peers reduces the buckets all of them have finished meanwhile.

Rules see flat 1-D slices that may cut across parameters: any ELEMENTWISE rule works (SGD,
Adam, AdamW and most registered rules); a rule needing a whole parameter (a norm, its shape)
does not. ``state_dict()`` is the unsharded optimizer's format (interchangeable with
``optim.Adam(...).state_dict()``) and is built by ``consolidate_state_dict(to=r)`` one bucket
and one state array at a time; ``load_state_dict`` takes such a dict on every rank and keeps
this rank's slices, so a checkpoint written by N ranks loads on M ranks.
"""
import atexit
import os
import time

import numpy as np

from ..autograd.grad_mode import enable_grad
from ..autograd.tensor import Tensor
from .ddp import DistributedDataParallel
from . import shared_memory as _shm


NODE_BUCKET_CAP_MB = 1.0


def slice_bounds(n, parts, itemsize, align=_shm.ALIGN):
    """``parts + 1`` boundaries splitting ``n`` elements into contiguous slices of nearly equal bytes,
    each starting on a multiple of ``align`` bytes (so slice kernels get aligned vector loads)."""
    step = max(1, align // itemsize)
    bounds = [0]
    for r in range(1, parts):
        b = int(round(n * r / parts / step)) * step
        bounds.append(min(n, max(bounds[-1], b)))
    bounds.append(n)
    return bounds


class _Done:
    """A communication that needs no waiting; ``wait()`` gives DDP back its bucket."""

    __slots__ = ("result",)

    def __init__(self, result):
        self.result = result

    def wait(self):
        return self.result


class _Piece:
    """One DDP bucket as the sharded optimizer sees it: its parameters' flat storage and this rank's slice."""

    def __init__(self, bucket, params, parts, part):
        self.index = bucket.index
        self.bucket = bucket
        self.dtype = bucket.dtype
        self.indices = list(bucket.indices)
        self.shapes = [params[i].data.shape for i in self.indices]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64).tolist()
        self.n = self.offsets[-1]
        self.bounds = slice_bounds(self.n, parts, self.dtype.itemsize)
        self.lo, self.hi = self.bounds[part], self.bounds[part + 1]
        self.counts = np.diff(self.bounds).astype(np.int64)
        self.displs = np.array(self.bounds[:-1], np.int64)
        self.pflat = None     # the parameters, flat (views of it are the params' .data)
        self.grad = None      # this rank's reduced gradient slice
        self.seg = None       # Tensor over pflat[lo:hi]: what the inner optimizer "optimizes"
        self.gslots = None    # node-shared: every local rank's copy of this bucket's gradients
        self.reduced = False

    def bind_params(self, params, flat):
        """Make the bucket's parameters views into ``flat`` (after copying their values in)."""
        for i, off, sz, shape in zip(self.indices, self.offsets, self.sizes, self.shapes):
            view = flat[off:off + sz].reshape(shape)
            if params[i].data is not view:
                view[...] = params[i].data
            params[i].data = view
        self.pflat = flat


class ShardedOptimizer:
    """``ShardedOptimizer(ddp_model, optim.Adam, lr=1e-3, ...)``: a sharded update of ``ddp_model``'s parameters.

    ``optimizer``: an `Optimizer` class (``optim.SGD``, ``optim.Adam``, ...) or a registered rule
    name (``"adamw"``); the hyperparameters go to it. ``shared_memory``: ``"auto"`` (default: the
    node-shared path when ranks share a node), ``True`` or ``False`` (always the any-topology
    path). ``ranks_per_node``: treat consecutive groups of this many ranks as nodes (to exercise
    the hierarchical path on one machine). Use it as any optimizer: ``zero_grad()``, ``step()``,
    ``param_groups`` (schedules work), ``state`` (this rank's slices' state only).
    """

    # Node-shared path: reduce finished buckets while waiting for slower local ranks (False: after
    # the barrier only; the results are the same bit for bit, bench/sharded.py compares the timing).
    early_reduction = True

    def __init__(self, model, optimizer="adam", *, shared_memory="auto", ranks_per_node=None, **hyperparameters):
        if not isinstance(model, DistributedDataParallel):
            raise TypeError(f"ShardedOptimizer: expected a DistributedDataParallel model, got {type(model).__name__} "
                            "(wrap it first: dt.DistributedDataParallel(module))")
        if shared_memory not in ("auto", True, False):
            raise ValueError(f"ShardedOptimizer: shared_memory must be 'auto', True or False, got {shared_memory!r}")
        if isinstance(model._hook_state, ShardedOptimizer):
            raise RuntimeError(f"ShardedOptimizer: rank {model.group.rank}: this DistributedDataParallel already has a "
                               "ShardedOptimizer; create one per model")
        if ranks_per_node is not None and (isinstance(ranks_per_node, bool) or not isinstance(ranks_per_node, int)
                                           or ranks_per_node < 1):
            raise ValueError(f"ShardedOptimizer: ranks_per_node must be a positive integer, got {ranks_per_node!r}")
        # Check the optimizer and its hyperparameters before the model is touched.
        make = _optimizer_factory(optimizer, hyperparameters)
        make([Tensor(np.zeros(1), requires_grad=True)])
        self.ddp = model
        self.group = group = model.group
        self.rank, self.world_size = group.rank, group.size
        self.node = None
        if group.size > 1 and shared_memory is not False:
            use = shared_memory is True or ranks_per_node is not None
            if not use:     # "auto": every rank must decide the same way
                from .collectives import all_reduce
                local = np.array([group.comm.local_size], np.int64)
                use = int(all_reduce(local, "min", group=group)[0]) > 1
            if use:
                self.node = _shm.Node(group, ranks_per_node)
        self.node_shared = self.node is not None
        if self.node_shared:
            parts, part = self.node.local_size, self.node.local_rank
        else:
            parts, part = group.size, group.rank

        # Node-shared buckets cost no message each, only a flag: smaller ones let a rank that waits
        # for its peers reduce more of the step's gradients meanwhile.
        buckets = model._attach_sharded(self, _ShardedOptimizer_hook, solo=not self.node_shared,
                                        cap_mb=NODE_BUCKET_CAP_MB if self.node_shared else None)
        params = model._params
        self._params = params
        self._names = model._names
        self._pieces = [_Piece(b, params, parts, part) for b in buckets]
        self.window_bytes = {}
        if self.node_shared:
            self._place_in_shared_memory()
        else:
            for pc in self._pieces:
                if pc.bucket.solo:      # one parameter: its own array is the flat storage
                    pc.bind_params(params, params[pc.indices[0]].data.reshape(-1))
                else:
                    pc.bind_params(params, np.empty(pc.n, pc.dtype))
                pc.grad = np.zeros(pc.hi - pc.lo, pc.dtype)
        for pc in self._pieces:
            pc.seg = Tensor(pc.pflat[pc.lo:pc.hi], requires_grad=True)
            pc.seg._grad = pc.grad

        self.optimizer = make([pc.seg for pc in self._pieces])
        self.rule = self.optimizer.rule
        self._steps = 0
        self._consolidated = None
        self.last_step_stats = None
        if self.node_shared:
            atexit.register(self.close)

    # -- the optimizer interface ----------------------------------------------------
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        """This rank's state: one entry per bucket slice, arrays of the slice's length."""
        return self.optimizer.state

    @property
    def defaults(self):
        return self.optimizer.defaults

    def zero_grad(self, set_to_none=True):
        for p in self._params:
            if set_to_none:
                p._grad = None
            elif p._grad is not None:
                p._grad[...] = 0

    def step(self, closure=None):
        """Update this rank's slices (gradients averaged over all ranks), then publish them to every rank."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        missing = [n for n, p in zip(self._names, self._params) if p._grad is None]
        if len(missing) == len(self._params):
            return loss              # no backward since zero_grad: nothing to do, as for any optimizer
        if self.ddp._hook_state is not self:
            raise RuntimeError(f"ShardedOptimizer: rank {self.rank}: the DistributedDataParallel's comm hook was "
                               "replaced after the sharded optimizer was created; it reduces the buckets itself")
        if missing:
            raise RuntimeError(f"ShardedOptimizer: rank {self.rank}: {len(missing)} parameter(s) have no gradient on "
                               f"any rank: {', '.join(missing)}. The sharded update covers whole buckets, so every "
                               "parameter needs a gradient (unused on some ranks is fine with "
                               "find_unused_parameters=True)")
        stale = [pc.index for pc in self._pieces if not pc.reduced]
        if stale:
            raise RuntimeError(f"ShardedOptimizer: rank {self.rank}: step() without a synchronised backward since "
                               f"the last step (buckets {stale} were not reduced; the last backward ran inside "
                               "no_sync()?)")
        t0 = time.perf_counter()
        self._early = 0
        group = self.optimizer.param_groups[0]
        hp = {k: v for k, v in group.items() if k != "params"}
        scale = 1.0 / self.world_size
        if self.node_shared:
            self._step_node_shared(hp, scale)
        else:
            self._step_any_topology(hp, scale)
        for pc in self._pieces:
            pc.reduced = False
        self._steps += 1
        self._consolidated = None
        # reduced_early: buckets reduced while waiting for slower local ranks (node-shared path)
        self.last_step_stats = {"step_s": time.perf_counter() - t0, "reduced_early": self._early}
        return loss

    def _update(self, pc, hp, scale):
        seg = pc.seg
        state = self.optimizer.state.get(seg)
        if state is None:
            state = self.optimizer.state[seg] = self.rule.init_state(seg.data, hp)
        if self.optimizer.fused:
            self.rule.update_scaled(seg.data, pc.grad, state, hp, scale)
        else:
            self.rule.reference(seg.data, pc.grad * pc.dtype.type(scale) if scale != 1 else pc.grad, state, hp)

    def _step_any_topology(self, hp, scale):
        works = []
        for pc in self._pieces:
            if self.world_size == 1:
                pc.grad = pc.bucket.buffer      # the bucket itself (a solo bucket adopts a new array each step)
            self._update(pc, hp, scale)
            if self.world_size > 1:          # publish this bucket while the next one is updated
                works.append(_shm.iallgather_inplace(self.group, pc.pflat, pc.counts, pc.displs,
                                                     f"all-gather parameters, bucket {pc.index} (step {self._steps})"))
        for w in works:
            w.wait()

    def _step_node_shared(self, hp, scale):
        node = self.node
        # Every local rank must be done with backward (which reads the shared parameters) before
        # anyone updates them. While this rank waits for the slower ones, it already reduces its
        # slice of every bucket that all local ranks have finished (their `ready` flags say so):
        # a finished bucket is not written again before the step is published.
        work = node.start_barrier(f"gradients ready (step {self._steps})")
        todo = self._reduce_ready_while(work) if self.early_reduction else list(self._pieces)
        self._early = len(self._pieces) - len(todo)
        node.finish_barrier(work)
        for pc in todo:
            self._reduce_node(pc)
        works = []
        if node.nodes > 1:
            works = [node.cross_allreduce(pc.grad, f"allreduce slice across nodes, bucket {pc.index} "
                                                   f"(step {self._steps})") for pc in self._pieces]
        for k, pc in enumerate(self._pieces):
            if works:
                works[k].wait()
            self._update(pc, hp, scale)
        node.barrier(f"parameters published (step {self._steps})")

    def _reduce_node(self, pc):
        s = slice(pc.lo, pc.hi)
        slots = pc.gslots
        if len(slots) == 1:
            pc.grad[...] = slots[0][s]
        else:                       # the same order on every rank and node, whenever it runs
            np.add(slots[0][s], slots[1][s], out=pc.grad)
            for q in range(2, len(slots)):
                pc.grad += slots[q][s]

    def _reduce_ready_while(self, work, patience=0.05):
        """Reduce the buckets every local rank has finished until ``work`` (the barrier) completes or
        nothing new is ready for ``patience`` seconds; returns the pieces still to reduce."""
        from .progress import POLL_INTERVAL
        # Wait as the progress engine does: sleep-poll when ranks outnumber cores, else yield the core.
        if self.group.engine.wait_mode == "sleep" or not hasattr(os, "sched_yield"):
            def pause():
                time.sleep(POLL_INTERVAL)
        else:
            pause = os.sched_yield
        todo = list(self._pieces)
        target = self.ddp._step         # synchronised backward passes so far, the same on every rank
        flags = self._ready_flags
        last = time.perf_counter()
        while todo:
            ready = [pc for pc in todo if all(int(f[pc.index]) == target for f in flags)]
            if ready:
                self.node.sync()
                for pc in ready:
                    self._reduce_node(pc)
                    todo.remove(pc)
                last = time.perf_counter()
                continue
            if work.is_completed() or time.perf_counter() - last > patience:
                break
            pause()
        return todo

    def _publish_ready(self, pc):
        """Node-shared path, from DDP's hook: this rank's bucket ``pc`` is complete for this step."""
        # The flag is the number of this synchronised backward pass (DDP counts them), not the step:
        # a second synchronised backward before a step must not look finished after the first.
        self.node.sync()            # the gradient writes land before the flag does
        self._ready_flags[self.node.local_rank][pc.index] = self.ddp._step + 1

    # -- node-shared storage --------------------------------------------------------------
    def _place_in_shared_memory(self):
        node, params = self.node, self._params
        offsets, total = [], 0
        for pc in self._pieces:
            offsets.append(total)
            total += _shm.aligned(pc.n * pc.dtype.itemsize)
        # One copy of the parameters per node (local rank 0's segment); one gradient copy per rank.
        _, pseg = node.allocate(total if node.local_rank == 0 else 0)
        _, gseg = node.allocate(total)
        # One int64 per bucket and rank: the last synchronised backward pass that completed it.
        _, fseg = node.allocate(8 * len(self._pieces))
        self._ready_flags = [f.view(np.int64) for f in fseg]
        self._ready_flags[node.local_rank][...] = 0
        self.window_bytes = {"parameters": total if node.local_rank == 0 else 0, "gradients": total,
                             "parameters_per_node": total, "gradients_per_node": total * node.local_size}
        for pc, off in zip(self._pieces, offsets):
            nbytes = pc.n * pc.dtype.itemsize
            flat = pseg[0][off:off + nbytes].view(pc.dtype)
            if node.local_rank == 0:
                for i, o, sz in zip(pc.indices, pc.offsets, pc.sizes):
                    flat[o:o + sz] = params[i].data.reshape(-1)
            pc.gslots = [g[off:off + nbytes].view(pc.dtype) for g in gseg]
            pc.bucket.rebind(pc.gslots[node.local_rank])
            pc.grad = np.zeros(pc.hi - pc.lo, pc.dtype)
            pc.flat_pending = flat
        node.barrier("parameters placed in shared memory")
        for pc in self._pieces:
            pc.bind_params(params, pc.flat_pending)
            del pc.flat_pending

    def close(self):
        """Give the parameters private memory again and free the shared windows (collective)."""
        if self.node is None:
            return
        for pc in self._pieces:
            pc.bind_params(self._params, pc.pflat.copy())
            pc.seg.data = pc.pflat[pc.lo:pc.hi]
        for p in self._params:
            p._grad = None
        for pc in self._pieces:
            if pc.bucket.buffer is not None:
                pc.bucket.rebind(np.zeros(pc.n, pc.dtype))
            pc.gslots = None
        self.node.free()
        self.node = None

    # -- state dicts ------------------------------------------------------------------------
    def _sliced_names(self, state, seg):
        # The rule's own list of parameter-shaped state if it has one, else: arrays of the slice's shape.
        like = tuple(getattr(self.rule, "state_like_param", ()) or ())
        if like:
            return [k for k in state if k in like]
        return [k for k, v in state.items() if isinstance(v, np.ndarray) and v.shape == seg.data.shape]

    def consolidate_state_dict(self, to=0):
        """Collect the full (unsharded) state dict on rank ``to``; call it on every rank. Streams one
        bucket and one state array at a time: rank ``to`` holds the result plus one bucket's worth."""
        from ..optim.optimizer import _plain
        if not 0 <= to < self.world_size:
            raise ValueError(f"consolidate_state_dict: to={to} is not a rank of a group of size {self.world_size}")
        root = self.rank == to
        full = {}
        for pc in self._pieces:
            st = self.optimizer.state.get(pc.seg)
            if st is None:
                continue
            sliced = self._sliced_names(st, pc.seg)
            entries = [{} for _ in pc.indices]
            for name, value in st.items():
                if name in sliced:
                    buf = self._gather_slice(pc, value, to)
                    if root:
                        for e, off, sz, shape in zip(entries, pc.offsets, pc.sizes, pc.shapes):
                            e[name] = buf[off:off + sz].reshape(shape).copy()
                elif root:
                    for e in entries:
                        e[name] = _plain(value)
            if root:
                for i, e in zip(pc.indices, entries):
                    full[i] = e
        if root:
            groups = self.optimizer.state_dict()["param_groups"]
            groups[0]["params"] = list(range(len(self._params)))
            self._consolidated = {"state": {i: full[i] for i in sorted(full)}, "param_groups": groups}
        else:
            self._consolidated = None
        return self._consolidated

    def _gather_slice(self, pc, value, to):
        value = np.ascontiguousarray(value)
        if self.world_size == 1:
            return value
        buf = np.empty(pc.n, value.dtype) if self.rank == to else None
        if self.node_shared:
            counts, displs = self._node_gather_layout(pc, to)
            send = value if counts[self.rank] else value[:0]
        else:
            counts, displs, send = pc.counts, pc.displs, value
        _shm.igather(self.group, send, buf, counts, displs, to,
                     f"gather optimizer state, bucket {pc.index}").wait()
        return buf

    def _node_gather_layout(self, pc, to):
        # The ranks of rank `to`'s node hold one full copy of the state; the others send nothing.
        node = self.node
        info = node.placement     # (node index, local rank) of every rank
        counts = np.zeros(self.world_size, np.int64)
        displs = np.zeros(self.world_size, np.int64)
        for q in range(self.world_size):
            ni, lr = info[q]
            if ni == info[to][0]:
                counts[q] = pc.counts[lr]
                displs[q] = pc.displs[lr]
        return counts, displs

    def state_dict(self):
        """The consolidated state dict (run ``consolidate_state_dict(to=rank)`` on every rank first; one
        process needs no consolidation). Unsharded format: loads into a plain optimizer too."""
        if self.world_size == 1 and self._consolidated is None:
            self.consolidate_state_dict(0)
        if self._consolidated is None:
            raise RuntimeError(f"ShardedOptimizer.state_dict: rank {self.rank}: no consolidated state here; call "
                               "consolidate_state_dict(to=r) on every rank after the last step, then state_dict() "
                               "on rank r")
        return self._consolidated

    def validation_view(self):
        """A plain optimizer over the model's parameters with this one's rule and hyperparameters: what a
        checkpoint (written in the unsharded format) is validated against before `load_state_dict`."""
        from .. import optim
        hp = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        plain = optim.create(self.rule.name, self._params, **{k: v for k, v in hp.items()
                                                              if k in self.rule.defaults})
        plain.param_groups[0].clear()
        plain.param_groups[0].update(self.param_groups[0], params=list(self._params))
        return plain

    def load_state_dict(self, state_dict):
        """Load an unsharded state dict (from `state_dict`, or from a plain optimizer over the same
        parameters) on every rank; each rank keeps its own slices."""
        label = "ShardedOptimizer.load_state_dict"
        try:
            groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{label}: expected a dict with 'state' and 'param_groups'") from None
        if len(groups) != 1:
            raise ValueError(f"{label}: the saved state has {len(groups)} parameter groups; a sharded optimizer "
                             "has one")
        order = [int(i) for i in groups[0]["params"]]
        if len(order) != len(self._params):
            raise ValueError(f"{label}: the saved state is for {len(order)} parameters, this model has "
                             f"{len(self._params)}")
        by_param = {}
        for pos, key in enumerate(order):
            st = saved_state.get(key, saved_state.get(str(key)))
            if st is not None:
                by_param[pos] = st
        seg_state = {}
        for k, pc in enumerate(self._pieces):
            have = [i in by_param for i in pc.indices]
            if not any(have):
                continue
            if not all(have):
                missing = [self._names[i] for i, h in zip(pc.indices, have) if not h]
                raise ValueError(f"{label}: the saved state has no entry for {', '.join(missing)} but has one for "
                                 "other parameters of the same bucket; the sharded optimizer needs all or none")
            seg_state[k] = self._slice_entries(pc, [by_param[i] for i in pc.indices], label)
        hp = {k: v for k, v in groups[0].items() if k != "params"}
        self.optimizer.load_state_dict({"state": seg_state,
                                        "param_groups": [dict(hp, params=list(range(len(self._pieces))))]})
        self._consolidated = None

    def _slice_entries(self, pc, entries, label):
        like = tuple(getattr(self.rule, "state_like_param", ()) or ())
        out = {}
        for name, first in entries[0].items():
            values = [e.get(name) for e in entries]
            arrays = [np.asarray(getattr(v, "data", v)) if v is not None else None for v in values]
            is_sliced = name in like if like else all(a is not None and a.shape == s
                                                      for a, s in zip(arrays, pc.shapes))
            if is_sliced:
                for i, a, s in zip(pc.indices, arrays, pc.shapes):
                    if a is None or a.shape != s:
                        raise ValueError(f"{label}: state {name!r} of parameter {self._names[i]!r} has shape "
                                         f"{None if a is None else a.shape}, the parameter has shape {s}")
                parts = []
                for a, off, sz in zip(arrays, pc.offsets, pc.sizes):
                    lo, hi = max(pc.lo, off), min(pc.hi, off + sz)
                    if lo < hi:
                        parts.append(a.reshape(-1)[lo - off:hi - off])
                out[name] = (np.concatenate(parts) if parts else np.zeros(0, pc.dtype)).astype(pc.dtype)
            else:
                ref = arrays[0]
                for i, a in zip(pc.indices, arrays):
                    if a is None or a.shape != ref.shape or not np.array_equal(a, ref):
                        raise ValueError(f"{label}: state {name!r} differs between parameters of one bucket "
                                         f"({self._names[pc.indices[0]]!r}: {values[0]!r}, {self._names[i]!r}: "
                                         f"{values[pc.indices.index(i)]!r}); the sharded optimizer keeps one "
                                         "value per bucket slice")
                out[name] = first
        return out

    def __repr__(self):
        path = (f"node-shared, {self.node.local_size} rank(s) per node x {self.node.nodes} node(s)"
                if self.node_shared else "any topology")
        return (f"ShardedOptimizer({self.rule.name!r}, rank {self.rank} of {self.world_size}, {path}, "
                f"{len(self._pieces)} bucket slices)")


def _optimizer_factory(optimizer, hyperparameters):
    """``params -> Optimizer`` for an Optimizer class or a registered rule name."""
    from .. import optim
    if isinstance(optimizer, str):
        return lambda params: optim.create(optimizer, params, **hyperparameters)
    if isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer):
        return lambda params: optimizer(params, **hyperparameters)
    raise TypeError(f"ShardedOptimizer: optimizer must be an Optimizer class (e.g. optim.Adam) or a registered rule "
                    f"name, got {optimizer!r}")


def _ShardedOptimizer_hook(opt, bucket):
    """DDP's comm hook while a ShardedOptimizer is attached: reduce-scatter the bucket into this rank's
    slice (any topology), or nothing (node-shared: the step reads the peers' buckets itself)."""
    pc = opt._pieces[bucket.index]
    pc.reduced = True
    buf = bucket.buffer()
    if opt.node_shared:
        opt._publish_ready(pc)
        return _Done(buf)
    if opt.world_size == 1:
        return _Done(buf)
    return _shm.ireduce_scatter(opt.group, buf, pc.grad, pc.counts,
                                bucket.label.replace("allreduce", "reduce-scatter"), finish=lambda: buf)
