"""``Record``: a slotted plain-data class with keyword construction and defaults.

Stands in for ``dataclasses`` (whose import pulls in ``inspect`` and costs ~12 ms of
start-up).  A subclass lists ``__slots__`` and a ``_defaults`` dict; fields without a
default are required.
"""
from __future__ import annotations


class Record:
    __slots__ = ()
    _defaults: dict = {}

    def __init__(self, **kw) -> None:
        defaults = self._defaults
        for name in self.__slots__:
            if name in kw:
                value = kw.pop(name)
            elif name in defaults:
                value = defaults[name]
                if isinstance(value, (list, dict, set)):
                    value = type(value)(value)      # no shared mutable defaults
            else:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, value)
        if kw:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {', '.join(kw)}")

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()
