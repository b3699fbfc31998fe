"""Parse a raw BTF blob (the ``.BTF`` ELF section, or a kernel/module blob).

Layout (include/uapi/linux/btf.h):

    struct btf_header { u16 magic; u8 version; u8 flags; u32 hdr_len;
                        u32 type_off; u32 type_len; u32 str_off; u32 str_len; }

followed, at ``hdr_len + type_off``, by the type section (a ``struct btf_type``
of 12 bytes per type plus a kind-specific tail) and, at ``hdr_len + str_off``,
by the NUL-separated string section.  Type ids are implicit: the n-th record
is id n (id 0 is void and has no record).

Split BTF (kernel modules) continues the numbering of a base blob: its first
type is ``len(base.types)`` and its string offsets start at ``len(base.strings)``.

Every malformed input raises :class:`~rawprobe.errors.BTFError`; the decoder
only ever reads through ``unpack_from`` after checking the bounds itself.
"""
from __future__ import annotations

import struct

from ..errors import BTFError, NotFoundError
from . import types as T
from .types import Kind

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable, Iterator, Optional

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
HEADER = struct.Struct("<HBBIIIII")     # magic version flags hdr_len type_off type_len str_off str_len
TYPE_HDR = struct.Struct("<III")        # name_off info size_or_type
U32 = struct.Struct("<I")
I32 = struct.Struct("<i")
U32X2 = struct.Struct("<II")
U32X3 = struct.Struct("<III")

MAX_KIND = max(Kind)
# Plain ints for the hot decoder (IntEnum comparisons are several times slower).
_K_UNKN = 0
_K_INT = 1
_K_PTR = 2
_K_ARRAY = 3
_K_STRUCT = 4
_K_UNION = 5
_K_ENUM = 6
_K_FWD = 7
_K_TYPEDEF = 8
_K_VOLATILE = 9
_K_CONST = 10
_K_RESTRICT = 11
_K_FUNC = 12
_K_FUNC_PROTO = 13
_K_VAR = 14
_K_DATASEC = 15
_K_FLOAT = 16
_K_DECL_TAG = 17
_K_TYPE_TAG = 18
_K_ENUM64 = 19
MAX_RESOLVE_DEPTH = 32                  # the kernel's MAX_RESOLVE_DEPTH

# Bytes of kind-specific data after the 12-byte btf_type: (fixed, per vlen item).
TAIL = {
    Kind.UNKN: (0, 0),  # never valid in a blob; rejected before use
    Kind.INT: (4, 0),
    Kind.PTR: (0, 0),
    Kind.ARRAY: (12, 0),
    Kind.STRUCT: (0, 12),
    Kind.UNION: (0, 12),
    Kind.ENUM: (0, 8),
    Kind.FWD: (0, 0),
    Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0),
    Kind.CONST: (0, 0),
    Kind.RESTRICT: (0, 0),
    Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 8),
    Kind.VAR: (4, 0),
    Kind.DATASEC: (0, 12),
    Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (4, 0),
    Kind.TYPE_TAG: (0, 0),
    Kind.ENUM64: (0, 12),
}
# Indexable by raw kind number for the hot walk in kernel.py.
TAIL_FIXED = tuple(TAIL[Kind(k)][0] for k in range(MAX_KIND + 1))
TAIL_ITEM = tuple(TAIL[Kind(k)][1] for k in range(MAX_KIND + 1))


def info_kind(info: int) -> int:
    return (info >> 24) & 0x1F


def info_vlen(info: int) -> int:
    return info & 0xFFFF


def info_kflag(info: int) -> bool:
    return bool(info >> 31)


