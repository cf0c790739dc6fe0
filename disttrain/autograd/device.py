"""`device`: where a tensor lives. disttrain computes on the CPU only, so the one
device is ``cpu``; naming any other (``"cuda"``, ``"mps"``, an int) is an error
that says so, instead of silently running somewhere else than asked.
"""


class device:
    """``dt.device("cpu")`` (PyTorch's spelling). ``type`` is ``"cpu"``, ``index`` None or 0."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        spec = type
        if isinstance(spec, str) and ":" in spec:
            spec, _, idx = spec.partition(":")
            try:
                index = int(idx)
            except ValueError:
                raise ValueError(f"device: invalid device string {type!r}") from None
        if not isinstance(spec, str) or spec != "cpu" or index not in (None, 0):
            raise unavailable(type if index is None or ":" in str(type) else f"{type}:{index}")
        self.type = "cpu"
        self.index = index

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (RuntimeError, ValueError):
                return False
        return isinstance(other, device) and other.type == self.type

    def __hash__(self):
        return hash(self.type)

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type={self.type!r})" if self.index is None else \
            f"device(type={self.type!r}, index={self.index})"


CPU = device("cpu")


def unavailable(what):
    return RuntimeError(
        f"device {what!r} is not available: disttrain computes on the CPU only (pass 'cpu' or drop the .to() "
        "call); scale out across processes with dtrun / MPI instead of across accelerators")


def as_device(spec):
    """``spec`` (a device, a string, or an int as PyTorch reads it: a CUDA index) as a `device`."""
    if isinstance(spec, device):
        return spec
    if isinstance(spec, bool) or not isinstance(spec, str):
        if isinstance(spec, int):
            raise unavailable(f"cuda:{spec}")
        raise TypeError(f"expected a device (e.g. 'cpu'), got {type(spec).__name__}")
    return device(spec)
