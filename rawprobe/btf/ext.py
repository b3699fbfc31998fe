"""Parse the ``.BTF.ext`` ELF section: func_info, line_info and CO-RE relocations.

Layout (libbpf's libbpf_internal.h, kernel's uapi/linux/bpf.h for the records):

    struct btf_ext_header { u16 magic; u8 version; u8 flags; u32 hdr_len;
        u32 func_info_off, func_info_len; u32 line_info_off, line_info_len;
        u32 core_relo_off, core_relo_len; /* since LLVM 12; absent before */ }

Each of the three areas, at ``hdr_len + *_off``, is ``u32 record_size`` followed
by per-ELF-section blocks ``{u32 sec_name_off; u32 num_info; record[num_info]}``.
``sec_name_off`` is an offset into the string table of the object's ``.BTF``.

``insn_off`` in every record is a BYTE offset into the ELF section, as clang
writes it; the kernel wants instruction indices (byte offset / 8) relative to
the start of the loaded program, which the ELF/loader layer computes.
"""
from __future__ import annotations

import struct

from .._records import IntConst
from ..errors import BTFError, RawprobeError
from .types import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from .parse import BTFSpec

EXT_HEADER_V1 = struct.Struct("<HBBIIIII")   # up to line_info_len (24 bytes)
U32X2 = struct.Struct("<II")
U32X4 = struct.Struct("<IIII")


class CoreReloKind(IntConst):
    """enum bpf_core_relo_kind (uapi/linux/bpf.h); IntEnum-like, without ``enum``."""
    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


# Records are slotted classes with equality and repr from their slots
# (types._Record), not dataclasses: ``import dataclasses`` alone costs ~10 ms
# (inspect, ast, dis, tokenize), more than parsing a whole object.

class FuncInfo(_Record):
    """struct bpf_func_info; ``insn_off`` in bytes from the section start."""
    __slots__ = ("insn_off", "type_id")

    def __init__(self, insn_off: int, type_id: int) -> None:
        self.insn_off = insn_off
        self.type_id = type_id


class LineInfo(_Record):
    """struct bpf_line_info; ``insn_off`` in bytes from the section start.

    ``file_name_off``/``line_off`` index the BTF string section, which is why
    the marshaller keeps the original string table intact.
    """
    __slots__ = ("insn_off", "file_name_off", "line_off", "line_col")

    def __init__(self, insn_off: int, file_name_off: int, line_off: int,
                 line_col: int) -> None:
        self.insn_off = insn_off
        self.file_name_off = file_name_off
        self.line_off = line_off
        self.line_col = line_col

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def col(self) -> int:
        return self.line_col & 0x3FF


class CoreRelo(_Record):
    """struct bpf_core_relo; ``insn_off`` in bytes from the section start.

    ``access_str`` is the decoded ``access_str_off`` (e.g. ``"0:1:2"``).
    """
    __slots__ = ("insn_off", "type_id", "access_str_off", "kind", "access_str")

    def __init__(self, insn_off: int, type_id: int, access_str_off: int,
                 kind: CoreReloKind, access_str: str = "") -> None:
        self.insn_off = insn_off
        self.type_id = type_id
        self.access_str_off = access_str_off
        self.kind = kind
        self.access_str = access_str


# (record class, minimum record size, decoder from the first 4 u32s)
_MIN_FUNC, _MIN_LINE, _MIN_CORE = 8, 16, 16


