"""Handles returned by every hook registration."""


class RemovableHandle:
    """Removes one registered callable from the list that holds it."""

    __slots__ = ("_hooks", "_fn")

    def __init__(self, hooks, fn):
        self._hooks = hooks
        self._fn = fn

    def remove(self):
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            try:
                hooks.remove(self._fn)
            except ValueError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False
