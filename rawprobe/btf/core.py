"""CO-RE relocation computation (and the instruction patching that mirrors it).

A CO-RE relocation (``struct bpf_core_relo`` in ``.BTF.ext``) says: the
instruction at ``insn_off`` uses some property of local type ``type_id``
reached through ``access_str`` ("0:1:2" = first element, member 1, member 2);
recompute it for the kernel we run on.  The semantics are libbpf's
(tools/lib/bpf/relo_core.c, documented in Documentation/bpf/llvm_reloc.rst and
libbpf's CO-RE guide), which clang's output assumes:

* **Candidates**: target types of a compatible kind whose *essential* name
  (``foo___flavour`` -> ``foo``) equals the local one's; vmlinux first,
  module BTF only when vmlinux has none.  Every candidate that matches must
  give the same answer, or the relocation is ambiguous (an error); matching
  candidates are remembered per local type, pruning later relocations'
  choices exactly as libbpf does.
* **Field kinds** walk the access string in both BTFs, by member *name* in
  the target (through anonymous structs/unions), checking that member types
  are compatible; array indices must be in bounds (flexible arrays excepted).
* **Type kinds** check whole-type compatibility (or the stricter "matches"
  relation for TYPE_MATCHES); **enum kinds** look the enumerator up by
  essential name.
* **Nothing found**: existence kinds give 0; TYPE_SIZE/TYPE_ID_TARGET give 0;
  the rest *poison* the instruction (a call to helper 0xbad2310), which the
  verifier accepts in dead code, so ``if (bpf_core_field_exists(...))`` guards
  still load.

Computing (:func:`CoreRelocator.compute`) is pure: it returns a
:class:`CoreResult`.  Applying it to instruction bytes is :func:`apply`.
All kinds need a kernel with BTF (5.4+); TYPE_MATCHES needs clang 15+.
"""
from __future__ import annotations

from .. import insn as I
from ..errors import BTFError, CORERelocationError, RawprobeError
from . import types as T
from .ext import CoreRelo, CoreReloKind as K
from .parse import essential_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterable, Optional, Sequence

    # Either BTF flavour works as local or target: BTFSpec or KernelBTF
    # (type_by_id, size_of, essential_ids, types_by_name).
    BTFLike = Any

POISON_HELPER = 0xBAD2310           # 195896080: "invalid func unknown#195896080"
SPEC_MAX_LEN = 64                   # BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32                     # recursion limit for compat/match, as libbpf
U64 = (1 << 64) - 1

FIELD_KINDS = frozenset({K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_EXISTS,
                         K.FIELD_SIGNED, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64})
TYPE_KINDS = frozenset({K.TYPE_ID_LOCAL, K.TYPE_ID_TARGET, K.TYPE_EXISTS, K.TYPE_SIZE,
                        K.TYPE_MATCHES})
ENUMVAL_KINDS = frozenset({K.ENUMVAL_EXISTS, K.ENUMVAL_VALUE})

KIND_NAMES = {
    K.FIELD_BYTE_OFFSET: "byte_off", K.FIELD_BYTE_SIZE: "byte_sz",
    K.FIELD_EXISTS: "field_exists", K.FIELD_SIGNED: "signed",
    K.FIELD_LSHIFT_U64: "lshift_u64", K.FIELD_RSHIFT_U64: "rshift_u64",
    K.TYPE_ID_LOCAL: "local_type_id", K.TYPE_ID_TARGET: "target_type_id",
    K.TYPE_EXISTS: "type_exists", K.TYPE_MATCHES: "type_matches",
    K.TYPE_SIZE: "type_size", K.ENUMVAL_EXISTS: "enumval_exists",
    K.ENUMVAL_VALUE: "enumval_value",
}


class _Fail(CORERelocationError):
    """The relocation cannot be computed.  ``compute`` re-raises it as a plain
    CORERelocationError with program, instruction and type path; the helpers
    (parse_spec, match_spec, ...) let it out as it is."""


class _Poison(Exception):
    """Internal: libbpf's -EUCLEAN, i.e. poison the instruction."""


# -- specs --------------------------------------------------------------------

class Accessor:
    """One high-level step: a named member of ``type_id`` (a struct/union),
    or, with ``name`` None, element ``idx`` of an array of ``type_id``."""
    __slots__ = ("type_id", "idx", "name")

    def __init__(self, type_id: int, idx: int, name: Optional[str] = None) -> None:
        self.type_id, self.idx, self.name = type_id, idx, name

    def __repr__(self) -> str:
        return f"Accessor({self.type_id}, {self.idx}, {self.name!r})"


