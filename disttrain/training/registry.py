"""The one registry mechanism behind what a config names: models, data sources, schedules, tasks.

An entry is the object that does the work (a builder, loader or class), the `Key`s its config
section takes besides the name, an optional ``check(values)`` for combinations of keys, and
any extras (e.g. a data source's default task).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    target: object
    params: tuple = ()
    check: object = None
    extras: dict = field(default_factory=dict)


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def add(self, name, target, params=(), check=None, **extras):
        self._entries[name] = Entry(target, tuple(params), check, extras)
        return target

    def decorator(self, name, params=(), check=None, **extras):
        return lambda target: self.add(name, target, params, check, **extras)

    def get(self, name):
        return self._entries.get(name)

    def __getitem__(self, name):
        return self._entries[name]

    def names(self):
        return sorted(self._entries)

    def params_by_name(self):
        """name -> the Keys of that entry."""
        return {n: e.params for n, e in self._entries.items()}

    def keys(self):
        """Every entry's keys by key name (a key shared by entries is one `Key`)."""
        keys = {}
        for e in self._entries.values():
            for k in e.params:
                keys.setdefault(k.name, k)
        return keys