class Header:
    """The validated btf_header: absolute [start, end) of both sections."""
    __slots__ = ("hdr_len", "flags", "types_start", "types_end", "strs_start", "strs_end")

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER.size:
            raise BTFError(f"BTF blob of {len(data)} bytes is shorter than its "
                           f"{HEADER.size}-byte header; the section is truncated")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
            HEADER.unpack_from(data, 0)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise BTFError("big-endian BTF is not supported: rawprobe loads objects "
                               "for the little-endian machine it runs on; compile with "
                               "-target bpfel (or plain -target bpf on x86/arm64)")
            raise BTFError(f"bad BTF magic {magic:#06x} (want {BTF_MAGIC:#06x}): not a BTF blob")
        if version != BTF_VERSION:
            raise BTFError(f"unsupported BTF version {version} (only {BTF_VERSION} exists)")
        if hdr_len < HEADER.size or hdr_len > len(data):
            raise BTFError(f"BTF header length {hdr_len} is out of range "
                           f"({HEADER.size}..{len(data)})")
        # A longer header (future kernel) is fine only if its extra bytes are zero,
        # as the kernel requires; otherwise we would misread something new.
        if any(data[HEADER.size:hdr_len]):
            raise BTFError("BTF header has unknown non-zero fields: "
                           "produced by a newer toolchain than rawprobe understands")
        if type_off % 4:
            raise BTFError(f"BTF type section offset {type_off} is not 4-byte aligned")
        ts, te = hdr_len + type_off, hdr_len + type_off + type_len
        ss, se = hdr_len + str_off, hdr_len + str_off + str_len
        if te > len(data) or se > len(data):
            raise BTFError(f"BTF sections (types {type_off}+{type_len}, strings "
                           f"{str_off}+{str_len}) run past the end of the "
                           f"{len(data) - hdr_len}-byte body: the blob is truncated")
        if ts < te and ss < se and ts < se and ss < te:
            raise BTFError("BTF type and string sections overlap")
        self.hdr_len, self.flags = hdr_len, flags
        self.types_start, self.types_end = ts, te
        self.strs_start, self.strs_end = ss, se


def check_strings(strings: bytes, *, split: bool = False) -> None:
    """The kernel's rules: non-empty, starts (unless split) and ends with NUL."""
    if not strings:
        if split:
            return
        raise BTFError("BTF string section is empty (it must hold at least the empty string)")
    if not split and strings[0] != 0:
        raise BTFError("BTF string section does not start with the empty string")
    if strings[-1] != 0:
        raise BTFError("BTF string section does not end with a NUL byte: truncated?")


def make_string_reader(buf, start: int = 0, end: Optional[int] = None,
                       base=None) -> Callable[[int], str]:
    """Return ``name(off) -> str`` reading strings from ``buf[start:end]``.

    ``buf`` may be bytes or an mmap (kernel BTF is read in place).  With a
    split ``base`` (anything with ``string_at`` and ``str_len``), offsets below
    the base's string length are the base's strings.
    """
    if end is None:
        end = len(buf)
    base_len = base.str_len if base is not None else 0
    base_name = base.string_at if base is not None else None
    cache: dict[int, str] = {0: ""}
    size = end - start

    def name(off: int) -> str:
        s = cache.get(off)
        if s is not None:
            return s
        if off < base_len:
            s = base_name(off)  # type: ignore[misc]
        else:
            rel = off - base_len
            if rel >= size:
                raise BTFError(f"BTF string offset {off} is past the end of the "
                               f"{base_len + size}-byte string section")
            nul = buf.find(b"\0", start + rel, end)
            if nul < 0:
                raise BTFError(f"BTF string at offset {off} is not NUL-terminated")
            try:
                s = bytes(buf[start + rel:nul]).decode()
            except UnicodeDecodeError:
                raise BTFError(f"BTF string at offset {off} is not valid UTF-8") from None
        cache[off] = s
        return s

    return name


