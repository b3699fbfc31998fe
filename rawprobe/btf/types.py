"""BTF type model: one small class per BTF kind, with the kernel's names.

A parsed BTF blob is a list of these indexed by type id (id 0 is ``Void``).
References between types are type ids (ints), not Python references, so the
same classes serve the program's BTF and the lazily indexed kernel BTF, and a
type can be built without building the types it points to.

Kinds and layouts follow include/uapi/linux/btf.h (Documentation/bpf/btf.rst).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Kind(IntEnum):
    """BTF_KIND_* (uapi/linux/btf.h)."""
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


@dataclass(slots=True)
class Type:
    """Common part of every kind: ``name`` ('' when anonymous)."""
    name: str = ""
    kind = Kind.UNKN


@dataclass(slots=True)
class Void(Type):
    kind = Kind.UNKN


@dataclass(slots=True)
class Int(Type):
    size: int = 0          # bytes
    encoding: int = 0      # BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL
    offset: int = 0        # bit offset (legacy; 0 in practice)
    bits: int = 0          # number of value bits
    kind = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & BTF_INT_SIGNED)


@dataclass(slots=True)
class Ptr(Type):
    type: int = 0
    kind = Kind.PTR


@dataclass(slots=True)
class Array(Type):
    type: int = 0          # element type
    index_type: int = 0
    nelems: int = 0
    kind = Kind.ARRAY


@dataclass(slots=True)
class Member:
    name: str
    type: int
    offset: int            # in bits, from the start of the struct
    bitfield_size: int = 0  # 0 unless a bitfield (kind_flag set)


@dataclass(slots=True)
class Struct(Type):
    size: int = 0
    members: list[Member] = field(default_factory=list)
    kind = Kind.STRUCT


@dataclass(slots=True)
class Union(Type):
    size: int = 0
    members: list[Member] = field(default_factory=list)
    kind = Kind.UNION


@dataclass(slots=True)
class EnumValue:
    name: str
    val: int


@dataclass(slots=True)
class Enum(Type):
    size: int = 4
    signed: bool = False   # kind_flag
    values: list[EnumValue] = field(default_factory=list)
    kind = Kind.ENUM


@dataclass(slots=True)
class Enum64(Type):
    size: int = 8
    signed: bool = False
    values: list[EnumValue] = field(default_factory=list)
    kind = Kind.ENUM64


@dataclass(slots=True)
class Fwd(Type):
    union: bool = False    # kind_flag: forward declaration of a union
    kind = Kind.FWD


@dataclass(slots=True)
class Typedef(Type):
    type: int = 0
    kind = Kind.TYPEDEF


@dataclass(slots=True)
class Volatile(Type):
    type: int = 0
    kind = Kind.VOLATILE


@dataclass(slots=True)
class Const(Type):
    type: int = 0
    kind = Kind.CONST


@dataclass(slots=True)
class Restrict(Type):
    type: int = 0
    kind = Kind.RESTRICT


@dataclass(slots=True)
class Func(Type):
    type: int = 0          # a FuncProto
    linkage: int = BTF_FUNC_STATIC
    kind = Kind.FUNC


@dataclass(slots=True)
class Param:
    name: str
    type: int


@dataclass(slots=True)
class FuncProto(Type):
    type: int = 0          # return type
    params: list[Param] = field(default_factory=list)
    kind = Kind.FUNC_PROTO


@dataclass(slots=True)
class Var(Type):
    type: int = 0
    linkage: int = BTF_VAR_STATIC
    kind = Kind.VAR


@dataclass(slots=True)
class VarSecinfo:
    type: int              # a Var (or Func for extern ksyms)
    offset: int            # bytes into the section
    size: int


@dataclass(slots=True)
class Datasec(Type):
    size: int = 0
    vars: list[VarSecinfo] = field(default_factory=list)
    kind = Kind.DATASEC


@dataclass(slots=True)
class Float(Type):
    size: int = 0
    kind = Kind.FLOAT


@dataclass(slots=True)
class DeclTag(Type):
    type: int = 0
    component_idx: int = -1
    kind = Kind.DECL_TAG


@dataclass(slots=True)
class TypeTag(Type):
    type: int = 0
    kind = Kind.TYPE_TAG


# Kinds whose only payload is a referenced type: skipped when resolving.
QUALIFIERS = (Volatile, Const, Restrict, TypeTag)
COMPOSITES = (Struct, Union)
