"""PowerSGD gradient compression (Vogels, Karimireddy, Jaggi, NeurIPS 2019), as PyTorch's
``powerSGD_hook`` defines it, on disttrain's comm-hook doors.

Per bucket, each parameter's gradient is viewed as a matrix M of shape (n, m) = (shape[0],
prod(shape[1:])) -- a conv weight as (out, in*kh*kw), a vector as (n, 1). With
r = min(n, m, matrix_approximation_rank), a matrix is compressed when
(n + m) * r * min_compression_rate < n * m; the rest (all vectors) travel uncompressed.
For the compressed ones:

1. M += error memory (error feedback), P = M Q (Q warm-started: the previous step's, the
   first from a normal draw seeded by ``random_seed``, the iteration and the parameter's
   name, the same on every rank);
2. one allreduce carries the uncompressed gradients and every P of the bucket;
3. P is orthogonalised (Gram-Schmidt, ``epsilon`` against zero columns), Q = M^T P;
4. a second allreduce (chained with `Work.then`, so its place in the collective order is
   fixed when the hook is called) carries every Q;
5. M-hat = P Q^T is the result, and the new error memory is M - M-hat.

Units (see comm_hooks' averaging contract): DDP hands the hook pre-scaled shares
x = g / world_size and the allreduces sum, so P and Q are already averages and M-hat
approximates the average gradient; the error memory is kept in share units,
``error = x - M-hat / world_size``, which is PyTorch's ``M - M-hat`` divided by the world size.

Before ``start_powerSGD_iter`` synchronised steps the hook is a plain allreduce. The state
(iteration, error memories, Qs) is keyed by parameter name, so DDP's bucket rebuild cannot
misplace it, and ``state_dict()``/``load_state_dict()`` carry it through checkpoints: a resumed
run continues bitwise as the uninterrupted one (PyTorch loses it: pytorch/pytorch#75666).
The matrix products are BLAS calls (numpy) and run, as the encoding of the 16-bit hooks does,
in the communication thread when there is one, overlapping backward.
"""
import zlib

import numpy as np

from .comm_hooks import HookParam, allreduce_hook, register_comm_hook
from .collective_check import descriptor


