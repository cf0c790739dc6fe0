"""`Parameter`: a Tensor that a Module registers as learnable state."""
import numpy as np

from ..autograd.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor with ``requires_grad=True`` that Modules collect.

    The array is shared, not copied (as `Tensor` does); Python floats and
    lists become float32 like everywhere else.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
