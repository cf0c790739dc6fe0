"""Resuming a config job: the step plan both sides agree on, and the checkpoint read once.

Only rank 0 reads the run directory: it reads the newest checkpoint's bytes and broadcasts them
(a length, then the bytes, through the MPI buffer API: never pickled), so resume works when the
other ranks run on hosts that cannot see the run directory. Every rank then parses and validates
the same bytes, so every rank reaches the same verdict and a bad checkpoint stops all of them
with the same message (no rank is left waiting in a collective).
"""
import os

import numpy as np

from . import checkpoint as ckpt


def steps_plan(train, n_train, world_size):
    """(steps per epoch, total steps) of a job with `n_train` training samples on `world_size` ranks,
    exactly as the trainer's DistributedSampler + DataLoader count them."""
    per_rank = -(-n_train // world_size)                      # the sampler pads to this
    batches = -(-per_rank // train.batch_size)                # DataLoader keeps the last partial batch
    spe = batches // train.grad_accum_steps
    total = train.epochs * spe if not train.max_steps else min(train.max_steps, train.epochs * spe)
    return spe, total


class _Bcast:
    """Broadcast from rank 0: through the process group once it exists (the stall detector watches it),
    before that (the rank reads its config first, to initialise the group with its settings) through
    mpi4py's COMM_WORLD buffer API."""

    def __init__(self):
        from .. import distributed as dist
        from ..distributed import process_group as pg
        self.dist = dist if dist.is_initialized() else None
        self.comm = None
        if self.dist is not None:
            self.rank, self.size = dist.get_rank(), dist.get_world_size()
        elif pg._launched_by_mpi():
            from mpi4py import MPI
            self.comm = MPI.COMM_WORLD
            self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        else:
            self.rank, self.size = 0, 1

    def __call__(self, arr):
        if self.dist is not None:
            self.dist.broadcast(arr, src=0)
        else:
            self.comm.Bcast(arr, root=0)


def share_bytes(read):
    """`read()` on rank 0 (bytes, or raises a user error); every rank gets the bytes, or the same error.
    In a 1-process job it is just `read()`."""
    from .job import _user_errors
    bcast = _Bcast()
    if bcast.size == 1:
        return read()
    kinds = _user_errors()
    data, error, kind = b"", None, 0
    if bcast.rank == 0:
        try:
            data = bytes(read())
        except kinds as exc:
            error = exc
            kind = 1 + next(i for i, k in enumerate(kinds) if isinstance(exc, k))
            data = str(exc).encode("utf-8", "replace")
    head = np.array([len(data), kind], dtype=np.int64)
    bcast(head)
    buf = np.frombuffer(data, dtype=np.uint8).copy() if bcast.rank == 0 else np.empty(int(head[0]), np.uint8)
    chunk = 1 << 30                                           # MPI counts are 32-bit
    for start in range(0, len(buf), chunk):
        bcast(buf[start:start + chunk])
    if head[1]:
        if error is not None:
            raise error
        raise kinds[int(head[1]) - 1](buf.tobytes().decode("utf-8", "replace"))     # rank 0's error, here too
    return buf.tobytes()


def newest_checkpoint(ckpt_dir):
    path = ckpt.latest(ckpt_dir)
    if path is None:
        raise ckpt.CheckpointError(f"--resume: no checkpoint in {ckpt_dir}")
    return path


def read_newest(ckpt_dir):
    """(path, file bytes) of the newest checkpoint, read by rank 0 and shared with every rank."""
    holder = {}

    def read():
        path = newest_checkpoint(ckpt_dir)
        holder["path"] = path
        name = os.path.basename(path).encode()
        data = ckpt.read_bytes(path)
        return len(name).to_bytes(4, "little") + name + data    # the file name travels with its bytes

    blob = share_bytes(read)
    n = int.from_bytes(blob[:4], "little")
    path = os.path.join(ckpt_dir, blob[4:4 + n].decode())
    return holder.get("path", path), blob[4 + n:]


def load_and_validate(path, data, model, optimizer, schedule, world_size, cfg, n_train, reference_optim_state=None,
                      interval_len=4, hook_state=None, rank=0):
    """Read, validate completely and only then load the checkpoint into model/optimizer/schedule (and
    `hook_state`, a comm hook's state with ``load_state_dict``: this rank's arrays). Returns the
    checkpoint's meta. Raises CheckpointError before anything is changed."""
    loaded = ckpt.read(path, data)
    spe, total = steps_plan(cfg.train, n_train, world_size)
    view = getattr(optimizer, "validation_view", None)     # a sharded optimizer: check the unsharded format
    ckpt.validate(path, loaded, model, view() if view else optimizer, schedule, world_size, total_steps=total,
                  steps_per_epoch=spe,                  grad_accum_steps=cfg.train.grad_accum_steps, seed=cfg.train.seed, model_name=cfg.model.name,
                  reference_optim_state=reference_optim_state, interval_len=interval_len)
    arrays, optim_state, meta = loaded
    load_hook_state(path, meta, hook_state, rank, model)
    try:
        model.load_state_dict(arrays)
        optimizer.load_state_dict(optim_state)
        if schedule is not None:
            schedule.load_state_dict(meta["schedule"])
    except (ValueError, TypeError, KeyError) as exc:       # validate() should have caught it; never a traceback
        raise ckpt.CheckpointError(f"checkpoint {path}: cannot be loaded ({exc})") from None
    return meta


def load_hook_state(path, meta, hook_state, rank, model):
    """Load this rank's comm-hook arrays into `hook_state` (which checks them all before it changes
    anything), or CheckpointError: the checkpoint has none for a hook that keeps state, has some the
    job's hook cannot take, or they do not fit the model."""
    saved = meta.get("comm_hook_arrays") or {}
    stateful = hook_state is not None and hasattr(hook_state, "load_state_dict")
    if not stateful:
        if saved:
            raise ckpt.CheckpointError(f"checkpoint {path} holds comm hook state ({', '.join(sorted(saved)[:3])}) "
                                       "but this job's comm hook keeps none")
        return
    prefix = f"rank{rank}/"
    mine = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
    if not mine:
        raise ckpt.CheckpointError(f"checkpoint {path} holds no comm hook state for rank {rank} "
                                   f"(comm_hook/{prefix}...); it was written without this job's comm hook")
    shapes = {n: tuple(p.data.shape) for n, p in model.named_parameters()}
    try:
        hook_state.load_state_dict(mine, shapes=shapes)
    except (ValueError, TypeError, KeyError) as exc:
        raise ckpt.CheckpointError(f"checkpoint {path}: its comm hook state for rank {rank} cannot be used ({exc})") \
            from None


def restore(ckpt_dir, model, optimizer, schedule, world_size, cfg, n_train, rank, interval_len=4, hook_state=None):
    """The rank side of --resume: rank 0 reads the newest checkpoint, every rank validates the same
    bytes and loads them; only then does rank 0 clean up temporary files a killed save left.
    Returns the checkpoint's meta."""
    path, data = read_newest(ckpt_dir)
    meta = load_and_validate(path, data, model, optimizer, schedule, world_size, cfg, n_train,
                             interval_len=interval_len, hook_state=hook_state, rank=rank)
    if rank == 0:
        ckpt.remove_stale_temps(ckpt_dir)
    return meta
