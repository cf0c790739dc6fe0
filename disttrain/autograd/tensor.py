"""`Tensor`: a numpy array plus its place on the autograd tape."""
from collections import namedtuple

import numpy as np

from . import engine as _engine
from . import grad_mode as _grad_mode
from . import device as _device
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

    def size(self, dim=None):
        """PyTorch's ``size()``: the shape, or the length of dimension ``dim``
        (the element count is ``numel()``)."""
        if dim is None:
            return self.data.shape
        return self.data.shape[_dim(dim, self.data.ndim, "size", self.data.shape)]

    def __len__(self):
        return len(self.data)

    def numel(self):
        return self.data.size

    nelement = numel

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

    # -- dtype and device -------------------------------------------------
    def astype(self, dtype):
        return _ops.cast(self, np.dtype(dtype))

    def _as(self, dtype):
        dtype = np.dtype(dtype)
        return self if self.data.dtype == dtype else _ops.cast(self, dtype)

    def float(self):
        return self._as(np.float32)

    def double(self):
        return self._as(np.float64)

    def half(self):
        return self._as(np.float16)

    def long(self):
        return self._as(np.int64)

    def int(self):
        return self._as(np.int32)

    def bool(self):
        return self._as(np.bool_)

    def type_as(self, other):
        return self._as(other.dtype)

    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)``.

        The device must be the CPU (anything else raises: disttrain computes on the
        CPU only); a dtype casts (differentiably) unless it already matches.
        """
        dtype, _ = parse_to_args("Tensor.to", args, kwargs)
        return self if dtype is None else self._as(dtype)

    @property
    def device(self):
        return _device.CPU

    @property
    def is_cuda(self):
        return False

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        raise _device.unavailable("cuda")

    def __repr__(self):
        extra = ""
        if self._node is not None:
            extra = f", grad_fn=<{self._node.fn.__name__}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.data.dtype}{extra})"

    def __format__(self, spec):
        # f"{loss:.4f}" works on one-element tensors, as in PyTorch.
        if spec and self.data.size == 1:
            return format(self.data.item(), spec)
        return format(str(self), spec)

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
    # (+ - * call their Function's apply directly: one Python call less per op)
    def __add__(self, other):
        return _add(self, other)

    def __radd__(self, other):
        return _add(other, self)

    def __sub__(self, other):
        return _sub(self, other)

    def __rsub__(self, other):
        return _sub(other, self)

    def __mul__(self, other):
        return _mul(self, other)

    def __rmul__(self, other):
        return _mul(other, self)

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

    def __setitem__(self, index, value):
        """``t[mask] = v``: an in-place write, allowed where nothing is being recorded
        (under ``no_grad``, or on tensors that do not require grad)."""
        self._check_inplace("item assignment")
        if isinstance(value, Tensor) and value.requires_grad and _grad_mode._State.enabled:
            raise RuntimeError(
                f"item assignment of a tensor that requires grad (shape {value.shape}) would not be recorded by "
                "autograd; build the result with dt.where(mask, value, t) or dt.cat instead")
        self.data[_raw_index(index)] = _raw(value)

    # -- comparisons as methods (boolean tensors, no gradient) --------------
    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    # -- reductions ---------------------------------------------------------
    # PyTorch's dim=/keepdim= and numpy's axis=/keepdims= both work; they mean
    # the same for sum and mean. For max/min a dim (positional or dim=) gives
    # PyTorch's (values, indices), axis= gives numpy's values only.
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        if dim is None and axis is None and keepdims is None and keepdim is False:
            return _sum(self, None, False)         # t.sum(): the common case, no argument juggling
        ax, kd = _reduce_args("sum", dim, keepdim, axis, keepdims)
        return _ops.sum(self, ax, kd)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        ax, kd = _reduce_args("mean", dim, keepdim, axis, keepdims)
        return _ops.mean(self, ax, kd)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extremum("max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return self._extremum("min", dim, keepdim, axis, keepdims)

    def _extremum(self, name, dim, keepdim, axis, keepdims):
        if isinstance(dim, Tensor):                        # t.max(other): elementwise
            return (maximum if name == "max" else minimum)(self, dim)
        if dim is None:
            return getattr(_ops, name)(self, axis, bool(keepdim if keepdims is None else keepdims))
        if axis is not None:
            raise TypeError(f"{name}: got both dim={dim!r} and axis={axis!r}; pass one of them")
        if isinstance(dim, (tuple, list)):
            raise TypeError(f"{name}(dim) takes one dimension and returns (values, indices); "
                            f"for the values over several axes use {name}(axis={tuple(dim)})")
        d = _dim(dim, self.data.ndim, name, self.data.shape)
        keep = bool(keepdim if keepdims is None else keepdims)
        idx = (np.argmax if name == "max" else np.argmin)(self.data, axis=d, keepdims=True)
        values = _ops.gather(self, d, idx)
        if not keep:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return ValuesIndices(values, Tensor(idx))

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        ax, kd = _reduce_args("argmax", dim, keepdim, axis, keepdims)
        return Tensor(self.data.argmax(axis=ax, keepdims=kd))

    def argmin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        ax, kd = _reduce_args("argmin", dim, keepdim, axis, keepdims)
        return Tensor(self.data.argmin(axis=ax, keepdims=kd))

    # -- shape ----------------------------------------------------------------
    def reshape(self, *shape):
        return _ops.reshape(self, _shape_args(shape))

    def view(self, *shape):
        """Like reshape, but refuses (as PyTorch does) a layout that cannot be viewed
        without a copy, e.g. after ``transpose``/``permute`` of a >2-D tensor: call
        ``.contiguous()`` first or use ``reshape``. A 2-D column-major tensor (the
        layout ``F.linear`` returns, or a ``.t()``) is copied instead (see README)."""
        shape = _shape_args(shape)
        a = self.data
        if not (a.flags.c_contiguous or a.flags.f_contiguous) and not _views_in_place(a, shape):
            raise RuntimeError(
                f"view: a tensor of shape {a.shape} with strides {a.strides} (e.g. after transpose or permute) "
                f"cannot be viewed as {tuple(shape)} without a copy; use .reshape(...) or .contiguous().view(...)")
        return _ops.reshape(self, shape)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def contiguous(self):
        return self if self.data.flags.c_contiguous else _ops.contiguous(self)

    def is_contiguous(self):
        return bool(self.data.flags.c_contiguous)

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.data.ndim
        if nd == 0:
            return self.reshape(1)
        s = _dim(start_dim, nd, "flatten", self.data.shape)
        e = _dim(end_dim, nd, "flatten", self.data.shape)
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"(tensor of shape {self.data.shape})")
        shape = self.data.shape
        return self.reshape(shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])

    def unsqueeze(self, dim):
        nd = self.data.ndim
        d = _dim(dim, nd + 1, "unsqueeze", self.data.shape)
        shape = self.data.shape
        return self.reshape(shape[:d] + (1,) + shape[d:])

    def squeeze(self, dim=None):
        shape = self.data.shape
        if dim is None:
            dims = range(len(shape))
        else:
            dims = dim if isinstance(dim, (tuple, list)) else (dim,)
            dims = [_dim(d, len(shape), "squeeze", shape) for d in dims] if shape else []
        drop = {d for d in dims if shape[d] == 1}
        return self.reshape(tuple(n for i, n in enumerate(shape) if i not in drop))

    def transpose(self, *axes, dim0=None, dim1=None):
        """``transpose(dim0, dim1)`` swaps two dimensions (PyTorch); ``transpose()`` reverses
        them and ``transpose(axes_tuple)`` or three or more ints permute them (numpy)."""
        if dim0 is not None or dim1 is not None:
            axes = axes + tuple(a for a in (dim0, dim1) if a is not None)
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        elif len(axes) == 2:
            nd, shape = self.data.ndim, self.data.shape
            d0, d1 = _dim(axes[0], nd, "transpose", shape), _dim(axes[1], nd, "transpose", shape)
            perm = list(range(nd))
            perm[d0], perm[d1] = perm[d1], perm[d0]
            return _ops.transpose(self, tuple(perm))
        return _ops.transpose(self, axes or None)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        nd, shape = self.data.ndim, self.data.shape
        perm = tuple(_dim(d, nd, "permute", shape) for d in dims)
        if sorted(perm) != list(range(nd)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the {nd} dimensions "
                             f"of a tensor of shape {shape}")
        return _ops.transpose(self, perm)

    def t(self):
        if self.data.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got shape {self.data.shape}; "
                             "use transpose(dim0, dim1)")
        return _ops.transpose(self, None)

    @property
    def T(self):
        return _ops.transpose(self, None)

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def expand(self, *sizes):
        sizes = _shape_args(sizes)
        shape = self.data.shape
        lead = len(sizes) - len(shape)
        if lead < 0:
            raise ValueError(f"expand: {len(sizes)} sizes given for a tensor of shape {shape}")
        target = tuple(shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(sizes))
        return _ops.expand(self, target)

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        return _ops.repeat(self, _shape_args(sizes))

    def split(self, split_size_or_sections, dim=0):
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the given sizes."""
        shape = self.data.shape
        d = _dim(dim, self.data.ndim, "split", shape)
        n = shape[d]
        if isinstance(split_size_or_sections, (list, tuple)):
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n or any(s < 0 for s in sizes):
                raise ValueError(f"split: sizes {sizes} do not add up to {n}, the length of dimension {d} "
                                 f"(shape {shape})")
        else:
            step = int(split_size_or_sections)
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {split_size_or_sections!r}")
            sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
        lead = (slice(None),) * d
        out, start = [], 0
        for s in sizes:
            out.append(self[lead + (slice(start, start + s),)])
            start += s
        return tuple(out)

    def chunk(self, chunks, dim=0):
        chunks = int(chunks)
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.data.shape[_dim(dim, self.data.ndim, "chunk", self.data.shape)]
        return self.split(max(-(-n // chunks), 1), dim)

    # -- selection and elementwise --------------------------------------------
    def masked_fill(self, mask, value):
        """``value`` where the boolean ``mask`` (broadcastable to this tensor) is True."""
        m = np.asarray(_raw(mask))
        if m.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be boolean, got dtype {m.dtype}")
        try:
            ok = np.broadcast_shapes(m.shape, self.data.shape) == self.data.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"masked_fill: mask of shape {m.shape} does not broadcast to the tensor's "
                             f"shape {self.data.shape}")
        return _ops.where(m, np.asarray(_raw(value), dtype=self.data.dtype), self)

    def clamp(self, min=None, max=None):
        return _ops.clamp(self, _raw(min), _raw(max))

    clip = clamp

    def clone(self):
        return _ops.cast(self, self.data.dtype)

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

    def abs(self):
        return _ops.abs(self)

    def pow(self, exponent):
        return _ops.pow(self, exponent)

    def softmax(self, dim):
        return _ops.softmax(self, dim)

    def log_softmax(self, dim):
        return _ops.log_softmax(self, dim)

    def matmul(self, other):
        return _ops.matmul(self, other)

    def add(self, other, alpha=1):
        return _ops.add(self, other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return _ops.sub(self, other if alpha == 1 else other * alpha)

    def mul(self, other):
        return _ops.mul(self, other)

    def div(self, other):
        return _ops.div(self, other)

    # -- in place (no recording: under no_grad or on tensors without grad) -----
    def _check_inplace(self, what):
        if self.requires_grad and _grad_mode._State.enabled:
            raise RuntimeError(
                f"{what} on a tensor that requires grad (shape {self.data.shape}) would not be recorded by "
                "autograd; do it under `with dt.no_grad():` or on a tensor that does not require grad")
        if not self.data.flags.writeable:
            raise RuntimeError(f"{what}: this tensor's array (shape {self.data.shape}) is read-only "
                               "(an expand() result?); use .clone() first")

    def _write(self, what, values):
        self._check_inplace(what)
        self.data[...] = values
        return self

    def zero_(self):
        return self._write("zero_", 0)

    def fill_(self, value):
        return self._write("fill_", _raw(value))

    def copy_(self, src):
        return self._write("copy_", np.broadcast_to(np.asarray(_raw(src)), self.data.shape))

    def add_(self, other, alpha=1):
        return self._write("add_", self.data + alpha * np.asarray(_raw(other)))

    def sub_(self, other, alpha=1):
        return self._write("sub_", self.data - alpha * np.asarray(_raw(other)))

    def mul_(self, other):
        return self._write("mul_", self.data * np.asarray(_raw(other)))

    def div_(self, other):
        return self._write("div_", self.data / np.asarray(_raw(other)))

    def masked_fill_(self, mask, value):
        self._check_inplace("masked_fill_")
        self.data[np.broadcast_to(np.asarray(_raw(mask)), self.data.shape)] = _raw(value)
        return self

    def clamp_(self, min=None, max=None):
        return self._write("clamp_", np.clip(self.data, _raw(min), _raw(max)))


ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])
ValuesIndices.__doc__ = "(values, indices) of max(dim)/min(dim)/topk, unpackable like PyTorch's return types."


def _dim(dim, ndim, op, shape):
    """One dimension index as a non-negative int (a 0-d tensor accepts -1 and 0, as in PyTorch)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor of shape {tuple(shape)} "
                         f"(expected -{n} <= dim < {n})")
    return int(dim) % n


def _reduce_args(op, dim, keepdim, axis, keepdims):
    if dim is not None and axis is not None:
        raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; pass one of them")
    ax = axis if dim is None else dim
    if isinstance(ax, list):
        ax = tuple(ax)
    return ax, bool(keepdim if keepdims is None else keepdims)


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


def _views_in_place(a, shape):
    """True when ``a`` reshapes to ``shape`` without a copy (or the shape is invalid: reshape says why)."""
    try:
        np.reshape(a, shape, copy=False)
        return True
    except TypeError:                       # numpy < 2.1: no copy= argument
        v = a.view()
        try:
            v.shape = shape
            return True
        except AttributeError:
            return False
        except ValueError:
            return True
    except ValueError as e:
        return "copy" not in str(e)


def _raw_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def maximum(a, b):
    a, b = _as_tensor(a), _as_tensor(b)
    return _ops.where(np.asarray(a.data >= b.data), a, b)


def minimum(a, b):
    a, b = _as_tensor(a), _as_tensor(b)
    return _ops.where(np.asarray(a.data <= b.data), a, b)


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def parse_to_args(op, args, kwargs):
    """(dtype or None, device) from the forms ``to(dtype)``, ``to(device[, dtype])``, ``to(tensor)``
    and the keywords dtype=/device=/non_blocking=/copy=; any device but the CPU raises."""
    unknown = set(kwargs) - {"dtype", "device", "non_blocking", "copy", "memory_format"}
    if unknown:
        raise TypeError(f"{op}: unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    dtype, dev = kwargs.get("dtype"), kwargs.get("device")
    for a in args:
        if isinstance(a, Tensor):
            dtype = a.data.dtype
        elif isinstance(a, (str, _device.device)) or (isinstance(a, int) and not isinstance(a, bool)):
            dev = a
        else:
            try:
                dtype = np.dtype(a)
            except TypeError:
                raise TypeError(f"{op}: expected a dtype, a device or a tensor, got {a!r}") from None
    if dev is not None:
        _device.as_device(dev)
    return (None if dtype is None else np.dtype(dtype)), _device.CPU


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new Tensor holding a copy of ``data``.

    Python numbers and lists of floats become float32; numpy arrays keep their dtype.
    ``device`` may only name the CPU.
    """
    if device is not None:
        _device.as_device(device)
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
from ..ops.arithmetic import Add as _Add, Sub as _Sub, Mul as _Mul  # noqa: E402
from ..ops.reduction import Sum as _Sum  # noqa: E402

_add, _sub, _mul, _sum = _Add.apply, _Sub.apply, _Mul.apply, _Sum.apply
