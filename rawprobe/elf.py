"""A minimal reader for the ELF files clang writes for BPF: sections, symbols, relocations.

Why not pyelftools here: ``import elftools.elf.elffile`` pulls in its DWARF,
EHABI and ``construct`` modules (pdb, inspect, pprint) and costs ~48 ms on the
development machine, more than a whole ``bpftool prog loadall``; importing only
its ``structs``/``sections``/``relocation`` modules still costs ~29 ms, and its
per-record ``construct`` parsing is slow too.  A BPF object needs only four
fixed-size records of ELF64 little-endian (file header, section header, symbol,
REL entry), which ``struct`` reads with no import cost.  The test suite checks
this reader against pyelftools on every committed object.

Everything is bounds-checked; malformed input raises ObjectFormatError naming
the file and, where there is one, the section.
"""
from __future__ import annotations

import struct
from .errors import ObjectFormatError

EM_BPF = 247
ET_REL = 1

# section types and flags
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS, SHT_REL = 8, 9
SHT_SYMTAB_SHNDX = 18
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_COMPRESSED = 0x800

# symbol types, bindings, special section indices
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF

# BPF relocation types (llvm/BinaryFormat/ELFRelocs/BPF.def)
R_BPF_NONE = 0
R_BPF_64_64 = 1        # ld_imm64: map, global data or subprogram address
R_BPF_64_ABS64 = 2     # 64-bit data word (.maps values, .BTF)
R_BPF_64_ABS32 = 3     # 32-bit data word (.BTF, .BTF.ext)
R_BPF_64_NODYLD32 = 4  # like ABS32, for DWARF
R_BPF_64_32 = 10       # call imm: a bpf-to-bpf call

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")


def _repr(obj: object) -> str:
    args = ", ".join(f"{k}={getattr(obj, k)!r}" for k in obj.__slots__ if k[0] != "_")
    return f"{type(obj).__name__}({args})"


