"""BTF type model: one small class per BTF kind, with the kernel's names.

A parsed BTF blob is a list of these indexed by type id (id 0 is ``Void``).
References between types are type ids (ints), not Python references, so the
same classes serve the program's BTF and the lazily indexed kernel BTF, and a
type can be built without building the types it points to.

Kinds and layouts follow include/uapi/linux/btf.h (Documentation/bpf/btf.rst).

The classes are written out by hand rather than as dataclasses: a dataclass
costs about a millisecond of import time to generate its methods, and this
module is on every load's path.  ``_Record`` supplies ``__repr__`` and
``__eq__`` from ``__slots__``.
"""
from __future__ import annotations

from .._records import IntConst

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional


class Kind(IntConst):
    """BTF_KIND_* (uapi/linux/btf.h); IntEnum-like members without ``enum``."""
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# BTF_INT_* encoding bits
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2

# btf_func_linkage
BTF_FUNC_STATIC = 0
BTF_FUNC_GLOBAL = 1
BTF_FUNC_EXTERN = 2

# btf_var linkage
BTF_VAR_STATIC = 0
BTF_VAR_GLOBAL_ALLOCATED = 1
BTF_VAR_GLOBAL_EXTERN = 2

class _Record:
    """Equality and repr from ``__slots__`` (over the whole class chain)."""
    __slots__ = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, n) for n in _all_slots(type(self)))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclasses they were

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in _all_slots(type(self)))
        return f"{type(self).__name__}({args})"


_slot_cache: dict[type, tuple[str, ...]] = {}


def _all_slots(cls: type) -> tuple[str, ...]:
    names = _slot_cache.get(cls)
    if names is None:
        acc: list[str] = []
        for c in reversed(cls.__mro__):
            acc.extend(c.__dict__.get("__slots__", ()))
        names = _slot_cache[cls] = tuple(acc)
    return names


class Member(_Record):
    __slots__ = ('name', 'type', 'offset', 'bitfield_size',)

    def __init__(self, name: str, type: int, offset: int, bitfield_size: int = 0) -> None:
        self.name = name
        self.type = type
        self.offset = offset  # in bits, from the start of the struct
        self.bitfield_size = bitfield_size  # 0 unless a bitfield (kind_flag set)


class EnumValue(_Record):
    __slots__ = ('name', 'val',)

    def __init__(self, name: str, val: int) -> None:
        self.name = name
        self.val = val


class Param(_Record):
    __slots__ = ('name', 'type',)

    def __init__(self, name: str, type: int) -> None:
        self.name = name
        self.type = type


class VarSecinfo(_Record):
    __slots__ = ('type', 'offset', 'size',)

    def __init__(self, type: int, offset: int, size: int) -> None:
        self.type = type  # a Var (or Func for extern ksyms)
        self.offset = offset  # bytes into the section
        self.size = size


class Type(_Record):
    """Common part of every kind: ``name`` ('' when anonymous)."""
    __slots__ = ("name",)
    kind = Kind.UNKN

    def __init__(self, name: str = "") -> None:
        self.name = name


class Void(Type):
    __slots__ = ()
    kind = Kind.UNKN


class Int(Type):
    __slots__ = ('size', 'encoding', 'offset', 'bits', )
    kind = Kind.INT

    def __init__(self, name: str = "", size: int = 0, encoding: int = 0, offset: int = 0, bits: int = 0) -> None:
        self.name = name
        self.size = size  # bytes
        self.encoding = encoding  # BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL
        self.offset = offset  # bit offset (legacy; 0 in practice)
        self.bits = bits  # number of value bits

    @property
    def signed(self) -> bool:
        return bool(self.encoding & BTF_INT_SIGNED)


class Ptr(Type):
    __slots__ = ('type', )
    kind = Kind.PTR

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


class Array(Type):
    __slots__ = ('type', 'index_type', 'nelems', )
    kind = Kind.ARRAY

    def __init__(self, name: str = "", type: int = 0, index_type: int = 0, nelems: int = 0) -> None:
        self.name = name
        self.type = type  # element type
        self.index_type = index_type
        self.nelems = nelems


