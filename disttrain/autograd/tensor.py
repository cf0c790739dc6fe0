"""`Tensor`: a numpy array plus its place on the autograd tape."""
import numpy as np

from . import engine as _engine
from .hooks import RemovableHandle

_FLOAT_DEFAULT = np.float32


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    ``data`` is the numpy array (shared, never copied by the Tensor itself).
    ``grad`` is a Tensor over the accumulated gradient array, or None.
    """

    __slots__ = ("data", "requires_grad", "_grad", "_node", "_out_index",
                 "_hooks", "_post_hooks", "__weakref__")

    # Make numpy defer to our reflected operators (ndarray * Tensor -> Tensor).
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.asarray(data, dtype=dtype)
        if dtype is None and not isinstance(data, (np.ndarray, np.generic)) and arr.dtype == np.float64:
            arr = arr.astype(_FLOAT_DEFAULT)
        self.data = arr
        self._grad = None
        self._node = None
        self._out_index = 0
        self._hooks = None
        self._post_hooks = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -- gradient state ---------------------------------------------------
    @property
    def grad(self):
        g = self._grad
        return None if g is None else Tensor(g)

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad = None
            return
        value = np.asarray(getattr(value, "data", value))
        if value.shape != self.data.shape:
            raise ValueError(f"assigned grad has shape {value.shape}, tensor has shape {self.data.shape}")
        self._grad = value.astype(self.data.dtype, copy=False)

    def zero_grad(self):
        self._grad = None

    def requires_grad_(self, flag=True):
        if flag and not np.issubdtype(self.data.dtype, np.inexact):
            raise RuntimeError(f"only floating point tensors can require gradients (dtype {self.data.dtype})")
        if self._node is not None and not flag:
            raise RuntimeError("cannot clear requires_grad on a non-leaf tensor; use detach()")
        self.requires_grad = bool(flag)
        return self

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def detach(self):
        return Tensor(self.data)

    def backward(self, gradient=None, retain_graph=False):
        _engine.backward([self], [gradient], retain_graph)

    # -- hooks ------------------------------------------------------------
    def register_hook(self, fn):
        """``fn(grad) -> None or new grad`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            node = self._node
            if node.pre_hooks is None:
                node.pre_hooks = {}
            hooks = node.pre_hooks.setdefault(self._out_index, [])
        hooks.append(fn)
        return RemovableHandle(hooks, fn)

    def register_post_accumulate_grad_hook(self, fn):
        """``fn(tensor)`` runs once this leaf's ``.grad`` is final for the current backward pass."""
        if self._node is not None:
            raise RuntimeError("post-accumulate-grad hooks can only be registered on leaf tensors")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(fn)
        return RemovableHandle(self._post_hooks, fn)

    def retain_grad(self):
        if self._node is None:
            return

        def keep(g, _self=self):
            _self._grad = np.array(g.data, copy=True)

        self.register_hook(keep)

    # -- array protocol ---------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numel(self):
        return self.data.size

    def dim(self):
        return self.data.ndim

    def item(self):
        return self.data.item()

    def numpy(self):
        return self.data

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        # numpy 2 passes copy=True for np.array(t) and trusts us to honour it.
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            if copy is False:
                raise ValueError(f"cannot convert a {self.data.dtype} tensor to {np.dtype(dtype)} without a copy")
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def astype(self, dtype):
        return _ops.cast(self, np.dtype(dtype))

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def __repr__(self):
        extra = ""
        if self._node is not None:
            extra = f", grad_fn=<{self._node.fn.__name__}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.data.dtype}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    def __index__(self):
        return self.data.__index__()

    # Hash by identity (C-level; the engine keys dicts by tensors): __eq__ is elementwise.
    __hash__ = object.__hash__

    # -- arithmetic (each a Function in disttrain.ops) ---------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    # Comparisons give plain boolean tensors (no gradient).
    def __eq__(self, other):
        return Tensor(self.data == _raw(other))

    def __ne__(self, other):
        return Tensor(self.data != _raw(other))

    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __le__(self, other):
        return Tensor(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor(self.data >= _raw(other))

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # -- reductions, shape, elementwise -----------------------------------
    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _ops.min(self, axis, keepdims)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim=0):
        return self.reshape(self.shape[:start_dim] + (-1,))

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes or None)

    @property
    def T(self):
        return _ops.transpose(self, None)

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def tanh(self):
        return _ops.tanh(self)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def relu(self):
        return _ops.relu(self)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def tensor(data, requires_grad=False, dtype=None):
    """A new Tensor holding a copy of ``data``.

    Python numbers and lists of floats become float32; numpy arrays keep their dtype.
    """
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, dtype=dtype, copy=True)
    else:
        arr = np.array(data, dtype=dtype)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(_FLOAT_DEFAULT)
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"tensor(): data must be numeric (bool, int, float or complex), "
                        f"got an array of dtype {arr.dtype} from {type(data).__name__}")
    return Tensor(arr, requires_grad=requires_grad)


def from_numpy(array):
    """A Tensor sharing memory with ``array``."""
    return Tensor(np.asarray(array))


from .. import ops as _ops  # noqa: E402  (ops need Tensor defined first)