def record_end(data: bytes, off: int, end: int) -> int:
    """Offset just past the type record at ``off``; checks kind and bounds."""
    if off + 12 > end:
        raise BTFError(f"BTF type record at byte {off} is truncated")
    info = U32.unpack_from(data, off + 4)[0]
    kind = (info >> 24) & 0x1F
    if kind == 0 or kind > MAX_KIND:
        raise BTFError(f"BTF type record at byte {off} has unknown kind {kind}: "
                       f"a newer BTF format than rawprobe understands, or corrupt data")
    nxt = off + 12 + TAIL_FIXED[kind] + TAIL_ITEM[kind] * (info & 0xFFFF)
    if nxt > end:
        raise BTFError(f"BTF type record at byte {off} ({Kind(kind).name}, vlen "
                       f"{info & 0xFFFF}) runs past the end of the type section")
    return nxt


def decode_type(data: bytes, off: int, name: Callable[[int], str]) -> T.Type:
    """Decode the record at ``off`` (already bounds-checked by :func:`record_end`)."""
    name_off, info, st = TYPE_HDR.unpack_from(data, off)
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    kflag = bool(info >> 31)
    nm = name(name_off)
    p = off + 12
    if kind == _K_INT:
        v = U32.unpack_from(data, p)[0]
        return T.Int(nm, size=st, encoding=(v >> 24) & 0x0F, offset=(v >> 16) & 0xFF,
                     bits=v & 0xFF)
    if kind == _K_PTR:
        return T.Ptr(nm, type=st)
    if kind == _K_ARRAY:
        et, it, n = U32X3.unpack_from(data, p)
        return T.Array(nm, type=et, index_type=it, nelems=n)
    if kind == _K_STRUCT or kind == _K_UNION:
        members = []
        for i in range(vlen):
            mn, mt, mo = U32X3.unpack_from(data, p + 12 * i)
            if kflag:
                members.append(T.Member(name(mn), mt, mo & 0xFFFFFF, mo >> 24))
            else:
                members.append(T.Member(name(mn), mt, mo))
        cls = T.Struct if kind == _K_STRUCT else T.Union
        return cls(nm, size=st, members=members)
    if kind == _K_ENUM:
        values = []
        for i in range(vlen):
            vn, vv = U32X2.unpack_from(data, p + 8 * i)
            if kflag and vv >= 1 << 31:
                vv -= 1 << 32
            values.append(T.EnumValue(name(vn), vv))
        return T.Enum(nm, size=st, signed=kflag, values=values)
    if kind == _K_ENUM64:
        values = []
        for i in range(vlen):
            vn, lo, hi = U32X3.unpack_from(data, p + 12 * i)
            vv = hi << 32 | lo
            if kflag and vv >= 1 << 63:
                vv -= 1 << 64
            values.append(T.EnumValue(name(vn), vv))
        return T.Enum64(nm, size=st, signed=kflag, values=values)
    if kind == _K_FWD:
        return T.Fwd(nm, union=kflag)
    if kind == _K_TYPEDEF:
        return T.Typedef(nm, type=st)
    if kind == _K_VOLATILE:
        return T.Volatile(nm, type=st)
    if kind == _K_CONST:
        return T.Const(nm, type=st)
    if kind == _K_RESTRICT:
        return T.Restrict(nm, type=st)
    if kind == _K_FUNC:
        return T.Func(nm, type=st, linkage=vlen)
    if kind == _K_FUNC_PROTO:
        params = []
        for i in range(vlen):
            pn, pt = U32X2.unpack_from(data, p + 8 * i)
            params.append(T.Param(name(pn), pt))
        return T.FuncProto(nm, type=st, params=params)
    if kind == _K_VAR:
        return T.Var(nm, type=st, linkage=U32.unpack_from(data, p)[0])
    if kind == _K_DATASEC:
        secinfo = [T.VarSecinfo(*U32X3.unpack_from(data, p + 12 * i)) for i in range(vlen)]
        return T.Datasec(nm, size=st, vars=secinfo)
    if kind == _K_FLOAT:
        return T.Float(nm, size=st)
    if kind == _K_DECL_TAG:
        return T.DeclTag(nm, type=st, component_idx=I32.unpack_from(data, p)[0])
    if kind == _K_TYPE_TAG:
        return T.TypeTag(nm, type=st)
    raise BTFError(f"BTF type record at byte {off} has unknown kind {kind}")