class Struct(Type):
    __slots__ = ('size', 'members', )
    kind = Kind.STRUCT

    def __init__(self, name: str = "", size: int = 0, members: Optional[list[Member]] = None) -> None:
        self.name = name
        self.size = size
        self.members = [] if members is None else members


class Union(Type):
    __slots__ = ('size', 'members', )
    kind = Kind.UNION

    def __init__(self, name: str = "", size: int = 0, members: Optional[list[Member]] = None) -> None:
        self.name = name
        self.size = size
        self.members = [] if members is None else members


class Enum(Type):
    __slots__ = ('size', 'signed', 'values', )
    kind = Kind.ENUM

    def __init__(self, name: str = "", size: int = 4, signed: bool = False, values: Optional[list[EnumValue]] = None) -> None:
        self.name = name
        self.size = size
        self.signed = signed  # kind_flag
        self.values = [] if values is None else values


class Enum64(Type):
    __slots__ = ('size', 'signed', 'values', )
    kind = Kind.ENUM64

    def __init__(self, name: str = "", size: int = 8, signed: bool = False, values: Optional[list[EnumValue]] = None) -> None:
        self.name = name
        self.size = size
        self.signed = signed
        self.values = [] if values is None else values


class Fwd(Type):
    __slots__ = ('union', )
    kind = Kind.FWD

    def __init__(self, name: str = "", union: bool = False) -> None:
        self.name = name
        self.union = union  # kind_flag: forward declaration of a union


class Typedef(Type):
    __slots__ = ('type', )
    kind = Kind.TYPEDEF

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


class Volatile(Type):
    __slots__ = ('type', )
    kind = Kind.VOLATILE

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


class Const(Type):
    __slots__ = ('type', )
    kind = Kind.CONST

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


class Restrict(Type):
    __slots__ = ('type', )
    kind = Kind.RESTRICT

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


class Func(Type):
    __slots__ = ('type', 'linkage', )
    kind = Kind.FUNC

    def __init__(self, name: str = "", type: int = 0, linkage: int = BTF_FUNC_STATIC) -> None:
        self.name = name
        self.type = type  # a FuncProto
        self.linkage = linkage


class FuncProto(Type):
    __slots__ = ('type', 'params', )
    kind = Kind.FUNC_PROTO

    def __init__(self, name: str = "", type: int = 0, params: Optional[list[Param]] = None) -> None:
        self.name = name
        self.type = type  # return type
        self.params = [] if params is None else params


class Var(Type):
    __slots__ = ('type', 'linkage', )
    kind = Kind.VAR

    def __init__(self, name: str = "", type: int = 0, linkage: int = BTF_VAR_STATIC) -> None:
        self.name = name
        self.type = type
        self.linkage = linkage


class Datasec(Type):
    __slots__ = ('size', 'vars', )
    kind = Kind.DATASEC

    def __init__(self, name: str = "", size: int = 0, vars: Optional[list[VarSecinfo]] = None) -> None:
        self.name = name
        self.size = size
        self.vars = [] if vars is None else vars


class Float(Type):
    __slots__ = ('size', )
    kind = Kind.FLOAT

    def __init__(self, name: str = "", size: int = 0) -> None:
        self.name = name
        self.size = size


class DeclTag(Type):
    __slots__ = ('type', 'component_idx', )
    kind = Kind.DECL_TAG

    def __init__(self, name: str = "", type: int = 0, component_idx: int = -1) -> None:
        self.name = name
        self.type = type
        self.component_idx = component_idx


class TypeTag(Type):
    __slots__ = ('type', )
    kind = Kind.TYPE_TAG

    def __init__(self, name: str = "", type: int = 0) -> None:
        self.name = name
        self.type = type


# Kinds whose only payload is a referenced type: skipped when resolving.
QUALIFIERS = (Volatile, Const, Restrict, TypeTag)
COMPOSITES = (Struct, Union)