class PowerSGDState:
    """Hyperparameters and state of `powerSGD_hook` (one state for all buckets of one DDP model).

    matrix_approximation_rank (r, default 1), start_powerSGD_iter (plain allreduce before that many
    synchronised steps; >= 2 with error feedback or warm start, default 10), min_compression_rate
    (compress a matrix only if it shrinks at least this much, default 2), use_error_feedback,
    warm_start (default true), orthogonalization_epsilon (added to column norms, default 1e-8),
    random_seed (of the first Qs, default 0).
    """

    def __init__(self, process_group=None, matrix_approximation_rank=1, start_powerSGD_iter=10,
                 min_compression_rate=2.0, use_error_feedback=True, warm_start=True,
                 orthogonalization_epsilon=1e-8, random_seed=0):
        if isinstance(matrix_approximation_rank, bool) or not isinstance(matrix_approximation_rank, (int, np.integer)) \
                or matrix_approximation_rank < 1:
            raise ValueError(f"PowerSGDState: matrix_approximation_rank must be an integer >= 1, "
                             f"got {matrix_approximation_rank!r}")
        if isinstance(start_powerSGD_iter, bool) or not isinstance(start_powerSGD_iter, (int, np.integer)) \
                or start_powerSGD_iter < 0:
            raise ValueError(f"PowerSGDState: start_powerSGD_iter must be an integer >= 0, got {start_powerSGD_iter!r}")
        if (use_error_feedback or warm_start) and start_powerSGD_iter < 2:
            raise ValueError(f"PowerSGDState: start_powerSGD_iter must be >= 2 with use_error_feedback or warm_start "
                             f"(got {start_powerSGD_iter}): DDP rebuilds its buckets after the first step")
        if not min_compression_rate > 0:
            raise ValueError(f"PowerSGDState: min_compression_rate must be > 0, got {min_compression_rate!r}")
        if not orthogonalization_epsilon >= 0:
            raise ValueError("PowerSGDState: orthogonalization_epsilon must be >= 0, got "
                             f"{orthogonalization_epsilon!r}")
        self.process_group = process_group
        self.matrix_approximation_rank = int(matrix_approximation_rank)
        self.start_powerSGD_iter = int(start_powerSGD_iter)
        self.min_compression_rate = float(min_compression_rate)
        self.use_error_feedback = bool(use_error_feedback)
        self.warm_start = bool(warm_start)
        self.orthogonalization_epsilon = float(orthogonalization_epsilon)
        self.random_seed = int(random_seed)
        self.iter = 0           # synchronised steps seen (counted at the last bucket of each)
        self.errors = {}        # parameter name -> (n, m) error memory, in share units (this rank's)
        self.qs = {}            # parameter name -> (m, r) Q of the previous step (warm start)
        self.numel_before = self.numel_after = 0    # elements per step, of the last compressed step

    def __repr__(self):
        return (f"PowerSGDState(rank={self.matrix_approximation_rank}, start_iter={self.start_powerSGD_iter}, "
                f"min_compression_rate={self.min_compression_rate}, error_feedback={self.use_error_feedback}, "
                f"warm_start={self.warm_start}, iter={self.iter})")

    def compression_rate(self):
        """Elements a compressed step would send uncompressed / elements it sends."""
        return self.numel_before / self.numel_after if self.numel_after else 0.0

    def plan(self, shape):
        """(compress?, (n, m), r) for a gradient of ``shape``."""
        n = int(shape[0]) if len(shape) else 1
        m = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        r = min(n, m, self.matrix_approximation_rank)
        return len(shape) > 1 and (n + m) * r * self.min_compression_rate < n * m, (n, m), r

    def _initial_q(self, name, m, r, dtype):
        # Seeded by (seed, iteration, name): the same on every rank, and no generator state to checkpoint.
        key = [self.random_seed, self.iter, zlib.crc32(name.encode("utf-8"))]
        return np.random.default_rng(key).standard_normal((m, r)).astype(dtype)

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self):
        """This rank's state as named arrays: iter, error/<param>, q/<param>."""
        out = {"iter": np.array(self.iter, np.int64)}
        for name, e in self.errors.items():
            out[f"error/{name}"] = e.copy()
        for name, q in self.qs.items():
            out[f"q/{name}"] = q.copy()
        return out

    def load_state_dict(self, state, shapes=None):
        """Restore `state_dict()`'s arrays; ``shapes`` ({parameter name: shape}) lets it check that
        every memory belongs to a parameter of this model with the matching shape. Raises
        ValueError naming the first bad entry, before anything changes."""
        it = state.get("iter")
        if it is None or np.shape(it) != () or np.asarray(it).dtype.kind not in "iu" or int(it) < 0:
            raise ValueError(f"PowerSGD state: 'iter' must be an integer >= 0, got {it!r:.60}")
        errors, qs = {}, {}
        for key, arr in state.items():
            if key == "iter":
                continue
            kind, _, name = key.partition("/")
            if kind not in ("error", "q") or not name:
                raise ValueError(f"PowerSGD state: unexpected entry {key!r} (expected iter, error/<param>, q/<param>)")
            arr = np.asarray(arr)
            if arr.ndim != 2 or arr.dtype.kind != "f" or not np.isfinite(arr).all():
                raise ValueError(f"PowerSGD state: {key} must be a finite 2-d float array, got {arr.dtype} {arr.shape}")
            if shapes is not None:
                if name not in shapes:
                    raise ValueError(f"PowerSGD state: {key} names no parameter of this model")
                compress, (n, m), r = self.plan(tuple(shapes[name]))
                want = (n, m) if kind == "error" else (m, r)
                if not compress or arr.shape != want:
                    raise ValueError(f"PowerSGD state: {key} is {arr.shape}; parameter {name} {tuple(shapes[name])} "
                                     f"with matrix_approximation_rank {self.matrix_approximation_rank} needs "
                                     f"{want if compress else 'no memory (it is not compressed)'}")
            (errors if kind == "error" else qs)[name] = arr.copy()
        self.iter, self.errors, self.qs = int(it), errors, qs


def _orthogonalize(a, eps):
    """Gram-Schmidt on the columns of ``a`` in place; ``eps`` keeps a zero column finite."""
    ncols = a.shape[1]
    for i in range(ncols):
        col = a[:, i]
        col /= np.sqrt(np.dot(col, col)) + eps
        if i + 1 < ncols:
            rest = a[:, i + 1:]
            rest -= np.outer(col, col @ rest)


