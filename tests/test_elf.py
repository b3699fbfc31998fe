"""rawprobe.elf: the struct-based ELF reader, checked against pyelftools on the
committed test objects, and its errors on objects that are not clang BPF output."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rawprobe import elf as E
from rawprobe.errors import ObjectFormatError

BPF_DIR = Path(__file__).parent / "bpf"
OBJECTS = sorted(BPF_DIR.glob("spec_*.bpf.o"))

_STT = {E.STT_NOTYPE: "STT_NOTYPE", E.STT_OBJECT: "STT_OBJECT", E.STT_FUNC: "STT_FUNC",
        E.STT_SECTION: "STT_SECTION", E.STT_FILE: "STT_FILE"}
_STB = {E.STB_LOCAL: "STB_LOCAL", E.STB_GLOBAL: "STB_GLOBAL", E.STB_WEAK: "STB_WEAK"}


def _shndx(v):
    return {"SHN_UNDEF": 0, "SHN_ABS": E.SHN_ABS, "SHN_COMMON": E.SHN_COMMON}.get(v, v)


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_matches_pyelftools(path):
    elffile = pytest.importorskip("elftools.elf.elffile", reason="pyelftools is the oracle")
    data = path.read_bytes()
    ours = E.ElfFile(data, path.name)
    with path.open("rb") as f:
        ref = elffile.ELFFile(f)
        assert len(ours.sections) == ref.num_sections()
        for mine, theirs in zip(ours.sections, ref.iter_sections()):
            h = theirs.header
            assert mine.name == theirs.name
            assert (mine.flags, mine.offset, mine.size, mine.link, mine.info,
                    mine.addralign, mine.entsize) == (
                h.sh_flags, h.sh_offset, h.sh_size, h.sh_link, h.sh_info,
                h.sh_addralign, h.sh_entsize)
            if mine.type != E.SHT_NOBITS and mine.index:
                assert mine.data == theirs.data()
        symtab = ref.get_section_by_name(".symtab")
        assert len(ours.symbols) == symtab.num_symbols()
        for mine, theirs in zip(ours.symbols, symtab.iter_symbols()):
            assert mine.name == theirs.name
            assert (mine.value, mine.size) == (theirs["st_value"], theirs["st_size"])
            assert _STT.get(mine.type) == theirs["st_info"]["type"]
            assert _STB.get(mine.bind) == theirs["st_info"]["bind"]
            assert mine.shndx == _shndx(theirs["st_shndx"])
        for sec in ref.iter_sections():
            if sec.header.sh_type != "SHT_REL":
                continue
            got = [(r.offset, r.type, r.sym) for r in ours.relocations(sec.header.sh_info)]
            want = [(r["r_offset"], r["r_info_type"], r["r_info_sym"])
                    for r in sec.iter_relocations()]
            assert got == want, sec.name


def test_queries():
    e = E.ElfFile((BPF_DIR / "spec_basic.bpf.o").read_bytes(), "spec_basic.bpf.o")
    text = e.section_by_name[".text"]
    assert text.is_code and text.size % 8 == 0
    assert not e.section_by_name[".rodata"].is_code
    bss = e.section_by_name[".bss"]
    assert bss.type == E.SHT_NOBITS and bss.data == b"" and bss.size > 0
    funcs = [s.name for s in e.section_symbols(text.index) if s.type == E.STT_FUNC]
    assert funcs == ["global_scale", "record", "loop_cb", "core_tgid", "bump"]
    assert e.relocations(e.section_by_name["license"].index) == []
    assert "Section(index=" in repr(text) and "_file" not in repr(text)


# ---------------------------------------------------------------- bad input --

@pytest.fixture(scope="module")
def good() -> bytes:
    return (BPF_DIR / "spec_sections.bpf.o").read_bytes()


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"", "not an ELF file"),
    (lambda d: b"MZ\x90\x00" + d[4:], "not an ELF file"),
    (lambda d: d[:40], "too short for an ELF header"),
    (lambda d: _patch(d, 4, "B", 1), "32-bit"),
    (lambda d: _patch(d, 5, "B", 2), "big-endian"),
    (lambda d: _patch(d, 5, "B", 7), "data encoding"),
    (lambda d: _patch(d, 18, "<H", 62), "not EM_BPF"),                  # EM_X86_64
    (lambda d: _patch(d, 16, "<H", 2), "not a relocatable object"),     # ET_EXEC
    (lambda d: _patch(d, 40, "<Q", 0), "no section header table"),
    (lambda d: _patch(d, 58, "<H", 40), "section header size"),
    (lambda d: d[:len(d) - 100], "truncated"),
    (lambda d: _patch(d, 62, "<H", 0xFFF0), "name table index"),
])
def test_rejects(good, mutate, message):
    with pytest.raises(ObjectFormatError, match=message) as exc:
        E.ElfFile(mutate(good), "x.o")
    assert str(exc.value).startswith("x.o: ")


def test_section_contents_out_of_bounds_names_the_section(good):
    e = E.ElfFile(good, "x.o")
    sec = e.section_by_name["license"]
    shoff = struct.unpack_from("<Q", good, 40)[0]
    bad = _patch(good, shoff + sec.index * 64 + 24, "<Q", len(good))   # sh_offset
    with pytest.raises(ObjectFormatError, match="section 'license'.*run past the end"):
        E.ElfFile(bad, "x.o")


def test_relocation_with_bad_symbol_index(good):
    e = E.ElfFile(good, "x.o")
    rel = next(s for s in e.sections if s.type == E.SHT_REL)
    bad = _patch(good, rel.offset + 8, "<Q", (10_000 << 32) | 1)        # r_info of entry 0
    e = E.ElfFile(bad, "x.o")
    with pytest.raises(ObjectFormatError, match="outside the .*symbol table"):
        e.relocations(rel.info)
