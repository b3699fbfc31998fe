"""Garbage in, RawprobeError out: ObjectSpec.from_bytes on arbitrary bytes and on
the committed objects with bytes flipped (where it matters most: headers, symbol
and relocation tables, code, BTF) or cut short.

Besides "nothing but RawprobeError escapes", the tests insist the error came
from an explicit check: ``from_bytes`` turns a stray ValueError/IndexError/...
into ObjectFormatError("malformed object (...)") as a last line of defence, and
that message appearing here means a check is missing.
"""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe import elf as E
from rawprobe.errors import RawprobeError
from rawprobe.spec import ObjectSpec

BPF_DIR = Path(__file__).parent / "bpf"
OBJECTS = {p.name: p.read_bytes() for p in sorted(BPF_DIR.glob("spec_*.bpf.o"))
           if p.name not in ("spec_legacy.bpf.o", "spec_extern.bpf.o")}
OBJECTS["ksyms.bpf.o"] = (BPF_DIR / "ksyms.bpf.o").read_bytes()     # __ksym externs

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges the parser actually reads (DWARF is most of the file and isn't)."""
    elf = E.ElfFile(data, "x")
    shoff = int.from_bytes(data[40:48], "little")
    out = [(0, 64), (shoff, shoff + 64 * len(elf.sections))]
    for s in elf.sections:
        if s.type == E.SHT_NOBITS or not s.size or s.name.startswith((".debug", ".rel.debug")):
            continue
        out.append((s.offset, s.offset + s.size))
    return out


REGIONS = {name: _regions(data) for name, data in OBJECTS.items()}


def parse(data: bytes) -> None:
    try:
        ObjectSpec.from_bytes(data, "fuzz.o")
    except RawprobeError as e:
        assert "malformed object (" not in str(e), f"unchecked failure: {e}"


@SETTINGS
@given(st.binary(max_size=1024))
def test_arbitrary_bytes(data):
    parse(data)


@SETTINGS
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_after_elf_header(tail):
    parse(b"\x7fELF\x02\x01\x01" + tail)


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(OBJECTS)))
    data = bytearray(OBJECTS[name])
    regions = REGIONS[name]
    for _ in range(draw(st.integers(1, 8))):
        lo, hi = draw(st.sampled_from(regions))
        pos = draw(st.integers(lo, hi - 1))
        data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, data[pos] ^ 0x01,
                                          data[pos] ^ 0x10]) if draw(st.booleans())
                         else st.integers(0, 255))
    return bytes(data)


@SETTINGS
@given(mutated())
def test_flipped_bytes(data):
    parse(data)


@settings(SETTINGS, max_examples=50)
@given(st.sampled_from(sorted(OBJECTS)), st.data())
def test_truncated(name, data):
    blob = OBJECTS[name]
    parse(blob[:data.draw(st.integers(0, len(blob) - 1))])


def test_originals_parse():
    for name, data in OBJECTS.items():
        assert ObjectSpec.from_bytes(data, name).programs
