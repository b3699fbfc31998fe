"""Encode a :class:`BTFSpec` back into a blob for ``BPF_BTF_LOAD``.

Two things happen on the way, both as libbpf does them:

* **DATASEC fix-ups.**  clang leaves each DATASEC's size and its variables'
  offsets at 0; the real values are the ELF section sizes and the symbols'
  values, which the ELF layer passes in as :class:`BTFFixups`.  Variables are
  then sorted by offset (the kernel insists).
* **Sanitising for older kernels.**  Kinds a kernel does not know are
  rewritten into ones it does, keeping every type id (func_info, line_info,
  CO-RE and map key/value ids refer to them):

  ============================  ==========================================
  missing (first kernel)         replacement
  ============================  ==========================================
  FUNC, FUNC_PROTO (5.0)         TYPEDEF; ENUM of the params (size 4)
  global FUNC linkage (5.6)      static linkage
  VAR, DATASEC (5.2)             INT (1 byte); STRUCT named ``_data`` etc.
  FLOAT (5.13)                   anonymous empty STRUCT of the same size
  DECL_TAG (5.16)                INT (1 byte)
  TYPE_TAG (5.17)                anonymous CONST
  ENUM64 (6.0)                   UNION of 1-byte ints; ENUM kflag cleared
  DATASEC named ``?...`` (6.9)   ``_`` instead of ``?``
  ============================  ==========================================

The original string section is kept byte for byte at the start of the new
one (line_info records point into it); new names are appended.

:func:`encode` is pure: no kernel access.  ``kernel_features`` comes from the
caller's probes (see :func:`probe_blob` for the blobs to probe with).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields

from ..errors import BTFError
from . import types as T
from .parse import BTF_MAGIC, BTF_VERSION, HEADER, BTFSpec
from .types import Kind

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Mapping, Optional, Union

_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U32X2 = struct.Struct("<II")
_U32X3 = struct.Struct("<III")

# Sections whose DATASEC sizes/offsets libbpf fills itself from externs.
_EXTERN_SECTIONS = (".kconfig", ".ksyms")


@dataclass(frozen=True)
class BTFFeatures:
    """Which BTF kinds the target kernel accepts (all True = no sanitising)."""
    func: bool = True            # BTF_KIND_FUNC/FUNC_PROTO, 5.0
    func_global: bool = True     # BTF_FUNC_GLOBAL linkage, 5.6
    datasec: bool = True         # BTF_KIND_VAR/DATASEC, 5.2
    float: bool = True           # BTF_KIND_FLOAT, 5.13
    decl_tag: bool = True        # BTF_KIND_DECL_TAG, 5.16
    type_tag: bool = True        # BTF_KIND_TYPE_TAG, 5.17
    enum64: bool = True          # BTF_KIND_ENUM64, 6.0
    qmark_datasec: bool = True   # DATASEC names starting with '?', 6.9

    @classmethod
    def none(cls) -> "BTFFeatures":
        return cls(**{f.name: False for f in fields(cls)})


@dataclass
class BTFFixups:
    """What only the ELF file knows: section sizes and variable offsets.

    ``var_offsets`` keys are variable names, or ``(section, name)`` pairs
    when two sections have a variable of the same name (these win).
    """
    section_sizes: Mapping[str, int] = field(default_factory=dict)
    var_offsets: Mapping[Union[str, tuple[str, str]], int] = field(default_factory=dict)


class _Strings:
    """The original string table plus appended names, offset lookup by name."""

    def __init__(self, original: bytes) -> None:
        if not original:
            original = b"\0"
        self.data = bytearray(original)
        self.offsets: dict[str, int] = {}
        pos = 0
        for raw in bytes(original).split(b"\0"):
            try:
                self.offsets.setdefault(raw.decode(), pos)
            except UnicodeDecodeError:
                pass
            pos += len(raw) + 1
        self.offsets[""] = 0

    def add(self, name: str) -> int:
        off = self.offsets.get(name)
        if off is None:
            off = self.offsets[name] = len(self.data)
            self.data += name.encode() + b"\0"
        return off


def encode(spec: BTFSpec, *, fixups: Optional[BTFFixups] = None,
           kernel_features: Optional[BTFFeatures] = None) -> bytes:
    """The blob to pass to ``BPF_BTF_LOAD`` for ``spec`` (not split BTF).

    ``fixups`` fills DATASEC sizes and variable offsets that clang left at 0;
    ``kernel_features`` (default: all supported) drives sanitising.
    ``fixups`` may also be a ``(section_sizes, var_offsets)`` tuple.
    """
    if spec.base is not None:
        raise BTFError("encoding split BTF is not supported: only program BTF is loaded")
    if isinstance(fixups, tuple):
        fixups = BTFFixups(*fixups)
    feats = kernel_features or BTFFeatures()
    types = [_fixup_datasec(t, spec.types, fixups) if isinstance(t, T.Datasec) else t
             for t in spec.types]
    strings = _Strings(spec.strings)
    out = bytearray()
    placeholder: Optional[int] = None
    extra: list[T.Type] = []
    for i, t in enumerate(types[1:], 1):
        t = _sanitize(t, types, feats)
        if isinstance(t, T.Enum64) and not feats.enum64:
            if placeholder is None:
                placeholder = len(types) + len(extra)
                extra.append(T.Int("enum64_placeholder", size=1, encoding=0, bits=8))
            t = T.Union(t.name, size=t.size,
                        members=[T.Member(v.name, placeholder, 0) for v in t.values])
        _encode_type(out, t, strings, i)
    for j, t in enumerate(extra):
        _encode_type(out, t, strings, len(types) + j)
    hdr = HEADER.pack(BTF_MAGIC, BTF_VERSION, 0, HEADER.size, 0, len(out), len(out),
                      len(strings.data))
    return hdr + bytes(out) + bytes(strings.data)


def _fixup_datasec(t: T.Datasec, types: list[T.Type], fx: Optional[BTFFixups]) -> T.Datasec:
    """A copy of ``t`` with size and offsets from the ELF, vars sorted by offset."""
    size = t.size
    vars_ = [T.VarSecinfo(v.type, v.offset, v.size) for v in t.vars]
    if t.name not in _EXTERN_SECTIONS and size == 0:
        if fx is None or t.name not in fx.section_sizes:
            raise BTFError(f"BTF DATASEC {t.name!r} has size 0 and no ELF section size was "
                           f"given: pass BTFFixups(section_sizes=...) from the object")
        size = fx.section_sizes[t.name]
        for v in vars_:
            var = types[v.type] if 0 <= v.type < len(types) else None
            if not isinstance(var, T.Var):
                raise BTFError(f"BTF DATASEC {t.name!r} lists type {v.type}, not a VAR")
            if var.linkage == T.BTF_VAR_GLOBAL_EXTERN:
                continue
            off = fx.var_offsets.get((t.name, var.name), fx.var_offsets.get(var.name))
            if off is None:
                if var.linkage == T.BTF_VAR_STATIC:
                    continue          # libbpf leaves static variables as clang wrote them
                raise BTFError(f"no ELF symbol offset for variable {var.name!r} in "
                               f"{t.name!r}: pass it in BTFFixups(var_offsets=...)")
            v.offset = off
    vars_.sort(key=lambda v: v.offset)
    return T.Datasec(t.name, size=size, vars=vars_)


def _sanitize(t: T.Type, types: list[T.Type], f: BTFFeatures) -> T.Type:
    """Rewrite ``t`` into kinds the kernel knows (same order of checks as libbpf)."""
    if (not f.datasec and isinstance(t, T.Var)) or (not f.decl_tag and isinstance(t, T.DeclTag)):
        return T.Int(t.name, size=1, encoding=0, bits=8)
    if not f.datasec and isinstance(t, T.Datasec):
        name = t.name.replace(".", "_").replace("?", "_")
        return T.Struct(name, size=t.size, members=[
            T.Member(types[v.type].name if 0 <= v.type < len(types) else "", v.type,
                     v.offset * 8) for v in t.vars])
    if not f.qmark_datasec and isinstance(t, T.Datasec) and t.name.startswith("?"):
        return T.Datasec("_" + t.name[1:], size=t.size, vars=t.vars)
    if not f.func and isinstance(t, T.FuncProto):
        # libbpf reinterprets each btf_param {name_off, type} as btf_enum {name_off, val}.
        return T.Enum(t.name, size=4, values=[T.EnumValue(p.name, p.type) for p in t.params])
    if not f.func and isinstance(t, T.Func):
        return T.Typedef(t.name, type=t.type)
    if not f.func_global and isinstance(t, T.Func):
        return T.Func(t.name, type=t.type, linkage=T.BTF_FUNC_STATIC)
    if not f.float and isinstance(t, T.Float):
        return T.Struct("", size=t.size)
    if not f.type_tag and isinstance(t, T.TypeTag):
        return T.Const("", type=t.type)
    if not f.enum64 and isinstance(t, T.Enum):
        return T.Enum(t.name, size=t.size, signed=False, values=t.values)
    return t


def _encode_type(out: bytearray, t: T.Type, s: _Strings, tid: int) -> None:
    """Append one btf_type record (and its tail) for ``t``."""
    name = s.add(t.name)

    def head(kind: Kind, vlen: int, size_or_type: int, kflag: bool = False) -> None:
        if vlen > 0xFFFF:
            raise BTFError(f"BTF type [{tid}] {t.name!r} has {vlen} members; the format "
                           f"allows 65535")
        out.extend(_TYPE.pack(name, (int(kflag) << 31) | (kind << 24) | vlen,
                              size_or_type & 0xFFFFFFFF))

    if isinstance(t, T.Int):
        head(Kind.INT, 0, t.size)
        out += _U32.pack((t.encoding & 0xF) << 24 | (t.offset & 0xFF) << 16 | (t.bits & 0xFF))
    elif isinstance(t, T.Ptr):
        head(Kind.PTR, 0, t.type)
    elif isinstance(t, T.Array):
        head(Kind.ARRAY, 0, 0)
        out += _U32X3.pack(t.type, t.index_type, t.nelems)
    elif isinstance(t, T.COMPOSITES):
        kflag = any(m.bitfield_size for m in t.members)
        head(Kind.STRUCT if isinstance(t, T.Struct) else Kind.UNION, len(t.members), t.size,
             kflag)
        for m in t.members:
            off = (m.bitfield_size << 24 | m.offset) if kflag else m.offset
            out += _U32X3.pack(s.add(m.name), m.type, off & 0xFFFFFFFF)
    elif isinstance(t, T.Enum):
        head(Kind.ENUM, len(t.values), t.size, t.signed)
        for v in t.values:
            out += _U32X2.pack(s.add(v.name), v.val & 0xFFFFFFFF)
    elif isinstance(t, T.Enum64):
        head(Kind.ENUM64, len(t.values), t.size, t.signed)
        for v in t.values:
            val = v.val & 0xFFFFFFFFFFFFFFFF
            out += _U32X3.pack(s.add(v.name), val & 0xFFFFFFFF, val >> 32)
    elif isinstance(t, T.Fwd):
        head(Kind.FWD, 0, 0, t.union)
    elif isinstance(t, (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        head(t.kind, 0, t.type)
    elif isinstance(t, T.Func):
        head(Kind.FUNC, t.linkage, t.type)
    elif isinstance(t, T.FuncProto):
        head(Kind.FUNC_PROTO, len(t.params), t.type)
        for p in t.params:
            out += _U32X2.pack(s.add(p.name), p.type)
    elif isinstance(t, T.Var):
        head(Kind.VAR, 0, t.type)
        out += _U32.pack(t.linkage)
    elif isinstance(t, T.Datasec):
        head(Kind.DATASEC, len(t.vars), t.size)
        for v in t.vars:
            out += _U32X3.pack(v.type, v.offset, v.size)
    elif isinstance(t, T.Float):
        head(Kind.FLOAT, 0, t.size)
    elif isinstance(t, T.DeclTag):
        head(Kind.DECL_TAG, 0, t.type)
        out += _I32.pack(t.component_idx)
    else:
        raise BTFError(f"cannot encode BTF type [{tid}] of kind {t.kind.name}")


def _blob(types: list[T.Type]) -> bytes:
    spec = BTFSpec([T.Void(), *types], b"\0")
    return encode(spec)


def probe_blob(feature: str) -> bytes:
    """A minimal BTF blob that ``BPF_BTF_LOAD`` accepts only if the kernel has
    ``feature`` (a :class:`BTFFeatures` field name), for cached feature probes."""
    i32 = T.Int("int", size=4, encoding=T.BTF_INT_SIGNED, bits=32)
    if feature == "func":
        return _blob([i32, T.FuncProto(type=0), T.Func("f", type=2)])
    if feature == "func_global":
        return _blob([i32, T.FuncProto(type=0), T.Func("f", type=2, linkage=T.BTF_FUNC_GLOBAL)])
    if feature in ("datasec", "qmark_datasec"):
        sec = ".data" if feature == "datasec" else "?.data"
        return _blob([i32, T.Var("x", type=1, linkage=T.BTF_VAR_STATIC),
                      T.Datasec(sec, size=4, vars=[T.VarSecinfo(2, 0, 4)])])
    if feature == "float":
        return _blob([T.Float("float", size=4)])
    if feature == "decl_tag":
        return _blob([i32, T.Var("x", type=1, linkage=T.BTF_VAR_STATIC),
                      T.DeclTag("tag", type=2, component_idx=-1)])
    if feature == "type_tag":
        return _blob([i32, T.TypeTag("tag", type=1), T.Ptr(type=2)])
    if feature == "enum64":
        return _blob([T.Enum64("e", size=8, values=[T.EnumValue("V", 1 << 40)])])
    raise ValueError(f"unknown BTF feature {feature!r}; one of "
                     f"{[f.name for f in fields(BTFFeatures)]}")
