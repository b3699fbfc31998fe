"""USDT probes: SystemTap SDT notes (``sys/sdt.h``) and their x86-64 argument specs.

Kernel-independent; :mod:`rawprobe.link.usdt` attaches what this finds.

Each probe site is one ELF note in ``.note.stapsdt`` (owner ``stapsdt``, type 3)
whose descriptor holds three addresses of the file's address width -- the
probe's pc, the link-time address of ``.stapsdt.base``, the semaphore's
address (0: none) -- then three NUL-terminated strings: provider, name and
the argument specs (``"-4@%esi 8@-16(%rbp) -4@$5"``).  A probe may have many
sites (a macro expanded in several places, an inlined function).

Prelink moves sections but not the (unallocated) notes, so the pc is adjusted
by how far ``.stapsdt.base`` moved (its ``sh_addr`` minus the note's base),
as libbpf does; the semaphore address is used as written, as libbpf 1.1 does.
Semaphores (``.probes``) are 16-bit counters the probe's code tests: a uprobe
given the semaphore's file offset as ``ref_ctr_offset`` raises it while
attached (kernel 4.20).

Argument specs follow libbpf 1.1 (its ``parse_usdt_arg`` for x86-64), each
``SIZE@LOCATION`` with SIZE in ±1, ±2, ±4, ±8 (negative: signed):

* ``$IMM`` a constant; ``%REG`` a register (64/32/16/8-bit names of the same
  register read the same ``pt_regs`` slot, the size then cuts the value);
* ``OFF(%REG)`` and ``(%REG)``: memory at register + offset.

Anything else -- ``sym(%rip)``, scaled-index ``OFF(%BASE,%INDEX,SCALE)`` (which
libbpf 1.1 refuses too; later libbpf handles it with a newer ``usdt.bpf.h``
whose spec layout this object ABI does not have) -- is a NotSupportedError.
"""
from __future__ import annotations

import os
import re
import struct
from functools import lru_cache

from ._records import RecordTuple
from .errors import NotSupportedError, ObjectFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["UsdtArg", "UsdtNote", "UsdtSite", "parse_arg_specs", "read_notes", "probe_sites",
           "encode_spec", "PT_REGS", "REGISTERS", "SPEC_SIZE", "MAX_ARGS",
           "ARG_CONST", "ARG_REG", "ARG_REG_DEREF"]

NOTE_SECTION, BASE_SECTION, SEMA_SECTION = ".note.stapsdt", ".stapsdt.base", ".probes"
NOTE_OWNER, NOTE_TYPE = "stapsdt", 3

# enum __bpf_usdt_arg_type (usdt.bpf.h)
ARG_CONST, ARG_REG, ARG_REG_DEREF = 0, 1, 2
# BPF_USDT_MAX_ARG_CNT; struct __bpf_usdt_arg_spec {u64 val_off; enum arg_type;
# short reg_off; bool arg_signed; char arg_bitshift;} and struct __bpf_usdt_spec
# {args[12]; u64 usdt_cookie; short arg_cnt;}, padded to 8.
MAX_ARGS = 12
_ARG = struct.Struct("<QIh?b")
_TAIL = struct.Struct("<Qh6x")
SPEC_SIZE = MAX_ARGS * _ARG.size + _TAIL.size

# x86-64 struct pt_regs, in order (8 bytes each): the offsets bpf_usdt_arg() reads.
PT_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
           "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
# every name of a register in an argument spec -> its pt_regs field
REGISTERS: dict[str, str] = {"rip": "ip", "eip": "ip"}
for _r in ("ax", "bx", "cx", "dx"):
    REGISTERS.update({f"r{_r}": _r, f"e{_r}": _r, _r: _r, f"{_r[0]}l": _r})
for _r in ("si", "di", "bp", "sp"):
    REGISTERS.update({f"r{_r}": _r, f"e{_r}": _r, _r: _r, f"{_r}l": _r})
for _n in range(8, 16):
    REGISTERS.update({f"r{_n}{s}": f"r{_n}" for s in ("", "d", "w", "b")})
del _r, _n

_INT = r"[+-]?\d+"
_DEREF = re.compile(rf"\s*({_INT})\s*@\s*({_INT})\s*\(\s*%([^)\s]+)\s*\)")
_DEREF0 = re.compile(rf"\s*({_INT})\s*@\s*\(\s*%([^)\s]+)\s*\)")
_REG = re.compile(rf"\s*({_INT})\s*@\s*%(\S+)")
_CONST = re.compile(rf"\s*({_INT})\s*@\s*\$({_INT})(?=\s|$)")
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