def referenced_ids(t: T.Type) -> Iterator[int]:
    """Every type id a type refers to (for validation and graph walks)."""
    if isinstance(t, T.COMPOSITES):
        for m in t.members:
            yield m.type
    elif isinstance(t, T.Array):
        yield t.type
        yield t.index_type
    elif isinstance(t, T.FuncProto):
        yield t.type
        for p in t.params:
            yield p.type
    elif isinstance(t, T.Datasec):
        for v in t.vars:
            yield v.type
    elif isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag,
                        T.Func, T.Var, T.DeclTag)):
        yield t.type


# Kinds whose target must be resolvable without passing through a struct/union:
# a cycle through only these (e.g. typedef A -> const -> typedef A) is an
# infinite type the kernel rejects too.
_CHAIN = (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag, T.Array,
          T.Func, T.Var, T.DeclTag)


# For _validate's fast paths (exact classes: decode_type makes no subclasses).
_CHAIN_SET = frozenset(_CHAIN)
_ONE_REF = frozenset({T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag,
                      T.Func, T.Var})          # DeclTag has a component_idx to check too
_NO_REF = frozenset({T.Int, T.Enum, T.Enum64, T.Fwd, T.Float})


def essential_name(name: str) -> str:
    """``name`` without a ``___flavour`` suffix, by libbpf's rule: cut at the
    last ``___`` that follows a non-underscore and precedes a non-underscore."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return name[:i + 1]
    return name


class BTFLookups:
    """Lookups shared by :class:`BTFSpec` and ``KernelBTF``; subclasses provide
    ``type_by_id`` and ``types_by_name``."""

    def type_by_id(self, type_id: int) -> T.Type:  # pragma: no cover - abstract
        raise NotImplementedError

    def types_by_name(self, name: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def name_of(self, type_id: int) -> str:
        return self.type_by_id(type_id).name

    def type_by_name(self, name: str, kind: Optional[Kind] = None) -> tuple[int, T.Type]:
        """The first type called ``name`` (of ``kind`` if given); NotFoundError if none."""
        for i in self.types_by_name(name):
            t = self.type_by_id(i)
            if kind is None or t.kind == kind:
                return i, t
        what = f"{kind.name} " if kind is not None else ""
        raise NotFoundError(f"no BTF type {what}{name!r}")

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers (const/volatile/restrict/type_tag)."""
        return resolve(self, type_id)

    def size_of(self, type_id: int) -> int:
        """Size in bytes, as the kernel's btf_resolve_size computes it."""
        return size_of(self, type_id)