class CoreSpec:
    """A parsed (local) or matched (target) access path: ``raw`` low-level
    indices, ``acc`` high-level steps, ``bit_offset`` from the root."""
    __slots__ = ("btf", "root_type_id", "kind", "raw", "acc", "bit_offset")

    def __init__(self, btf: BTFLike, root_type_id: int, kind: K) -> None:
        self.btf = btf
        self.root_type_id = root_type_id
        self.kind = kind
        self.raw: list[int] = []
        self.acc: list[Accessor] = []
        self.bit_offset = 0

    def path(self) -> str:
        """C-like path: ``task_struct.real_parent.tgid``, ``pid_type::PIDTYPE_SID``."""
        root = _type(self.btf, self.root_type_id)
        s = root.name or f"<anon {root.kind.name.lower()}>"
        if self.kind in TYPE_KINDS:
            return s
        if self.kind in ENUMVAL_KINDS:
            return f"{s}::{self.acc[0].name}" if self.acc else s
        for i, a in enumerate(self.acc):
            if a.name:
                s += "." + a.name
            elif i > 0 or a.idx > 0:
                s += f"[{a.idx}]"
        return s


class CoreResult(T._Record):
    """What one relocation computes to; field names follow libbpf's
    ``struct bpf_core_relo_res``.

    ``orig_val`` is what clang put in the instruction (checked before patching
    when ``validate``); ``new_val`` replaces it.  ``orig_sz``/``new_sz`` are the
    field sizes for load/store instructions: when they differ the patcher
    changes the access size, unless ``fail_memsz_adjust`` (a signed or
    non-integer field changed size), in which case the load/store is poisoned.
    ``local_path`` is e.g. ``"task_struct.real_parent"``; ``target_type_id`` the
    matched root type in the target (0: none), ``target_btf`` which BTF
    (vmlinux or a module) matched.

    A slotted class rather than a dataclass (``import dataclasses`` costs ~10 ms).
    """
    __slots__ = ("kind", "orig_val", "new_val", "poison", "validate", "fail_memsz_adjust",
                 "orig_sz", "new_sz", "orig_type_id", "new_type_id", "local_path",
                 "target_type_id", "target_btf")

    def __init__(self, kind: K, orig_val: int = 0, new_val: int = 0, poison: bool = False,
                 validate: bool = True, fail_memsz_adjust: bool = False, orig_sz: int = 0,
                 new_sz: int = 0, orig_type_id: int = 0, new_type_id: int = 0,
                 local_path: str = "", target_type_id: int = 0,
                 target_btf: Optional[BTFLike] = None) -> None:
        self.kind = kind
        self.orig_val = orig_val
        self.new_val = new_val
        self.poison = poison
        self.validate = validate
        self.fail_memsz_adjust = fail_memsz_adjust
        self.orig_sz = orig_sz
        self.new_sz = new_sz
        self.orig_type_id = orig_type_id
        self.new_type_id = new_type_id
        self.local_path = local_path
        self.target_type_id = target_type_id
        self.target_btf = target_btf

    def copy(self) -> CoreResult:
        new = CoreResult.__new__(CoreResult)
        for name in CoreResult.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    # The brief's names for the two values.
    @property
    def local_value(self) -> int:
        return self.orig_val

    @property
    def target_value(self) -> int:
        return self.new_val


# -- small BTF helpers over either BTF flavour ----------------------------------

def _type(btf, type_id: int) -> T.Type:
    return btf.type_by_id(type_id)


def _skip(btf, type_id: int) -> tuple[int, T.Type]:
    """libbpf's skip_mods_and_typedefs: (resolved id, resolved type)."""
    for _ in range(_MAX_DEPTH + 1):
        t = btf.type_by_id(type_id)
        if isinstance(t, T.Typedef) or isinstance(t, T.QUALIFIERS):
            type_id = t.type  # type: ignore[attr-defined]
            continue
        return type_id, t
    raise BTFError(f"typedef/modifier chain at type {type_id} is too deep or loops")


def _size(btf, type_id: int) -> int:
    try:
        return btf.size_of(type_id)
    except BTFError as e:
        raise _Fail(str(e)) from None


def _is_enum(t: T.Type) -> bool:
    return isinstance(t, (T.Enum, T.Enum64))


def _kind_compat(a: T.Type, b: T.Type) -> bool:
    """btf_kind_core_compat: same kind, or ENUM vs ENUM64."""
    return a.kind == b.kind or (_is_enum(a) and _is_enum(b))


def _names_match(local: str, targ: str) -> bool:
    if not targ:
        return not local
    return essential_name(local) == essential_name(targ)


def _composite_members(t: T.Type) -> list[T.Member]:
    return t.members if isinstance(t, T.COMPOSITES) else []  # type: ignore[attr-defined]


# -- compatibility rules (libbpf's, restated) ----------------------------------