# Plain slotted classes rather than dataclasses: a dataclass costs ~1 ms of
# import time to generate its methods, and these are only records.
class Section:
    """One section header; ``data`` slices the file on demand."""
    __slots__ = ("index", "name", "type", "flags", "offset", "size", "link", "info",
                 "addralign", "entsize", "_file")
    __repr__ = _repr

    def __init__(self, index: int, name: str, type: int, flags: int, offset: int,
                 size: int, link: int, info: int, addralign: int, entsize: int,
                 file: bytes) -> None:
        self.index, self.name, self.type, self.flags = index, name, type, flags
        self.offset, self.size, self.link, self.info = offset, size, link, info
        self.addralign, self.entsize, self._file = addralign, entsize, file

    @property
    def data(self) -> bytes:
        """The contents; empty for SHT_NOBITS (.bss: use ``size``)."""
        if self.type in (SHT_NOBITS, SHT_NULL):
            return b""
        return self._file[self.offset:self.offset + self.size]

    @property
    def is_code(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


class Symbol:
    """An ELF64 symbol: ``value`` is the offset into section ``shndx`` (or an
    SHN_* index), ``type`` STT_*, ``bind`` STB_*, ``other`` the visibility."""
    __slots__ = ("index", "name", "value", "size", "type", "bind", "other", "shndx")
    __repr__ = _repr

    def __init__(self, index: int, name: str, value: int, size: int, type: int, bind: int,
                 other: int, shndx: int) -> None:
        self.index, self.name, self.value, self.size = index, name, value, size
        self.type, self.bind, self.other, self.shndx = type, bind, other, shndx

    @property
    def visibility(self) -> int:
        """STV_*: the low two bits of st_other."""
        return self.other & 3


class Reloc:
    """A REL entry: byte ``offset`` into the target section, R_BPF_* ``type``,
    ``sym`` index into the symbol table (addends live in the instruction)."""
    __slots__ = ("offset", "type", "sym")
    __repr__ = _repr

    def __init__(self, offset: int, type: int, sym: int) -> None:
        self.offset, self.type, self.sym = offset, type, sym


class ElfFile:
    """The parsed tables of one ELF64 little-endian EM_BPF relocatable object.

    ``sections`` (indexed by section number), ``section_by_name``, ``symbols``
    (indexed by symbol number; ``[]`` if there is no symbol table) and
    :meth:`relocations` (REL entries by target section, decoded on first use).
    Compressed or RELA sections are rejected when something asks for them.
    """

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.name = name
        self.data = data = bytes(data)
        self._check_ident(data)
        (_ident, e_type, e_machine, _ver, _entry, _phoff, e_shoff, _flags, _ehsize,
         _phentsize, _phnum, e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(data)
        if e_machine != EM_BPF:
            raise self.error(f"e_machine is {e_machine}, not EM_BPF ({EM_BPF}): not a BPF "
                             f"object; compile with clang -target bpf")
        if e_type != ET_REL:
            raise self.error(f"ELF type {e_type} is not a relocatable object (ET_REL); "
                             f"pass the .o that clang -c produced")
        if e_shoff == 0:
            raise self.error("has no section header table")
        if e_shentsize != _SHDR.size:
            raise self.error(f"section header size {e_shentsize}, expected {_SHDR.size}")
        first = self._shdr(e_shoff, 0)
        if e_shnum == 0:                       # extended numbering: count in shdr[0]
            e_shnum = first[5]
        if e_shstrndx == SHN_XINDEX:
            e_shstrndx = first[6]
        if e_shnum > (len(data) - e_shoff) // _SHDR.size:
            raise self.error(f"{e_shnum} section headers at {e_shoff} run past the end "
                             f"of the {len(data)}-byte file: truncated?")
        headers = [self._shdr(e_shoff, i) for i in range(e_shnum)]
        if not 0 < e_shstrndx < e_shnum:
            raise self.error(f"section name table index {e_shstrndx} out of range")
        shstr_h = headers[e_shstrndx]
        self._check_bounds(shstr_h, str(e_shstrndx))
        shstr = data[shstr_h[4]:shstr_h[4] + shstr_h[5]]
        self.sections: list[Section] = [Section(0, "", SHT_NULL, 0, 0, 0, 0, 0, 0, 0, data)]
        for i in range(1, e_shnum):
            (sh_name, sh_type, sh_flags, _addr, sh_offset, sh_size, sh_link, sh_info,
             sh_align, sh_entsize) = h = headers[i]
            name = self._cstr(shstr, sh_name, f"name of section {i}")
            self._check_bounds(h, name or str(i))
            self.sections.append(Section(i, name, sh_type, sh_flags, sh_offset, sh_size,
                                         sh_link, sh_info, sh_align, sh_entsize, data))
        self.section_by_name = {s.name: s for s in reversed(self.sections)}
        self.symbols = self._read_symbols()
        # target section index -> its REL section, decoded on first use
        self._rel_sections: dict[int, Section] = {}
        for s in self.sections:
            if s.type in (SHT_REL, SHT_RELA) and 0 < s.info < e_shnum:
                if s.type == SHT_RELA and self.sections[s.info].flags & SHF_ALLOC:
                    raise self.error("RELA relocations are not used by BPF objects and "
                                     "not supported", s.name)
                if s.type == SHT_REL:
                    self._rel_sections.setdefault(s.info, s)
        self._relocs: dict[int, list[Reloc]] = {}

    # -- helpers ------------------------------------------------------------------

    def error(self, msg: str, section: str | None = None) -> ObjectFormatError:
        where = f"{self.name}: section {section!r}: " if section else f"{self.name}: "
        return ObjectFormatError(where + msg)

    def _check_ident(self, data: bytes) -> None:
        if len(data) < 4 or data[:4] != b"\x7fELF":
            raise self.error("not an ELF file (bad magic); expected a clang -target bpf "
                             "object (.o)")
        if len(data) < _EHDR.size:
            raise self.error(f"{len(data)} bytes is too short for an ELF header: truncated")
        if data[4] != 2:
            raise self.error("is a 32-bit ELF file; BPF objects are ELF64")
        if data[5] == 2:
            raise self.error("is big-endian (bpfeb); rawprobe loads little-endian objects: "
                             "compile with -target bpf or bpfel")
        if data[5] != 1:
            raise self.error(f"unknown ELF data encoding {data[5]}")

    def _shdr(self, shoff: int, i: int) -> tuple:
        pos = shoff + i * _SHDR.size
        if pos + _SHDR.size > len(self.data):
            raise self.error(f"section header {i} at {pos} is past the end of the "
                             f"{len(self.data)}-byte file: truncated?")
        return _SHDR.unpack_from(self.data, pos)

    def _check_bounds(self, h: tuple, name: str) -> None:
        sh_type, sh_offset, sh_size = h[1], h[4], h[5]
        if sh_type not in (SHT_NOBITS, SHT_NULL) and sh_offset + sh_size > len(self.data):
            raise self.error(f"contents ({sh_size} bytes at {sh_offset}) run past the end "
                             f"of the {len(self.data)}-byte file: truncated?", name)

    def _cstr(self, table: bytes, off: int, what: str, section: str | None = None) -> str:
        end = table.find(b"\0", off)
        if off >= len(table) or end < 0:
            raise self.error(f"{what}: string offset {off} outside its "
                             f"{len(table)}-byte string table", section)
        return table[off:end].decode("utf-8", "backslashreplace")

    def _read_symbols(self) -> list[Symbol]:
        tabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not tabs:
            return []
        if len(tabs) > 1:
            raise self.error(f"{len(tabs)} symbol tables; expected one")
        tab = tabs[0]
        if tab.entsize != _SYM.size or tab.size % _SYM.size:
            raise self.error(f"symbol entry size {tab.entsize} / table size {tab.size} "
                             f"do not fit {_SYM.size}-byte ELF64 symbols", tab.name)
        if not 0 < tab.link < len(self.sections):
            raise self.error(f"string table index {tab.link} out of range", tab.name)
        strtab = self.contents(self.sections[tab.link])
        syms = []
        for i, (st_name, st_info, st_other, st_shndx, st_value, st_size) in \
                enumerate(_SYM.iter_unpack(self.contents(tab))):
            if st_shndx == SHN_XINDEX:
                raise self.error(f"symbol {i} uses extended section indices "
                                 f"(SHT_SYMTAB_SHNDX), which rawprobe does not support",
                                 tab.name)
            name = self._cstr(strtab, st_name, f"name of symbol {i}", tab.name) if st_name \
                else ""
            syms.append(Symbol(i, name, st_value, st_size, st_info & 0xF, st_info >> 4,
                               st_other, st_shndx))
        return syms

    # -- queries ------------------------------------------------------------------

    def contents(self, section: Section) -> bytes:
        """``section.data``, refusing compressed sections."""
        if section.flags & SHF_COMPRESSED:
            raise self.error("is compressed (SHF_COMPRESSED), which rawprobe does not "
                             "support; build without --compress-debug-sections",
                             section.name)
        return section.data

    def relocations(self, index: int) -> list[Reloc]:
        """The REL entries that apply to section ``index`` (``[]`` if none)."""
        rels = self._relocs.get(index)
        if rels is not None:
            return rels
        s = self._rel_sections.get(index)
        rels = []
        if s is not None:
            if s.size % _REL.size:
                raise self.error(f"size {s.size} is not a multiple of the {_REL.size}-byte "
                                 f"REL entry", s.name)
            nsyms = len(self.symbols)
            for off, info in _REL.iter_unpack(self.contents(s)):
                sym = info >> 32
                if not sym or sym >= nsyms:
                    raise self.error(f"relocation at {off:#x} refers to symbol {sym}, "
                                     f"outside the {nsyms}-entry symbol table", s.name)
                rels.append(Reloc(off, info & 0xFFFFFFFF, sym))
        self._relocs[index] = rels
        return rels

    def section_symbols(self, index: int) -> list[Symbol]:
        """The symbols defined in section ``index``, by ascending offset."""
        return sorted((s for s in self.symbols if s.shndx == index),
                      key=lambda s: (s.value, s.index))