class BTFSpec(BTFLookups):
    """A parsed BTF blob: ``types[id]`` with ``types[0]`` = ``Void()``.

    For split BTF (``base`` given) ``types`` still spans the whole id space:
    the base types come first, so ids mean the same as in the kernel.
    """

    def __init__(self, types: list[T.Type], strings: bytes, *,
                 base: Optional["BTFSpec"] = None, flags: int = 0) -> None:
        self.types = types
        self.strings = strings            # this blob's own string section
        self.base = base
        self.flags = flags
        self._by_name: Optional[dict[str, list[int]]] = None
        self._by_essential: Optional[dict[str, list[int]]] = None
        self._name = make_string_reader(strings, base=base)
        self._raw: Optional[bytes] = None          # the blob, when parsed by from_bytes
        self._datasec_at: dict[int, int] = {}      # DATASEC id -> record offset in _raw
        self._linkage_at: dict[int, int] = {}      # FUNC/VAR id -> record offset in _raw
        self._edited = False       # changed beyond what load_blob patches in place

    @property
    def raw(self) -> Optional[bytes]:
        """The blob exactly as parsed by ``from_bytes`` (None for split BTF or
        types built in memory)."""
        return self._raw

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, *, base: Optional["BTFSpec"] = None) -> "BTFSpec":
        """Parse and validate a whole blob.  ``base`` makes it split BTF."""
        data = bytes(data)
        hdr = Header(data)
        strings = data[hdr.strs_start:hdr.strs_end]
        check_strings(strings, split=base is not None)
        spec = cls(list(base.types) if base is not None else [T.Void()], strings,
                   base=base, flags=hdr.flags)
        types, name = spec.types, spec._name
        first_own = len(types)
        off, end = hdr.types_start, hdr.types_end
        datasecs, linked = spec._datasec_at, spec._linkage_at
        Datasec, Func, Var = T.Datasec, T.Func, T.Var
        while off < end:
            nxt = record_end(data, off, end)
            t = decode_type(data, off, name)
            if type(t) is Datasec:
                datasecs[len(types)] = off
            elif type(t) is Func or type(t) is Var:
                linked[len(types)] = off
            types.append(t)
            off = nxt
        spec._validate(first_own)
        if base is None:
            spec._raw = data
        return spec

    def load_blob(self) -> Optional[bytes]:
        """This blob as parsed, with each DATASEC's current size and variables
        (sorted by offset) and each FUNC's and VAR's current linkage written
        over the originals: what ``BPF_BTF_LOAD`` needs for an object's BTF once
        the ELF layer has filled in what clang left 0 (made ``__hidden``
        functions static, laid out ``.kconfig``), when the kernel needs nothing
        sanitised.  Skips re-encoding
        every type (:func:`rawprobe.btf.marshal.encode`), and keeps the string
        section byte for byte.  None if the blob was not parsed here (or is
        split BTF), a DATASEC cannot be patched in place (size still 0, a
        different number of variables), or types were added or otherwise
        changed (:meth:`add_type`, :meth:`mark_edited`): use ``marshal.encode``
        then.
        """
        raw = self._raw
        if raw is None or self._edited:
            return None
        out = None
        for tid, off in self._datasec_at.items():
            t = self.types[tid]
            if type(t) is not T.Datasec or t.size == 0:
                return None
            info, size = U32X2.unpack_from(raw, off + 4)
            if info & 0xFFFF != len(t.vars):
                return None
            recs = b"".join(U32X3.pack(v.type, v.offset, v.size)
                            for v in sorted(t.vars, key=lambda v: v.offset))
            if size == t.size and recs == raw[off + 12:off + 12 + len(recs)]:
                continue
            if out is None:
                out = bytearray(raw)
            U32.pack_into(out, off + 8, t.size)
            out[off + 12:off + 12 + len(recs)] = recs
        for tid, off in self._linkage_at.items():
            t = self.types[tid]
            if type(t) is T.Func:          # a FUNC's linkage is its vlen
                info = U32.unpack_from(raw, off + 4)[0]
                at, value = off + 4, (info & ~0xFFFF) | t.linkage
                if not 0 <= t.linkage <= 0xFFFF:
                    return None
            elif type(t) is T.Var:         # a VAR's follows its header
                at, value = off + 12, t.linkage
            else:
                return None
            if U32.unpack_from(raw, at)[0] != value:
                if out is None:
                    out = bytearray(raw)
                U32.pack_into(out, at, value)
        return raw if out is None else bytes(out)

    def add_type(self, t: T.Type) -> int:
        """Append ``t`` (its references must exist); return its id."""
        self.types.append(t)
        self._by_name = self._by_essential = None
        self._edited = True
        return len(self.types) - 1

    def mark_edited(self) -> None:
        """Say that a type was changed in a way :meth:`load_blob` does not
        patch (anything but DATASEC layouts and FUNC/VAR linkage)."""
        self._edited = True

    def _validate(self, first: int) -> None:
        types = self.types
        n = len(types)
        one_ref, no_ref = _ONE_REF, _NO_REF
        for i in range(first, n):
            t = types[i]
            cls = type(t)
            if cls in no_ref or (cls in one_ref and t.type < n):  # the common cases, fast
                continue
            for r in referenced_ids(t):
                if r >= n:
                    raise BTFError(f"BTF type [{i}] {t.kind.name} {t.name!r} refers to "
                                   f"type id {r}, but the blob has only {n - 1} types")
            if isinstance(t, T.DeclTag) and t.component_idx < -1:
                raise BTFError(f"BTF decl tag [{i}] has bad component_idx {t.component_idx}")
        # Cycle check over non-composite references (iterative colouring).
        state = bytearray(n)              # 0 new, 1 on stack, 2 done
        chain = _CHAIN_SET
        for i in range(first, n):
            if state[i] or type(types[i]) not in chain:
                continue                  # done already, or no chain starts here
            j = i
            path = []
            while j and state[j] == 0 and isinstance(types[j], _CHAIN):
                state[j] = 1
                path.append(j)
                j = types[j].type  # type: ignore[attr-defined]
            if j and state[j] == 1:
                names = " -> ".join(f"[{k}]" for k in path)
                raise BTFError(f"BTF type loop: {names} -> [{j}]")
            for k in path:
                state[k] = 2

    # -- lookups --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.types)

    @property
    def str_len(self) -> int:
        """Length of the whole string space (base + own) for split BTF on top."""
        return (self.base.str_len if self.base is not None else 0) + len(self.strings)

    def string_at(self, off: int) -> str:
        return self._name(off)

    def type_by_id(self, type_id: int) -> T.Type:
        if not 0 <= type_id < len(self.types):
            raise BTFError(f"no BTF type with id {type_id} (have 0..{len(self.types) - 1})")
        return self.types[type_id]

    def types_by_name(self, name: str) -> list[int]:
        """Ids of every type called ``name`` (any kind), ascending."""
        if self._by_name is None:
            idx: dict[str, list[int]] = {}
            for i, t in enumerate(self.types):
                if t.name:
                    idx.setdefault(t.name, []).append(i)
            self._by_name = idx
        return list(self._by_name.get(name, ()))

    def essential_ids(self, name: str) -> list[int]:
        """Ids of every type whose name minus any ``___flavour`` is ``name``."""
        if self._by_essential is None:
            idx: dict[str, list[int]] = {}
            for i, t in enumerate(self.types):
                if t.name:
                    idx.setdefault(essential_name(t.name), []).append(i)
            self._by_essential = idx
        return list(self._by_essential.get(name, ()))