def types_are_compat(lbtf, lid: int, tbtf, tid: int, level: int = _MAX_DEPTH) -> bool:
    """Compatibility for TYPE_EXISTS/TYPE_SIZE/TYPE_ID_TARGET (root names
    already matched): kinds must agree after skipping typedefs/modifiers;
    structs, unions, enums (any size), fwds are compatible; ints unless
    legacy bitfield ints; pointers and arrays by their target; function
    prototypes by arity and each parameter/return type."""
    if not _kind_compat(_type(lbtf, lid), _type(tbtf, tid)):
        return False
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if not _kind_compat(lt, tt):
            return False
        if isinstance(lt, (T.Void, T.Struct, T.Union, T.Enum, T.Enum64, T.Fwd)):
            return True
        if isinstance(lt, T.Int):
            return lt.offset == 0 and tt.offset == 0  # type: ignore[attr-defined]
        if isinstance(lt, (T.Ptr, T.Array)):
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if isinstance(lt, T.FuncProto):
            assert isinstance(tt, T.FuncProto)
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    raise _Fail("function prototype nesting too deep")
                if not types_are_compat(lbtf, _skip(lbtf, lp.type)[0], tbtf,
                                        _skip(tbtf, tp.type)[0], level - 1):
                    return False
            lid, tid = lt.type, tt.type
            continue
        return False
    raise _Fail("type compatibility check nests too deep")


def fields_are_compat(lbtf, lid: int, tbtf, tid: int) -> bool:
    """Compatibility of a local member's type with the target member's:
    any struct/union pair; ptrs; floats; fwds/enums whose essential names
    agree (or either is anonymous); ints (not legacy bitfield ints); arrays by
    element type."""
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if isinstance(lt, T.COMPOSITES) and isinstance(tt, T.COMPOSITES):
            return True
        if not _kind_compat(lt, tt):
            return False
        if isinstance(lt, (T.Ptr, T.Float)):
            return True
        if isinstance(lt, (T.Fwd, T.Enum, T.Enum64)):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if isinstance(lt, T.Int):
            return lt.offset == 0 and tt.offset == 0  # type: ignore[attr-defined]
        if isinstance(lt, T.Array):
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        return False
    raise _Fail("field compatibility check nests too deep")


def types_match(lbtf, lid: int, tbtf, tid: int, behind_ptr: bool = False,
                level: int = _MAX_DEPTH) -> bool:
    """The TYPE_MATCHES relation (stricter than compat): after skipping
    typedefs/modifiers the names must match (essential names; an anonymous
    target only matches an anonymous local) and kinds agree, except that
    behind a pointer a struct/union matches a fwd of the same flavour and
    enum matches enum64.  Ints: same size and signedness.  Enums: same size,
    every local enumerator named in the target.  Structs/unions: every local
    member has a same-named target member whose type matches (only name and
    kind are checked once behind a pointer).  Arrays: same length, matching
    elements.  Function prototypes: same arity, matching params and return."""
    if level <= 0:
        raise _Fail("type match nests too deep")
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if not _names_match(lt.name, tt.name):
            return False
        if isinstance(lt, T.Void):
            return isinstance(tt, T.Void)
        if isinstance(lt, T.Fwd):
            if behind_ptr and isinstance(tt, T.COMPOSITES):
                return isinstance(tt, T.Union) == lt.union
            return isinstance(tt, T.Fwd) and tt.union == lt.union
        if _is_enum(lt):
            if not _is_enum(tt) or lt.size != tt.size:  # type: ignore[attr-defined]
                return False
            if len(lt.values) > len(tt.values):  # type: ignore[attr-defined]
                return False
            tnames = [v.name for v in tt.values]  # type: ignore[attr-defined]
            return all(any(_names_match(lv.name, tn) for tn in tnames)
                       for lv in lt.values)  # type: ignore[attr-defined]
        if isinstance(lt, T.COMPOSITES):
            if behind_ptr:
                if lt.kind == tt.kind:
                    return True
                return isinstance(tt, T.Fwd) and tt.union == isinstance(lt, T.Union)
            if lt.kind != tt.kind:
                return False
            tms = _composite_members(tt)
            if len(lt.members) > len(tms):
                return False
            for lm in lt.members:
                if not any(_names_match(lm.name, tm.name)
                           and types_match(lbtf, lm.type, tbtf, tm.type, behind_ptr,
                                           level - 1)
                           for tm in tms):
                    return False
            return True
        if isinstance(lt, T.Int):
            return (isinstance(tt, T.Int) and lt.size == tt.size
                    and lt.signed == tt.signed)
        if isinstance(lt, T.Ptr):
            if not isinstance(tt, T.Ptr):
                return False
            behind_ptr = True
            lid, tid = lt.type, tt.type
            continue
        if isinstance(lt, T.Array):
            if not isinstance(tt, T.Array) or lt.nelems != tt.nelems:
                return False
            lid, tid = lt.type, tt.type
            continue
        if isinstance(lt, T.FuncProto):
            if not isinstance(tt, T.FuncProto) or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if not types_match(lbtf, lp.type, tbtf, tp.type, behind_ptr, level - 1):
                    return False
            lid, tid = lt.type, tt.type
            continue
        return False
    raise _Fail("type match nests too deep")


