"""BatchNorm1d/2d and SyncBatchNorm (PyTorch's parameters, buffers, state-dict keys and updates).

Buffers: running_mean (zeros), running_var (ones), num_batches_tracked (int64, counts training
forwards; with momentum=None the running statistics are the cumulative average over them).
SyncBatchNorm all-reduces the batch statistics over the ranks in forward and the two gradient
sums in backward (see ops/batch_norm.py), so N ranks x batch B train like 1 process x batch N*B.
"""
import numpy as np

from .. import ops
from .module import Module
from .parameter import Parameter


class _BatchNorm(Module):
    _dims = ()        # accepted input ranks

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be > 0, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x):
        if self._dims and x.ndim not in self._dims:
            raise ValueError(f"{type(self).__name__}: expected a {' or '.join(f'{d}-d' for d in self._dims)} input "
                             f"(N, C{', ...' if max(self._dims) > 2 else ''}), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): input of shape {tuple(x.shape)} has "
                             f"{x.shape[1]} channels")

    def _reduce(self):
        return None

    def forward(self, x):
        self._check_input(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:          # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or not self.track_running_stats
        tracked = not self.training or self.track_running_stats
        return ops.batch_norm(x, self.running_mean if tracked else None, self.running_var if tracked else None,
                              self.weight, self.bias, use_batch_stats, factor, self.eps,
                              self._reduce() if use_batch_stats else None)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L)."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W)."""
    _dims = (4,)


class SyncBatchNorm(_BatchNorm):
    """Batch statistics over every rank of ``process_group`` (default: the whole job) while training.

    Any input (N, C, ...) with at least 2 dims. In a one-rank job (or in eval mode) it is plain
    BatchNorm. Every rank must call it at the same points (the reductions are collectives)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.process_group = process_group

    def _check_input(self, x):
        if x.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected input (N, C, ...) with at least 2 dims, got {tuple(x.shape)}")
        super()._check_input(x)

    def _reduce(self):
        from .. import distributed as dist
        if not dist.is_initialized() or dist.get_world_size() <= 1:
            return None
        group = self.process_group
        return lambda buf: dist.all_reduce(buf, op="sum", group=group)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm*d replaced by a SyncBatchNorm holding the same parameters
        and buffers (the same Tensors); returns the new module when ``module`` itself is one."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            new = cls.__new__(cls)
            Module.__init__(new)
            new.num_features, new.eps, new.momentum = module.num_features, module.eps, module.momentum
            new.affine, new.track_running_stats = module.affine, module.track_running_stats
            new.process_group = process_group
            for name in ("weight", "bias"):
                new.register_parameter(name, module._parameters[name])
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                new.register_buffer(name, module._buffers[name])
            new.train(module.training)
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    module._modules[name] = converted
        return module