def powerSGD_hook(state, bucket):
    """Reduce ``bucket`` with rank-r PowerSGD compression (see the module docstring)."""
    last = bucket.is_last()
    if state.iter < state.start_powerSGD_iter:
        if last:
            state.iter += 1
        return allreduce_hook(None, bucket)

    group = bucket.group
    comm, engine = group.comm, group.engine
    buf = bucket.buffer()
    dtype = buf.dtype
    plain, packed = [], []          # uncompressed gradients; (name, M, r) of the compressed ones
    before = after = 0
    for name, g in zip(bucket.names, bucket.gradients()):
        compress, (n, m), r = state.plan(g.shape)
        before += n * m
        if compress:
            packed.append((name, g.reshape(n, m), r))
            after += (n + m) * r
        else:
            plain.append(g)
            after += n * m
    if last:
        state.iter += 1       # every bucket of this step has decided; counted once per step
    if not packed:
        return allreduce_hook(None, bucket)

    n_plain = sum(g.size for g in plain)
    first = np.empty(n_plain + sum(M.shape[0] * r for _, M, r in packed), dtype)    # [plain..., P...]
    second = np.empty(sum(M.shape[1] * r for _, M, r in packed), dtype)             # [Q...]
    ps, qs, off_p, off_q = [], [], n_plain, 0
    for name, M, r in packed:
        n, m = M.shape
        ps.append(first[off_p:off_p + n * r].reshape(n, r))
        qs.append(second[off_q:off_q + m * r].reshape(m, r))
        off_p += n * r
        off_q += m * r
        prev = state.qs.get(name) if state.warm_start else None
        qs[-1][...] = prev if prev is not None and prev.shape == (m, r) else state._initial_q(name, m, r, dtype)
    world = group.size
    ef, eps = state.use_error_feedback, state.orthogonalization_epsilon
    memories = []
    if ef:
        for name, M, _ in packed:
            e = state.errors.get(name)
            if e is None or e.shape != M.shape or e.dtype != dtype:
                e = state.errors[name] = np.zeros(M.shape, dtype)
            memories.append(e)

    def start_p():
        off = 0
        for g in plain:
            first[off:off + g.size] = g.reshape(-1)
            off += g.size
        for k, (_, M, _) in enumerate(packed):
            if ef:
                e = memories[k]
                M += e            # error feedback; the memory then holds this step's share M
                e[...] = M
            _orthogonalize(qs[k], eps)
            np.matmul(M, qs[k], out=ps[k])
        return comm.iallreduce(first, "sum")

    def start_q(_):
        off = 0
        for g in plain:
            g.reshape(-1)[...] = first[off:off + g.size]
            off += g.size
        for k, (_, M, _) in enumerate(packed):
            _orthogonalize(ps[k], eps)
            np.matmul(M.T, ps[k], out=qs[k])
        return comm.iallreduce(second, "sum")

    def decompress():
        for k, (name, M, _) in enumerate(packed):
            np.matmul(ps[k], qs[k].T, out=M)
            if ef:
                memories[k] -= M * dtype.type(1.0 / world)    # share - M-hat / world_size
            if state.warm_start:
                state.qs[name] = qs[k]
        state.numel_before, state.numel_after = before, after
        return buf

    label = bucket.label
    w = engine.submit(f"{label} [powersgd P]", start_p, start_in_thread=True,
                      desc=descriptor("all_reduce", "sum", first))
    return w.then(start_q, decompress, label=f"{label} [powersgd Q]", desc=descriptor("all_reduce", "sum", second))


def _powersgd_factory(**args):
    return PowerSGDState(**args), powerSGD_hook


register_comm_hook("powersgd", _powersgd_factory, params=(
    HookParam("matrix_approximation_rank", "int", 1, "Rank r of the low-rank approximation P Q^T.", low=1),
    HookParam("start_powerSGD_iter", "int", 10, "Plain allreduce for this many synchronised steps first (>= 2: "
              "DDP rebuilds its buckets after the first step).", low=2),
    HookParam("min_compression_rate", "float", 2.0, "Compress a matrix only when (n+m)*r times this is below n*m.",
              low=0.0),
    HookParam("use_error_feedback", "bool", True, "Add each step's compression error to the next step's gradient."),
    HookParam("warm_start", "bool", True, "Start each step's power iteration from the previous step's Q."),
    HookParam("orthogonalization_epsilon", "float", 1e-8, "Added to column norms in Gram-Schmidt (zero columns).",
              low=0.0),
    HookParam("random_seed", "int", 0, "Seed of the first Qs (the same on every rank).", low=0),
), doc="PowerSGD rank-r compression with error feedback (two allreduces per bucket).")