# -- parsing the local spec -----------------------------------------------------

def _is_flex_arr(btf, prev: Optional[Accessor], arr: T.Array) -> bool:
    """A zero-length array that is the last member of its struct."""
    if prev is None or not prev.name or arr.nelems > 0:
        return False
    return prev.idx == len(_composite_members(_type(btf, prev.type_id))) - 1


def parse_spec(btf, relo: CoreRelo) -> CoreSpec:
    """Turn a relocation's access string into a spec against the local BTF."""
    s = relo.access_str
    if not s or s[0] == ":":
        raise _Fail(f"bad access string {s!r}")
    try:
        _type(btf, relo.type_id)
    except BTFError as e:
        raise _Fail(str(e)) from None
    spec = CoreSpec(btf, relo.type_id, relo.kind)
    if relo.kind in TYPE_KINDS:
        if s != "0":
            raise _Fail(f"type relocation with access string {s!r} (want '0')")
        return spec
    parts = s.split(":")
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise _Fail(f"bad access string {s!r}")
    raw = [int(p) for p in parts]
    if len(raw) > SPEC_MAX_LEN:
        raise _Fail(f"access string {s!r} is longer than {SPEC_MAX_LEN}")
    spec.raw = raw
    tid, t = _skip(btf, relo.type_id)
    spec.acc.append(Accessor(tid, raw[0]))

    if relo.kind in ENUMVAL_KINDS:
        if not _is_enum(t) or len(raw) > 1 or raw[0] >= len(t.values):  # type: ignore
            raise _Fail(f"enum relocation {s!r} does not name an enumerator of "
                        f"[{relo.type_id}] {t.kind.name} {t.name!r}")
        spec.acc[0].name = t.values[raw[0]].name  # type: ignore[attr-defined]
        return spec
    if relo.kind not in FIELD_KINDS:
        raise _Fail(f"unknown relocation kind {relo.kind}")

    spec.bit_offset = raw[0] * _size(btf, tid) * 8
    for idx in raw[1:]:
        tid, t = _skip(btf, tid)
        if isinstance(t, T.COMPOSITES):
            if idx >= len(t.members):
                raise _Fail(f"member #{idx} of {t.name or 'anonymous'} does not exist")
            m = t.members[idx]
            spec.bit_offset += m.offset
            if m.name:
                spec.acc.append(Accessor(tid, idx, m.name))
            tid = m.type
        elif isinstance(t, T.Array):
            flex = _is_flex_arr(btf, spec.acc[-1], t)
            tid, _ = _skip(btf, t.type)
            if not flex and idx >= t.nelems:
                raise _Fail(f"index {idx} past the end of a {t.nelems}-element array")
            spec.acc.append(Accessor(tid, idx))
            spec.bit_offset += idx * _size(btf, tid) * 8
        else:
            raise _Fail(f"access string {s!r} steps into [{tid}] {t.kind.name}, "
                        f"which has no members or elements")
    return spec       # one accessor at most per index, and len(raw) <= SPEC_MAX_LEN above


# -- matching against one candidate --------------------------------------------

def _match_member(lbtf, lacc: Accessor, tbtf, tid: int, spec: CoreSpec) -> Optional[int]:
    """Find the local accessor's member by name in target type ``tid``
    (descending into anonymous members); on success append the accessor(s)
    to ``spec`` and return the member's type id, else None (spec unchanged)."""
    tid, tt = _skip(tbtf, tid)
    if not isinstance(tt, T.COMPOSITES):
        return None
    members = tt.members
    if members and len(spec.raw) >= SPEC_MAX_LEN:
        raise _Fail("target struct nesting too deep")
    want = lacc.name            # the local member's name (set: only named steps get here)
    # Members in order: the first anonymous member holding ``want`` or the
    # member named ``want``, whichever comes first, decides (libbpf's order).
    for i, m in enumerate(members):
        name = m.name
        if name == want:
            lm = _type(lbtf, lacc.type_id).members[lacc.idx]  # type: ignore[attr-defined]
            if not fields_are_compat(lbtf, lm.type, tbtf, m.type):
                return None   # same name, incompatible type: no match at all
            spec.bit_offset += m.offset
            spec.raw.append(i)
            spec.acc.append(Accessor(tid, i, name))
            return m.type
        if not name:
            spec.bit_offset += m.offset
            spec.raw.append(i)
            found = _match_member(lbtf, lacc, tbtf, m.type, spec)
            if found is not None:
                return found
            spec.bit_offset -= m.offset
            spec.raw.pop()
    return None