class UsdtArg(RecordTuple):
    """One argument: ``kind`` ARG_CONST/ARG_REG/ARG_REG_DEREF; ``val_off`` the
    constant or the memory offset (signed); ``reg`` the pt_regs field ("" for a
    constant); ``size`` 1/2/4/8 bytes; ``signed``; ``text`` as written."""
    __slots__ = ()
    _fields = ("kind", "val_off", "reg", "size", "signed", "text")
    if TYPE_CHECKING:  # pragma: no cover
        kind: int
        val_off: int
        reg: str
        size: int
        signed: bool
        text: str

    @property
    def reg_off(self) -> int:
        return PT_REGS.index(self.reg) * 8 if self.reg else 0

    def encode(self) -> bytes:
        """This argument as a ``struct __bpf_usdt_arg_spec``."""
        return _ARG.pack(self.val_off & (1 << 64) - 1, self.kind, self.reg_off, self.signed,
                         64 - 8 * self.size)


def _register(name: str, text: str, where: str) -> str:
    if "," in name:
        raise NotSupportedError(
            f"{where}: argument {text!r} uses scaled-index addressing (base,index,scale), "
            "which the usdt.bpf.h argument layout rawprobe fills (libbpf 1.1's) cannot "
            "express; libbpf 1.1 refuses it too")
    reg = REGISTERS.get(name)
    if reg is None:
        raise NotSupportedError(f"{where}: argument {text!r}: unknown x86-64 register "
                                f"%{name}")
    return reg


def _number(text: str, spec: str, where: str) -> int:
    value = int(text)
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ObjectFormatError(f"{where}: argument {spec!r}: {text} does not fit in 64 bits")
    return value


def parse_arg_specs(args: str, where: str = "usdt") -> tuple[UsdtArg, ...]:
    """The arguments of one note's spec string (``""``: none)."""
    out: list[UsdtArg] = []
    pos = 0
    while args[pos:].strip():
        if len(out) >= MAX_ARGS:
            raise NotSupportedError(f"{where}: more than {MAX_ARGS} arguments in {args!r} "
                                    f"(usdt.bpf.h's BPF_USDT_MAX_ARG_CNT)")
        for pattern, kind in ((_DEREF, ARG_REG_DEREF), (_DEREF0, ARG_REG_DEREF),
                              (_REG, ARG_REG), (_CONST, ARG_CONST)):
            m = pattern.match(args, pos)
            if m is not None:
                break
        else:
            bad = args[pos:].split()[0]
            raise NotSupportedError(
                f"{where}: argument #{len(out)} {bad!r} is not an x86-64 USDT argument "
                "rawprobe (or libbpf) reads: SIZE@$CONST, SIZE@%REG, SIZE@OFF(%REG)")
        text = m.group(0).strip()
        size = int(m.group(1))
        if abs(size) not in (1, 2, 4, 8):
            raise ObjectFormatError(f"{where}: argument {text!r}: size {size} is not "
                                    "±1, ±2, ±4 or ±8")
        if kind == ARG_CONST:
            val, reg = _number(m.group(2), text, where), ""
        elif pattern is _DEREF:
            val, reg = _number(m.group(2), text, where), _register(m.group(3), text, where)
        else:
            val, reg = 0, _register(m.group(2), text, where)
        out.append(UsdtArg(kind, val, reg, abs(size), size < 0, text))
        pos = m.end()
    return tuple(out)


def encode_spec(args: tuple[UsdtArg, ...], cookie: int) -> bytes:
    """A ``struct __bpf_usdt_spec``: the value of ``__bpf_usdt_specs``."""
    body = b"".join(a.encode() for a in args) + bytes(_ARG.size * (MAX_ARGS - len(args)))
    return body + _TAIL.pack(cookie & (1 << 64) - 1, len(args))


class UsdtNote(RecordTuple):
    """One ``.note.stapsdt`` note, as written: ``pc``, ``base``, ``semaphore``
    (addresses, 0 = none), ``provider``, ``name``, ``args`` (the spec string)."""
    __slots__ = ()
    _fields = ("provider", "name", "pc", "base", "semaphore", "args")
    if TYPE_CHECKING:  # pragma: no cover
        provider: str
        name: str
        pc: int
        base: int
        semaphore: int
        args: str


class UsdtSite(RecordTuple):
    """One probe site, ready to attach: ``ip`` its (prelink-adjusted) virtual
    address, ``offset`` its file offset, ``sema_offset`` the semaphore's file
    offset (0 = none), ``args`` parsed, ``note`` what it came from."""
    __slots__ = ()
    _fields = ("note", "ip", "offset", "sema_offset", "args")
    if TYPE_CHECKING:  # pragma: no cover
        note: UsdtNote
        ip: int
        offset: int
        sema_offset: int
        args: tuple[UsdtArg, ...]