# Generic helpers over anything with .type_by_id(i) (BTFSpec and KernelBTF).

def resolve(btf, type_id: int) -> int:
    for _ in range(MAX_RESOLVE_DEPTH + 1):
        t = btf.type_by_id(type_id)
        if isinstance(t, T.Typedef) or isinstance(t, T.QUALIFIERS):
            type_id = t.type  # type: ignore[attr-defined]
            continue
        return type_id
    raise BTFError(f"BTF typedef/qualifier chain from type {type_id} is deeper than "
                   f"{MAX_RESOLVE_DEPTH} or loops")


def size_of(btf, type_id: int) -> int:
    nelems = 1
    start = type_id
    for _ in range(MAX_RESOLVE_DEPTH + 1):
        t = btf.type_by_id(type_id)
        if isinstance(t, (T.Int, T.Struct, T.Union, T.Enum, T.Enum64, T.Datasec, T.Float)):
            return nelems * t.size
        if isinstance(t, T.Ptr):
            return nelems * 8          # BPF is 64-bit; libbpf uses the BTF's ptr size (8)
        if isinstance(t, T.Array):
            nelems *= t.nelems
            type_id = t.type
            continue
        if isinstance(t, (T.Typedef, T.Var, T.DeclTag, *T.QUALIFIERS)):
            type_id = t.type  # type: ignore[attr-defined]
            continue
        raise BTFError(f"BTF type [{type_id}] {t.kind.name} {t.name!r} has no size")
    raise BTFError(f"BTF type [{start}]: size chain deeper than {MAX_RESOLVE_DEPTH} or loops")