def match_spec(local: CoreSpec, tbtf, tid: int) -> Optional[CoreSpec]:
    """Match a local spec against candidate ``tid``: the target spec, or None."""
    targ = CoreSpec(tbtf, tid, local.kind)
    lbtf = local.btf
    if local.kind in TYPE_KINDS:
        ok = (types_match(lbtf, local.root_type_id, tbtf, tid)
              if local.kind == K.TYPE_MATCHES
              else types_are_compat(lbtf, local.root_type_id, tbtf, tid))
        return targ if ok else None

    if local.kind in ENUMVAL_KINDS:
        rid, tt = _skip(tbtf, tid)
        if not _is_enum(tt):
            return None
        want = essential_name(local.acc[0].name or "")
        for i, v in enumerate(tt.values):  # type: ignore[attr-defined]
            if essential_name(v.name) == want:
                targ.acc.append(Accessor(rid, i, v.name))
                targ.raw.append(i)
                return targ
        return None

    for i, lacc in enumerate(local.acc):
        tid, tt = _skip(tbtf, tid)
        if lacc.name:
            nxt = _match_member(lbtf, lacc, tbtf, tid, targ)
            if nxt is None:
                return None
            tid = nxt
        else:
            if i > 0:
                if not isinstance(tt, T.Array):
                    return None
                flex = _is_flex_arr(tbtf, targ.acc[-1] if targ.acc else None, tt)
                if not flex and lacc.idx >= tt.nelems:
                    return None
                tid, _ = _skip(tbtf, tt.type)
            if len(targ.raw) >= SPEC_MAX_LEN:
                raise _Fail("target nesting too deep")
            targ.acc.append(Accessor(tid, lacc.idx))
            targ.raw.append(lacc.idx)
            targ.bit_offset += lacc.idx * _size(tbtf, tid) * 8
    return targ


# -- values ---------------------------------------------------------------------

class _Val:
    """One side's value (libbpf computes local and target the same way)."""
    __slots__ = ("val", "sz", "type_id", "validate")

    def __init__(self, val: int = 0, sz: int = 0, type_id: int = 0,
                 validate: bool = True) -> None:
        self.val, self.sz, self.type_id, self.validate = val, sz, type_id, validate


def _innermost_elem_size(btf, type_id: int) -> tuple[int, int]:
    """(element size, element id) after stripping all array dimensions."""
    eid, t = _skip(btf, type_id)
    while isinstance(t, T.Array):
        eid, t = _skip(btf, t.type)
    return _size(btf, eid), eid


