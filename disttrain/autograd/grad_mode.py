"""Whether operations are recorded on the tape.

One process-wide flag: the engine is single-threaded by design (the
communication thread of the distributed layer never records ops).
"""
import functools


class _State:
    enabled = True


def is_grad_enabled():
    return _State.enabled


class _GradMode:
    """Context manager and decorator that sets recording on or off."""

    _mode = True

    def __enter__(self):
        self._prev = _State.enabled
        _State.enabled = self._mode
        return self

    def __exit__(self, *exc):
        _State.enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _State.enabled
            _State.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _State.enabled = prev

        return wrapper


class _BareDecoratable(_GradMode):
    """Also usable without parentheses, ``@dt.no_grad``, as PyTorch allows."""

    def __new__(cls, orig_func=None):
        if orig_func is not None:
            if not callable(orig_func):
                raise TypeError(f"{cls.__name__}() takes no arguments (got {orig_func!r})")
            return cls()(orig_func)
        return super().__new__(cls)


class no_grad(_BareDecoratable):
    """Nothing inside is recorded: results do not require grad."""

    _mode = False


class enable_grad(_BareDecoratable):
    """Recording on, e.g. inside a ``no_grad`` region."""

    _mode = True


class set_grad_enabled(_GradMode):
    """Sets recording on or off *at once* (a plain call ``dt.set_grad_enabled(False)`` takes
    effect, as in PyTorch); as a context manager or decorator it restores the previous mode."""

    def __init__(self, mode):
        self._mode = bool(mode)
        self._prev = _State.enabled
        _State.enabled = self._mode

    def __enter__(self):
        return self

    def __call__(self, fn):
        _State.enabled = self._prev      # used as a decorator: only the calls change the mode
        return super().__call__(fn)


class inference_mode(_GradMode):
    """``no_grad`` under PyTorch's other name (``inference_mode(False)`` records)."""

    def __init__(self, mode=True):
        if callable(mode):               # bare @inference_mode
            raise TypeError("use @dt.inference_mode() (with parentheses) as a decorator")
        self._mode = not bool(mode)
