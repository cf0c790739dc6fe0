"""Checks of the layers that talk across ranks, in one `mpiexec -n N` launch:
SyncBatchNorm on N ranks x batch B against BatchNorm on one process x batch N*B (values,
input gradients, summed parameter gradients, running statistics), SyncBatchNorm inside DDP,
and clip_grad_norm_ under DDP (the same norm and gradients on every rank).

Usage: mpiexec -n N python tests/mpi/model_checks.py OUTDIR  (writes results-<rank>.json)
"""
import sys

import numpy as np

import disttrain as dt
import disttrain.distributed as dist
from disttrain import nn
from checklib import Checks

group = dist.init()
RANK, N = group.rank, group.size
OUTDIR = sys.argv[1]
check = Checks(RANK)
B = 3


def full_batch(shape, seed):
    """The whole batch (N*B samples), the same on every rank; this rank holds rows RANK*B..+B."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N * B,) + shape) * 1.5 + 0.5
    w = rng.standard_normal((N * B,) + shape)       # loss = sum(out * w): upstream gradient w
    return x, w


def syncbn_equals_doubled_batch(shape):
    def run():
        c = shape[0]
        ref = (nn.BatchNorm1d if len(shape) < 3 else nn.BatchNorm2d)(c, momentum=0.3).double()
        sync = nn.SyncBatchNorm(c, momentum=0.3).double()
        rng = np.random.default_rng(7)
        for m in (ref, sync):
            m.weight.data[...] = rng.standard_normal(c) if m is ref else ref.weight.data
            m.bias.data[...] = 0.25
        for it in range(2):
            x, w = full_batch(shape, 100 + it)
            xr = dt.tensor(x, requires_grad=True)
            out_ref = ref(xr)
            (out_ref * dt.tensor(w)).sum().backward()
            sl = slice(RANK * B, RANK * B + B)
            xs = dt.tensor(x[sl], requires_grad=True)
            out = sync(xs)
            (out * dt.tensor(w[sl])).sum().backward()
            np.testing.assert_allclose(out.numpy(), out_ref.numpy()[sl], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(xs.grad.numpy(), xr.grad.numpy()[sl], rtol=1e-9, atol=1e-12)
            for p_ref, p in ((ref.weight, sync.weight), (ref.bias, sync.bias)):
                total = np.array(p.grad.numpy())
                dist.all_reduce(total)          # this rank's share; the ranks' shares add to the whole
                np.testing.assert_allclose(total, p_ref.grad.numpy(), rtol=1e-9, atol=1e-12)
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                np.testing.assert_allclose(getattr(sync, name).numpy(), getattr(ref, name).numpy(), rtol=1e-12)
    return run


def syncbn_in_ddp():
    """A converted model in DDP: after backward every rank holds the gradient one process gets with
    the whole batch and the mean loss over it."""
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    state = model.state_dict()
    sync_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(sync_model[1], nn.SyncBatchNorm) and list(sync_model.state_dict()) == list(state)
    ddp = dt.DistributedDataParallel(sync_model)
    x, w = full_batch((4,), 5)
    sl = slice(RANK * B, RANK * B + B)
    loss = (ddp(dt.tensor(x[sl])) ** 2).mean()
    loss.backward()
    dt.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    ref.load_state_dict(state)
    (ref(dt.tensor(x)) ** 2).mean().backward()
    for (name, p), (_, q) in zip(sync_model.named_parameters(), ref.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def clip_under_ddp():
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    ddp = dt.DistributedDataParallel(model)
    rng = np.random.default_rng(RANK)                 # different data per rank
    (ddp(dt.tensor(rng.standard_normal((5, 6)) * 10)) ** 2).sum().backward()
    norm = float(nn.utils.clip_grad_norm_(model.parameters(), 0.5))
    flat = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    rows = dist.all_gather(np.concatenate([[norm], flat]))
    assert np.array_equal(rows[0], rows[-1]), "ranks differ after clipping"
    assert norm > 0.5 and abs(np.linalg.norm(flat) - 0.5) < 1e-6, (norm, np.linalg.norm(flat))


check("syncbn_1d", syncbn_equals_doubled_batch((4,)))
check("syncbn_3d_input", syncbn_equals_doubled_batch((3, 5)))
check("syncbn_2d", syncbn_equals_doubled_batch((2, 3, 4)))
check("syncbn_in_ddp", syncbn_in_ddp)
check("clip_under_ddp", clip_under_ddp)
check.write(OUTDIR)
