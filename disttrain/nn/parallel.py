"""``nn.parallel.DistributedDataParallel``: disttrain's DDP taking PyTorch's constructor arguments.

``device_ids``/``output_device`` may be None or name the CPU (the only device);
``process_group`` is the group (default: the one ``dist.init_process_group`` made).
"""


def __getattr__(name):
    if name in ("DistributedDataParallel", "DDP"):
        return _ddp_class()
    raise AttributeError(f"module 'disttrain.nn.parallel' has no attribute {name!r}")


_cls = None


def _ddp_class():
    # Built on first use: importing disttrain.nn must not import the distributed layer.
    global _cls
    if _cls is not None:
        return _cls
    from ..autograd.device import as_device
    from ..distributed.ddp import DistributedDataParallel as _Base

    class DistributedDataParallel(_Base):
        __doc__ = _Base.__doc__

        def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                     process_group=None, bucket_cap_mb=25, find_unused_parameters=False, **kwargs):
            for d in list(device_ids or ()) + ([] if output_device is None else [output_device]):
                as_device(d)
            if dim != 0:
                raise ValueError(f"DistributedDataParallel: dim={dim!r}: inputs are not scattered (each rank "
                                 "feeds its own batch); leave dim at 0")
            for ignored in ("gradient_as_bucket_view", "static_graph"):
                kwargs.pop(ignored, None)
            super().__init__(module, bucket_cap_mb=bucket_cap_mb, find_unused_parameters=find_unused_parameters,
                             broadcast_buffers=broadcast_buffers, group=process_group or kwargs.pop("group", None),
                             **kwargs)

    DistributedDataParallel.__module__ = __name__
    DistributedDataParallel.__qualname__ = "DistributedDataParallel"
    _cls = DistributedDataParallel
    return _cls
