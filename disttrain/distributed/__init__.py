"""Data parallelism over MPI (``import disttrain.distributed as dist``).

``dist.init()`` sets up the process group (MPI under ``mpiexec``, a
single-process group otherwise); collectives work on numpy arrays and
Tensors; `DistributedDataParallel` averages gradients across ranks while
backward runs. The autograd engine never imports MPI -- only
`communicator.MPICommunicator` does.
"""
from .process_group import (
    init, is_initialized, destroy_process_group, default_group, get_rank, get_world_size,
    get_local_rank, get_local_world_size, get_backend, ProcessGroup, register_backend, registered_backends,
)
from .collectives import (
    ReduceOp, all_reduce, broadcast, all_gather, reduce_scatter, barrier,
    iall_reduce, ibroadcast, iall_gather, ireduce_scatter, ibarrier,
)
from .progress import Work
from .collective_check import CollectiveMismatchError
from .ddp import DistributedDataParallel, ModelMismatchError
from .comm_hooks import (GradBucket, allreduce_hook, fp16_compress_hook, bf16_compress_hook, register_comm_hook,
                         registered_comm_hooks, create_comm_hook)
from .powersgd import PowerSGDState, powerSGD_hook
from .timeline import Timeline
from .sharded import ShardedOptimizer
from . import comm_hooks
from .torch_api import init_process_group, is_available, broadcast_object_list, all_gather_object

__all__ = [
    "init", "is_initialized", "destroy_process_group", "default_group", "get_rank", "get_world_size",
    "get_local_rank", "get_local_world_size", "get_backend", "ProcessGroup", "register_backend",
    "registered_backends",
    "ReduceOp", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier",
    "iall_reduce", "ibroadcast", "iall_gather", "ireduce_scatter", "ibarrier", "Work", "CollectiveMismatchError",
    "DistributedDataParallel", "ModelMismatchError", "GradBucket", "allreduce_hook",
    "fp16_compress_hook", "bf16_compress_hook", "register_comm_hook", "registered_comm_hooks",
    "create_comm_hook", "PowerSGDState", "powerSGD_hook", "Timeline", "comm_hooks", "ShardedOptimizer",
    "init_process_group", "is_available", "broadcast_object_list", "all_gather_object",
]
