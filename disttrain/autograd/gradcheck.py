"""Numerical gradient checking: backward against central finite differences.

Small inputs are checked element by element (the full Jacobian); large ones
along random directions (v^T J u, one forward pair and one backward each).
On failure the error prints the inputs, the numeric and analytic gradients.
"""
import numpy as np

from .tensor import Tensor
from .grad_mode import no_grad

FULL_JACOBIAN_LIMIT = 256   # total input elements up to which every element is perturbed


class GradcheckError(AssertionError):
    pass


def _prepare(inputs):
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = (inputs,)
    prepared = []
    for x in inputs:
        arr = x.data if isinstance(x, Tensor) else x
        # Float arrays and numpy float scalars are checked; Python numbers are constants.
        if isinstance(arr, (np.ndarray, np.floating)) and np.issubdtype(arr.dtype, np.floating):
            wants = x.requires_grad if isinstance(x, Tensor) else True
            prepared.append(Tensor(np.array(arr, dtype=np.float64, order="C"), requires_grad=wants))
        else:
            prepared.append(x)
    return prepared


def _outputs(fn, inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, Tensor)]


def _flat_output(fn, inputs, weights):
    """sum_k <out_k, w_k> as a float, without recording."""
    with no_grad():
        outs = _outputs(fn, inputs)
    return float(sum(np.sum(o.data.astype(np.float64) * w) for o, w in zip(outs, weights)))


def _analytic(fn, inputs, weights):
    for x in inputs:
        if isinstance(x, Tensor):
            x.grad = None
    outs = _outputs(fn, inputs)
    roots = [o for o in outs if o.requires_grad]
    ws = [w for o, w in zip(outs, weights) if o.requires_grad]
    if roots:
        from .engine import backward
        backward(roots, [w.astype(o.data.dtype) for o, w in zip(roots, ws)])
    return [np.zeros(x.shape) if x._grad is None else x._grad.astype(np.float64)
            for x in inputs if isinstance(x, Tensor) and x.requires_grad]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, n_directions=3, seed=0, raise_exception=True):
    """Check ``fn``'s backward (all outputs, all float inputs) in float64.

    Returns True, or raises GradcheckError with everything needed to debug.
    """
    inputs = _prepare(inputs)
    diff_inputs = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not diff_inputs:
        raise ValueError("gradcheck: no floating-point input requires grad")
    rng = np.random.default_rng(seed)
    with no_grad():
        outs = _outputs(fn, inputs)
    weights = [rng.standard_normal(o.shape) for o in outs]
    analytic = _analytic(fn, inputs, weights)
    total = sum(x.numel() for x in diff_inputs)

    if total <= FULL_JACOBIAN_LIMIT:
        numeric = []
        for x in diff_inputs:
            num = np.zeros(x.shape)
            flat = x.data.reshape(-1)   # x.data is a fresh contiguous float64 copy
            for i in range(flat.size):
                orig = flat[i]
                flat[i] = orig + eps
                plus = _flat_output(fn, inputs, weights)
                flat[i] = orig - eps
                minus = _flat_output(fn, inputs, weights)
                flat[i] = orig
                num.reshape(-1)[i] = (plus - minus) / (2 * eps)
            numeric.append(num)
        for k, (x, a, n) in enumerate(zip(diff_inputs, analytic, numeric)):
            if not np.allclose(a, n, atol=atol, rtol=rtol):
                return _fail(raise_exception, fn, inputs, f"input {k} (shape {x.shape})", n, a, atol, rtol)
        return True

    for d in range(n_directions):
        dirs = [rng.standard_normal(x.shape) for x in diff_inputs]
        saved = [x.data.copy() for x in diff_inputs]
        for x, u in zip(diff_inputs, dirs):
            x.data += eps * u
        plus = _flat_output(fn, inputs, weights)
        for x, s, u in zip(diff_inputs, saved, dirs):
            x.data[...] = s - eps * u
        minus = _flat_output(fn, inputs, weights)
        for x, s in zip(diff_inputs, saved):
            x.data[...] = s
        numeric = (plus - minus) / (2 * eps)
        analytic_dd = float(sum(np.sum(a * u) for a, u in zip(analytic, dirs)))
        if not np.isclose(analytic_dd, numeric, atol=atol * np.sqrt(total), rtol=rtol):
            return _fail(raise_exception, fn, inputs, f"random direction {d}",
                         np.array(numeric), np.array(analytic_dd), atol, rtol)
    return True


def _fail(raise_exception, fn, inputs, where, numeric, analytic, atol, rtol):
    if not raise_exception:
        return False
    name = getattr(fn, "__name__", repr(fn))
    with np.printoptions(precision=6, suppress=True, threshold=200):
        shown = "\n".join(f"  input {i}: shape {getattr(x, 'shape', None)}\n{np.asarray(getattr(x, 'data', x))}"
                          for i, x in enumerate(inputs))
        diff = np.abs(np.asarray(numeric) - np.asarray(analytic))
        raise GradcheckError(
            f"gradcheck failed for {name} at {where} (atol={atol}, rtol={rtol}); "
            f"max abs difference {diff.max():.3e}\ninputs:\n{shown}\n"
            f"numeric gradient:\n{np.asarray(numeric)}\nanalytic gradient:\n{np.asarray(analytic)}")


def jacobian(fn, x):
    """Full Jacobian d fn(x) / d x by reverse mode, shape ``out.shape + x.shape``.

    One backward pass per output element (each row is J^T e_i): for small inputs.
    """
    x = Tensor(np.array(getattr(x, "data", x), dtype=np.float64), requires_grad=True)
    out = fn(x)
    rows = np.zeros((out.numel(), x.numel()))
    for i in range(out.numel()):
        x.grad = None
        seed = np.zeros(out.numel())
        seed[i] = 1.0
        out.backward(seed.reshape(out.shape), retain_graph=True)
        if x._grad is not None:
            rows[i] = x._grad.reshape(-1)
    return rows.reshape(out.shape + x.shape)


def numerical_jacobian(fn, x, eps=1e-6):
    """Full Jacobian by central differences, shape ``out.shape + x.shape``."""
    x = np.array(getattr(x, "data", x), dtype=np.float64)
    with no_grad():
        out_shape = np.shape(fn(Tensor(x)).data)
        cols = []
        flat = x.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = fn(Tensor(x)).data.astype(np.float64)
            flat[i] = orig - eps
            minus = fn(Tensor(x)).data.astype(np.float64)
            flat[i] = orig
            cols.append(((plus - minus) / (2 * eps)).reshape(-1))
    jac = np.stack(cols, axis=1) if cols else np.zeros((int(np.prod(out_shape)), 0))
    return jac.reshape(out_shape + x.shape)