def _field_value(kind: K, spec: Optional[CoreSpec], insn: int) -> _Val:
    if kind == K.FIELD_EXISTS:
        return _Val(1 if spec else 0)
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.acc[-1]
    if not acc.name:                    # the path ends in an array element
        if kind == K.FIELD_BYTE_OFFSET:
            sz, _ = _innermost_elem_size(btf, acc.type_id)
            return _Val(spec.bit_offset // 8, sz, acc.type_id)
        if kind == K.FIELD_BYTE_SIZE:
            return _Val(_size(btf, acc.type_id))
        raise _Fail(f"relocation {KIND_NAMES[kind]} at insn #{insn} cannot apply "
                    f"to an array element")
    t = _type(btf, acc.type_id)
    m = t.members[acc.idx]  # type: ignore[attr-defined]
    ftid, mt = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    v = _Val(validate=not bitfield)     # compilers may lay bitfields out differently
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if byte_sz <= 0:
            raise _Fail(f"bitfield {m.name!r} has a type without a size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail(f"bitfield {m.name!r} cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(btf, ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8

    if kind == K.FIELD_BYTE_OFFSET:
        v.val = byte_off
        if not bitfield:
            v.sz, _ = _innermost_elem_size(btf, ftid)
            v.type_id = ftid
    elif kind == K.FIELD_BYTE_SIZE:
        v.val = byte_sz
    elif kind == K.FIELD_SIGNED:
        v.val = int((_is_enum(mt) and mt.signed)  # type: ignore[attr-defined]
                    or (isinstance(mt, T.Int) and mt.signed))
        v.validate = True
    elif kind == K.FIELD_LSHIFT_U64:   # little-endian layout
        v.val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif kind == K.FIELD_RSHIFT_U64:
        v.val = 64 - bit_sz
        v.validate = True
    return v


def _type_value(kind: K, spec: Optional[CoreSpec]) -> _Val:
    if spec is None:                    # type-based relocations give 0, never poison
        return _Val(0)
    if kind == K.TYPE_ID_TARGET:
        return _Val(spec.root_type_id, validate=False)
    if kind in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        return _Val(1)
    if kind == K.TYPE_SIZE:
        return _Val(_size(spec.btf, spec.root_type_id))
    raise _Fail(f"unexpected type relocation kind {kind}")


def _enum_value(kind: K, spec: Optional[CoreSpec]) -> _Val:
    if kind == K.ENUMVAL_EXISTS:
        return _Val(1 if spec else 0)
    if spec is None:
        raise _Poison()
    t = _type(spec.btf, spec.acc[0].type_id)
    val = t.values[spec.acc[0].idx].val  # type: ignore[attr-defined]
    if isinstance(t, T.Enum):
        # libbpf reads the 32-bit value as s32 and widens it: sign-extend.
        val &= 0xFFFFFFFF
        if val >= 1 << 31:
            val -= 1 << 32
    return _Val(val & U64)


def _calc(relo: CoreRelo, local: CoreSpec, targ: Optional[CoreSpec], insn: int) -> CoreResult:
    res = CoreResult(relo.kind)
    try:
        if relo.kind in FIELD_KINDS:
            lv = _field_value(relo.kind, local, insn)
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = \
                lv.val, lv.sz, lv.type_id, lv.validate
            tv = _field_value(relo.kind, targ, insn)
            res.new_val, res.new_sz, res.new_type_id = tv.val, tv.sz, tv.type_id
            if res.orig_sz != res.new_sz:
                assert targ is not None
                ot = _type(local.btf, res.orig_type_id)
                nt = _type(targ.btf, res.new_type_id)
                # Only pointers (zero-extended) and unsigned ints may change
                # load size.  libbpf compares the encoding with SIGNED exactly,
                # so a signed char counts as unsigned here; we agree with it.
                safe = ((isinstance(ot, T.Ptr) and isinstance(nt, T.Ptr))
                        or (isinstance(ot, T.Int) and isinstance(nt, T.Int)
                            and ot.encoding != T.BTF_INT_SIGNED
                            and nt.encoding != T.BTF_INT_SIGNED))
                res.fail_memsz_adjust = not safe
        elif relo.kind in TYPE_KINDS:
            lv = _type_value(relo.kind, local)
            res.orig_val, res.validate = lv.val, lv.validate
            res.new_val = _type_value(relo.kind, targ).val
        else:
            res.orig_val = _enum_value(relo.kind, local).val
            res.new_val = _enum_value(relo.kind, targ).val
    except _Poison:
        res.poison = True
    if targ is not None:
        res.target_type_id = targ.root_type_id
        res.target_btf = targ.btf
    return res


# -- the relocator ----------------------------------------------------------------

class CoreRelocator:
    """Computes CO-RE relocations of one object against one kernel.

    ``target`` is the kernel's BTF (``KernelBTF``, or a ``BTFSpec`` for tests
    and for ``btf_custom_path``-style overrides); ``modules`` (any iterable that
    can be walked more than once; walked only when needed) are searched, in
    order, only for local types that have no candidate in ``target``.  The
    local type ids whose candidates were looked for there are kept in
    ``module_dependent``: their answers change with the set of loaded modules.
    Candidate lists are cached per local type id and pruned to the candidates
    that matched, as libbpf does, so compute relocations in file order.
    """

    def __init__(self, local, target, modules: Iterable = ()) -> None:
        self.local = local
        self.target = target
        self.modules = modules
        self.module_dependent: set[int] = set()
        self._cands: dict[int, list[tuple[object, int]]] = {}
        # (type id, access string, kind) -> result: programs of one object repeat
        # the same accesses (task->tgid in every program), and a relocation's
        # result depends on nothing else.  Failures are not kept (they re-raise
        # with the program and instruction of each occurrence).
        self._results: dict[tuple[int, str, int], CoreResult] = {}

    def candidates(self, local_id: int) -> list[tuple[object, int]]:
        """(btf, id) of every target type that may correspond to ``local_id``."""
        c = self._cands.get(local_id)
        if c is not None:
            return c
        lt = _type(self.local, local_id)
        if not lt.name:
            raise _Fail("CO-RE relocations against anonymous types are not supported")
        name = essential_name(lt.name)
        c = self._cands_in(self.target, name, lt, 0)
        if not c:
            self.module_dependent.add(local_id)
            for mod in self.modules:
                start = len(mod.base) if getattr(mod, "base", None) is not None else 0
                c += self._cands_in(mod, name, lt, start)
        self._cands[local_id] = c
        return c

    @staticmethod
    def _cands_in(btf, name: str, lt: T.Type, start: int) -> list[tuple[object, int]]:
        out = []
        for i in btf.essential_ids(name):
            if i >= start and _kind_compat(_type(btf, i), lt):
                out.append((btf, i))
        return out

    def compute(self, relo: CoreRelo, *, section: str = "", program: str = "",
                insn_idx: Optional[int] = None) -> CoreResult:
        """Compute one relocation.  Raises CORERelocationError naming the
        program/section, instruction and type path when it cannot be computed
        (unresolvable-but-valid relocations are *poisoned*, not errors)."""
        key = (relo.type_id, relo.access_str, relo.kind)
        done = self._results.get(key)
        if done is not None:
            return done.copy()
        res = self._compute(relo, section, program,
                            relo.insn_off // 8 if insn_idx is None else insn_idx)
        self._results[key] = res.copy()
        return res

    def _compute(self, relo: CoreRelo, section: str, program: str, insn: int) -> CoreResult:
        local_spec: Optional[CoreSpec] = None
        try:
            try:
                local_spec = parse_spec(self.local, relo)
            except _Fail as e:
                lt = _safe_type(self.local, relo.type_id)
                raise _Fail(f"cannot parse access string {relo.access_str!r} on "
                            f"[{relo.type_id}] {lt}: {e}") from None
            if relo.kind == K.TYPE_ID_LOCAL:
                return CoreResult(relo.kind, relo.type_id, relo.type_id, validate=False,
                                  local_path=local_spec.path())
            cands = self.candidates(relo.type_id)
            best: Optional[CoreResult] = None
            best_spec: Optional[CoreSpec] = None
            kept = []
            for btf, cid in cands:
                cspec = match_spec(local_spec, btf, cid)
                if cspec is None:
                    continue
                res = _calc(relo, local_spec, cspec, insn)
                if best is None:
                    best, best_spec = res, cspec
                elif cspec.bit_offset != best_spec.bit_offset:  # type: ignore[union-attr]
                    raise _Fail(f"field offset ambiguity: candidate [{cid}] has bit "
                                f"offset {cspec.bit_offset}, [{best.target_type_id}] "
                                f"{best_spec.bit_offset}")  # type: ignore[union-attr]
                elif res.poison != best.poison or res.new_val != best.new_val:
                    raise _Fail(f"relocation ambiguity: candidate [{cid}] gives "
                                f"{_desc(res)}, [{best.target_type_id}] {_desc(best)}")
                kept.append((btf, cid))
            if kept:
                cands[:] = kept
            if best is None:
                best = _calc(relo, local_spec, None, insn)
            best.local_path = local_spec.path()
            return best
        except (_Fail, RawprobeError) as e:
            where = f"program {program!r}" if program else ""
            if section:
                where += f" (section {section!r})" if where else f"section {section!r}"
            path = _safe_path(local_spec) if local_spec is not None else \
                _safe_type(self.local, relo.type_id)
            msg = (f"{where + ', ' if where else ''}insn #{insn}: CO-RE relocation "
                   f"{KIND_NAMES.get(relo.kind, relo.kind)} of {path} "
                   f"({relo.access_str}): {e}")
            raise CORERelocationError(msg) from None

    def relocate(self, insns: bytearray, relos: Sequence[CoreRelo], *, section: str = "",
                 program: str = "", base_off: int = 0) -> list[CoreResult]:
        """Compute and apply ``relos`` to ``insns`` in place.

        ``insns`` holds the instructions of an ELF section (or a program cut
        from it, starting at byte ``base_off`` of the section); relocations
        outside it are skipped.  Returns the results in order, for logging.
        """
        out = []
        for relo in relos:
            off = relo.insn_off - base_off
            if off < 0 or off + 8 > len(insns) or off % 8:
                continue
            idx = off // 8
            res = self.compute(relo, section=section, program=program, insn_idx=idx)
            apply(insns, idx, res, program=program or section, path=res.local_path)
            out.append(res)
        return out


def _safe_type(btf, type_id: int) -> str:
    try:
        t = _type(btf, type_id)
        return f"{t.kind.name.lower()} {t.name or '<anon>'}"
    except RawprobeError:
        return f"type [{type_id}]"


def _safe_path(spec: CoreSpec) -> str:
    try:
        return spec.path()
    except RawprobeError:
        return f"type [{spec.root_type_id}]"


def _desc(r: CoreResult) -> str:
    return "poison" if r.poison else str(r.new_val)


def compute(local, relo: CoreRelo, target, *, modules: Iterable = (), section: str = "",
            program: str = "") -> CoreResult:
    """One-shot :meth:`CoreRelocator.compute` (no candidate cache shared)."""
    return CoreRelocator(local, target, modules).compute(relo, section=section,
                                                         program=program)


# -- patching instructions (through rawprobe.insn) -----------------------------------

def poison_insn(insns: bytearray, idx: int) -> None:
    """Make insn ``idx`` a call to the non-existent helper 0xbad2310."""
    I.write(insns, idx, I.Insn(I.CALL, 0, 0, 0, POISON_HELPER))


def apply(insns: bytearray, insn_idx: int, result: CoreResult, *, program: str = "",
          path: str = "") -> None:
    """Patch instruction ``insn_idx`` of ``insns`` (8 bytes each) with ``result``.

    Handles the forms clang emits for CO-RE: ALU/ALU64 with an immediate
    (``rX = imm``, ``rX += imm``), LDX/ST/STX offsets (adjusting the access
    size when the field's size changed), and ``ld_imm64``.  Checks that the
    instruction holds the value the local BTF predicts (``orig_val``) unless
    ``result.validate`` is false.  Poisoned results poison the instruction
    (both halves of an ld_imm64).
    """
    where = (f"{'program ' + repr(program) + ', ' if program else ''}insn #{insn_idx}"
             f"{' (' + path + ')' if path else ''}")
    if insn_idx < 0 or (insn_idx + 1) * 8 > len(insns):
        raise CORERelocationError(f"{where}: CO-RE relocation points past the end of the "
                                  f"{len(insns) // 8}-instruction program")
    ins = I.decode(insns, insn_idx)
    code, cls = ins.code, ins.cls
    is_ldimm = ins.is_ld_imm64()

    def poison() -> None:
        if is_ldimm and (insn_idx + 2) * 8 <= len(insns):
            poison_insn(insns, insn_idx + 1)
        poison_insn(insns, insn_idx)

    if result.poison:
        poison()
        return
    orig, new = result.orig_val & U64, result.new_val & U64

    if cls in (I.BPF_ALU, I.BPF_ALU64):
        if code & I.BPF_X:
            raise CORERelocationError(f"{where}: CO-RE relocation on an ALU instruction "
                                      f"without an immediate (code {code:#04x})")
        if result.validate and ins.imm & U64 != orig:
            raise CORERelocationError(f"{where}: unexpected ALU immediate {ins.imm}, "
                                      f"expected {orig} (-> {new}): object and its BTF "
                                      f"disagree")
        I.set_imm(insns, insn_idx, new)
    elif cls in (I.BPF_LDX, I.BPF_ST, I.BPF_STX):
        if result.validate and ins.off & U64 != orig:
            raise CORERelocationError(f"{where}: unexpected load/store offset {ins.off}, "
                                      f"expected {orig} (-> {new})")
        if new > 0x7FFF:
            raise CORERelocationError(f"{where}: field offset {new} does not fit a "
                                      f"load/store instruction's 16-bit offset")
        if result.fail_memsz_adjust:
            # The field changed size and is not an unsigned int or pointer:
            # a resized load would read a wrong value, so poison (as libbpf).
            poison()
            return
        if result.new_sz != result.orig_sz:
            have = I.SIZE_BYTES[code & I.SIZE_MASK]
            if have != result.orig_sz:
                raise CORERelocationError(f"{where}: load/store of {have} bytes, but the "
                                          f"field is {result.orig_sz} bytes locally")
            sz_code = I.SIZE_CODE.get(result.new_sz)
            if sz_code is None:
                raise CORERelocationError(f"{where}: the kernel's field is "
                                          f"{result.new_sz} bytes: no load/store of "
                                          f"that size")
            code = (code & ~I.SIZE_MASK) | sz_code
        I.write(insns, insn_idx, I.Insn(code, ins.dst_reg, ins.src_reg, new, ins.imm))
    elif cls == I.BPF_LD:
        if (insn_idx + 2) * 8 > len(insns):
            raise CORERelocationError(f"{where}: ld_imm64 cut off at the end of the program")
        second = I.decode(insns, insn_idx + 1)
        if not is_ldimm or ins.src_reg or ins.off or second.code or second.dst_reg or \
                second.src_reg or second.off:
            raise CORERelocationError(f"{where}: CO-RE relocation on an ld_imm64 of "
                                      f"unexpected form")
        have = I.ld_imm64_value(insns, insn_idx)
        if result.validate and have != orig:
            raise CORERelocationError(f"{where}: unexpected ld_imm64 value {have}, "
                                      f"expected {orig} (-> {new})")
        I.set_imm(insns, insn_idx, new & 0xFFFFFFFF)
        I.set_imm(insns, insn_idx + 1, new >> 32)
    else:
        raise CORERelocationError(f"{where}: CO-RE relocation on an instruction that "
                                  f"cannot carry one (code {code:#04x})")
