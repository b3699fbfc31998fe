"""Cheap stand-ins for ``enum.IntEnum`` and ``typing.NamedTuple`` on the load path.

Start-up time is part of every load: ``import enum`` costs 2-8 ms (functools,
operator, types...), ``import typing`` more (re, collections, contextlib...),
each IntEnum member ~15 us to create and each NamedTuple class an ``exec``.
The loader needs a few small enumerations and many small records, so:

* :class:`IntConst`: a class listing ``NAME = value`` int attributes; each
  becomes an ``int`` subclass instance with ``.name`` and ``.value`` that
  compares, hashes and packs exactly like the int and prints like an IntEnum
  member.  ``Kind(4)`` looks a member up by value (ValueError if none),
  ``Kind["STRUCT"]`` by name (KeyError if none); iterating the class yields
  the members in order of definition; a second name for a value (an alias)
  refers to the first member.  Flags are members too, but ``|`` of two gives
  a plain int (no IntFlag-style combined members).
* :class:`RecordTuple`: a tuple with named fields (``_fields``), read-only
  properties for them, positional or keyword construction, ``_make`` and
  ``_replace``, and a ``Name(field=value, ...)`` repr.
"""
from __future__ import annotations

__all__ = ["IntConst", "RecordTuple"]


class _IntConstMeta(type):
    def __new__(mcls, name: str, bases: tuple, ns: dict) -> _IntConstMeta:
        cls = super().__new__(mcls, name, bases, ns)
        members: dict[int, IntConst] = {}
        for key, value in ns.items():
            if key[0] != "_" and type(value) is int:
                member = members.get(value)
                if member is None:
                    member = members[value] = int.__new__(cls, value)
                    member._name_ = key
                setattr(cls, key, member)
        cls._value2member_ = members
        return cls

    def __call__(cls, value: object) -> IntConst:
        try:
            return cls._value2member_[value]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}") from None

    def __getitem__(cls, name: str) -> IntConst:
        member = cls.__dict__.get(name)
        if type(member) is not cls:
            raise KeyError(name)
        return member

    def __iter__(cls):  # type: ignore[no-untyped-def]
        return iter(cls._value2member_.values())

    def __len__(cls) -> int:
        return len(cls._value2member_)

    def __repr__(cls) -> str:
        return f"<enum {cls.__name__!r}>"


class IntConst(int, metaclass=_IntConstMeta):
    """Base of the constant classes (see the module docstring)."""
    _name_: str
    _value2member_: dict

    @property
    def name(self) -> str:
        return self._name_

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}: {int(self)}>"

    __str__ = int.__repr__          # as IntEnum's since Python 3.11
    __format__ = int.__format__

    def __reduce__(self) -> tuple:
        return type(self), (int(self),)


def _field(i: int) -> property:
    return property(lambda self: self[i])


class RecordTuple(tuple):
    """Base of the named tuples (see the module docstring).  A subclass sets
    ``__slots__ = ()`` and ``_fields``; ``_defaults`` may give trailing defaults."""
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: tuple = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for i, name in enumerate(cls._fields):
            if name not in cls.__dict__:
                setattr(cls, name, _field(i))

    def __new__(cls, *args: object, **kwargs: object) -> RecordTuple:
        fields = cls._fields
        if kwargs or len(args) != len(fields):
            args = cls._complete(args, kwargs)
        return tuple.__new__(cls, args)

    @classmethod
    def _complete(cls, args: tuple, kwargs: dict) -> tuple:
        fields, defaults = cls._fields, cls._defaults
        first_default = len(fields) - len(defaults)
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments, "
                            f"got {len(args)}")
        out = list(args)
        for i in range(len(args), len(fields)):
            name = fields[i]
            if name in kwargs:
                out.append(kwargs.pop(name))
            elif i >= first_default:
                out.append(defaults[i - first_default])
            else:
                raise TypeError(f"{cls.__name__}() missing argument {name!r}")
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected or repeated arguments "
                            f"{sorted(kwargs)}")
        return tuple(out)

    @classmethod
    def _make(cls, iterable: object) -> RecordTuple:
        return cls(*iterable)  # type: ignore[misc]

    def _replace(self, **kwargs: object) -> RecordTuple:
        return type(self)(**{**dict(zip(self._fields, self)), **kwargs})

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self))
        return f"{type(self).__name__}({args})"

    def __getnewargs__(self) -> tuple:
        return tuple(self)