class BTFExt(_Record):
    """Parsed ``.BTF.ext``: records grouped per ELF section name, in file order."""
    __slots__ = ("func_info_rec_size", "line_info_rec_size", "core_relo_rec_size",
                 "func_infos", "line_infos", "core_relos")

    def __init__(self, func_info_rec_size: int = 8, line_info_rec_size: int = 16,
                 core_relo_rec_size: int = 16,
                 func_infos: dict[str, list[FuncInfo]] | None = None,
                 line_infos: dict[str, list[LineInfo]] | None = None,
                 core_relos: dict[str, list[CoreRelo]] | None = None) -> None:
        self.func_info_rec_size = func_info_rec_size
        self.line_info_rec_size = line_info_rec_size
        self.core_relo_rec_size = core_relo_rec_size
        self.func_infos = {} if func_infos is None else func_infos
        self.line_infos = {} if line_infos is None else line_infos
        self.core_relos = {} if core_relos is None else core_relos

    @classmethod
    def from_bytes(cls, data: bytes, btf: "BTFSpec") -> "BTFExt":
        data = bytes(data)
        if len(data) < 8:
            raise BTFError(f".BTF.ext of {len(data)} bytes is too short for its header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != 0xEB9F:
            if magic == 0x9FEB:
                raise BTFError("big-endian .BTF.ext is not supported; compile with -target bpfel")
            raise BTFError(f"bad .BTF.ext magic {magic:#06x}: not a .BTF.ext section")
        if version != 1:
            raise BTFError(f"unsupported .BTF.ext version {version}")
        if hdr_len < EXT_HEADER_V1.size or hdr_len > len(data):
            raise BTFError(f".BTF.ext header length {hdr_len} out of range "
                           f"({EXT_HEADER_V1.size}..{len(data)})")
        fields = [U32X2.unpack_from(data, o) for o in range(8, hdr_len - 7, 8)]
        ext = cls()
        areas = ("func", "line", "core")
        for area, (off, length) in zip(areas, fields):
            if not length:
                continue
            start = hdr_len + off
            end = start + length
            if end > len(data):
                raise BTFError(f".BTF.ext {area}_info area ({off}+{length}) runs past the "
                               f"end of the {len(data)}-byte section: truncated")
            ext._parse_area(area, data, start, end, btf)
        return ext

    def _parse_area(self, area: str, data: bytes, pos: int, end: int, btf: "BTFSpec") -> None:
        minimum = {"func": _MIN_FUNC, "line": _MIN_LINE, "core": _MIN_CORE}[area]
        if end - pos < 4:
            raise BTFError(f".BTF.ext {area}_info area is too short for its record size")
        rec_size = struct.unpack_from("<I", data, pos)[0]
        if rec_size < minimum or rec_size % 4:
            raise BTFError(f".BTF.ext {area}_info record size {rec_size} is invalid "
                           f"(need a multiple of 4, at least {minimum})")
        setattr(self, f"{area}_info_rec_size" if area != "core" else "core_relo_rec_size",
                rec_size)
        out = {"func": self.func_infos, "line": self.line_infos,
               "core": self.core_relos}[area]
        pos += 4
        while pos < end:
            if end - pos < 8:
                raise BTFError(f".BTF.ext {area}_info block header at byte {pos} is truncated")
            sec_off, num = U32X2.unpack_from(data, pos)
            pos += 8
            sec = _string(btf, sec_off, f"{area}_info section name")
            if not sec:
                raise BTFError(f".BTF.ext {area}_info block has an empty section name")
            if num == 0:
                raise BTFError(f".BTF.ext {area}_info block for {sec!r} has no records")
            if num * rec_size > end - pos:
                raise BTFError(f".BTF.ext {area}_info block for {sec!r} claims {num} "
                               f"records of {rec_size} bytes: runs past the area's end")
            recs = out.setdefault(sec, [])
            size = num * rec_size
            block = memoryview(data)[pos:pos + size]
            # One unpack per record; records longer than we know (a newer
            # format) keep their known prefix.
            fmt = U32X2 if area == "func" else U32X4
            rows = fmt.iter_unpack(block) if rec_size == fmt.size else \
                (fmt.unpack_from(block, o) for o in range(0, size, rec_size))
            if area == "func":
                recs += [FuncInfo(off, tid) for off, tid in rows]
            elif area == "line":
                recs += [LineInfo(off, fn, ln, lc) for off, fn, ln, lc in rows]
            else:
                for insn_off, type_id, acc_off, kind in rows:
                    try:
                        k = CoreReloKind(kind)
                    except ValueError:
                        raise BTFError(f"CO-RE relocation in {sec!r} at insn byte "
                                       f"{insn_off} has unknown kind {kind}: needs a "
                                       f"newer rawprobe") from None
                    if type_id >= len(btf.types):
                        raise BTFError(f"CO-RE relocation in {sec!r} at insn byte "
                                       f"{insn_off} refers to missing type id {type_id}")
                    recs.append(CoreRelo(insn_off, type_id, acc_off, k,
                                         _string(btf, acc_off, "CO-RE access string")))
            pos += size


def _string(btf: "BTFSpec", off: int, what: str) -> str:
    try:
        return btf.string_at(off)
    except RawprobeError as e:
        raise BTFError(f".BTF.ext {what}: {e}") from None