def _decode_note(desc: bytes, addr: struct.Struct, path: str) -> UsdtNote:
    if len(desc) < addr.size + 3:
        raise ObjectFormatError(f"usdt: {path}: a {NOTE_SECTION} note is too short "
                                f"({len(desc)} bytes)")
    pc, base, sema = addr.unpack_from(desc)
    parts = desc[addr.size:].split(b"\0")
    # provider, name, args, then what follows the last NUL (b"", or padding)
    if len(parts) < 4 or not parts[1]:
        raise ObjectFormatError(f"usdt: {path}: a {NOTE_SECTION} note lacks its provider, "
                                "name or argument strings")
    try:
        provider, name, args = (p.decode() for p in parts[:3])
    except UnicodeDecodeError:
        raise ObjectFormatError(f"usdt: {path}: a {NOTE_SECTION} note has non-UTF-8 "
                                "strings") from None
    if args.startswith(":"):    # old notes: no argument string (libbpf reads none)
        args = ""
    return UsdtNote(provider, name, pc, base, sema, args)


def _notes(elf: Any, path: str) -> list[UsdtNote]:
    sec = elf.get_section_by_name(NOTE_SECTION)
    if sec is None:
        return []
    if sec["sh_type"] != "SHT_NOTE":
        raise ObjectFormatError(f"usdt: {path}: {NOTE_SECTION} is not a note section")
    end = "<" if elf.little_endian else ">"
    addr = struct.Struct(end + ("QQQ" if elf.elfclass == 64 else "III"))
    hdr = struct.Struct(end + "III")
    data = sec.data()
    out, pos = [], 0
    # The layout (4-byte aligned name and descriptor) is read by hand: pyelftools
    # decodes only the note types it knows, and would give the descriptor of an
    # unknown one as a str.
    while pos + hdr.size <= len(data):
        namesz, descsz, ntype = hdr.unpack_from(data, pos)
        name_at = pos + hdr.size
        desc_at = name_at + (namesz + 3) // 4 * 4
        nxt = desc_at + (descsz + 3) // 4 * 4
        if desc_at + descsz > len(data):
            raise ObjectFormatError(f"usdt: {path}: {NOTE_SECTION} is truncated")
        owner = data[name_at:name_at + namesz].rstrip(b"\0")
        if owner == NOTE_OWNER.encode() and ntype == NOTE_TYPE:
            out.append(_decode_note(data[desc_at:desc_at + descsz], addr, path))
        pos = nxt
    return out


def read_notes(path: str) -> list[UsdtNote]:
    """Every SDT note of ``path`` (an executable or shared library), in file order."""
    from .userelf import open_elf
    with open_elf(path, "usdt") as elf:
        return _notes(elf, path)


def probe_sites(path: str) -> tuple[bool, list[UsdtSite]]:
    """(shared, sites) of every probe of ``path``: ``shared`` when it is ``ET_DYN``
    (PIE or library: its addresses move at run time).  Cached by file identity."""
    st = os.stat(path)
    return _probe_sites(path, st.st_dev, st.st_ino, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _probe_sites(path: str, _dev: int, _ino: int, _mtime: int) -> tuple[bool, list[UsdtSite]]:
    from .userelf import load_segment, open_elf
    with open_elf(path, "usdt") as elf:
        notes = _notes(elf, path)
        if notes and elf["e_machine"] != "EM_X86_64":
            # the argument specs are assembler operands of the binary's architecture
            raise NotSupportedError(f"usdt: {path} is {elf['e_machine']}; rawprobe reads "
                                    "the USDT arguments of x86-64 binaries only")
        base_sec = elf.get_section_by_name(BASE_SECTION)
        base = base_sec["sh_addr"] if base_sec is not None else 0
        shared = elf["e_type"] == "ET_DYN"
        sites = []
        for note in notes:
            where = f"usdt {path}:{note.provider}:{note.name}"
            ip = note.pc + (base - note.base if base else 0)
            seg = load_segment(elf, ip)
            if seg is None or not seg["p_flags"] & 1:       # PF_X
                raise ObjectFormatError(f"{where}: address {ip:#x} is not in an executable "
                                        "loaded segment")
            sema_off = 0
            if note.semaphore:
                sseg = load_segment(elf, note.semaphore)
                if sseg is None or sseg["p_flags"] & 1:
                    raise ObjectFormatError(f"{where}: semaphore address {note.semaphore:#x}"
                                            " is not in a loaded data segment")
                sema_off = note.semaphore - sseg["p_vaddr"] + sseg["p_offset"]
            sites.append(UsdtSite(note, ip, ip - seg["p_vaddr"] + seg["p_offset"], sema_off,
                                  parse_arg_specs(note.args, where)))
    return shared, sites
