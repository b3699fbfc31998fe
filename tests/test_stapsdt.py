"""The USDT note and argument-spec parser (rawprobe.stapsdt), with no kernel:
the committed target's notes against `readelf -n`, the x86-64 argument grammar
(units and hypothesis), the pt_regs offsets against the kernel's BTF, and the
spec encoding against usdt.bpf.h's struct layout in the test object's BTF."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import stapsdt
from rawprobe.errors import NotSupportedError, ObjectFormatError, RawprobeError

HERE = Path(__file__).parent
TARGET = HERE / "targets" / "usdt_target.elf"
OBJ = HERE / "bpf" / "usdt.bpf.o"


def readelf_notes(path: Path) -> list[dict]:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    out = subprocess.run([readelf, "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    notes: list[dict] = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Provider:"):
            notes.append({"provider": line.split(":", 1)[1].strip()})
        elif line.startswith("Name:") and notes:
            notes[-1]["name"] = line.split(":", 1)[1].strip()
        elif line.startswith("Location:") and notes:
            for key, val in re.findall(r"(\w+): (0x[0-9a-f]+)", line):
                notes[-1][key.lower()] = int(val, 16)
        elif line.startswith("Arguments:") and notes:
            notes[-1]["args"] = line.split(":", 1)[1].strip()
    return notes


def test_notes_match_readelf():
    expected = readelf_notes(TARGET)
    got = stapsdt.read_notes(str(TARGET))
    assert len(expected) >= 6
    assert [(n.provider, n.name, n.pc, n.base, n.semaphore, n.args) for n in got] == \
        [(e["provider"], e["name"], e["location"], e["base"], e["semaphore"],
          e.get("args", "")) for e in expected]


def test_sites_file_offsets_and_semaphore():
    """Every site's file offset holds the nop sys/sdt.h puts at the probe; the
    semaphore's offset lies in .probes; rpt:twice has two sites."""
    from elftools.elf.elffile import ELFFile
    shared, sites = stapsdt.probe_sites(str(TARGET))
    data = TARGET.read_bytes()
    with open(TARGET, "rb") as f:
        elf = ELFFile(f)
        assert shared == (elf["e_type"] == "ET_DYN")
        probes = elf.get_section_by_name(".probes")
        p_off, p_size = probes["sh_offset"], probes["sh_size"]
    for s in sites:
        assert data[s.offset] == 0x90, s          # the probe's nop
    names = [f"{s.note.provider}:{s.note.name}" for s in sites]
    assert names.count("rpt:twice") == 2
    (sema,) = [s for s in sites if s.note.name == "sema"]
    assert p_off <= sema.sema_offset < p_off + p_size
    assert all(s.sema_offset == 0 for s in sites if s.note.name != "sema")


def test_prelink_base_adjusts_pc(tmp_path):
    """A note whose recorded base differs from .stapsdt.base's address moves its pc
    by the difference (prelink moved the sections, not the notes)."""
    from elftools.elf.elffile import ELFFile
    data = bytearray(TARGET.read_bytes())
    with open(TARGET, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.stapsdt")
        off = sec["sh_offset"]
    # first note: 12-byte header, "stapsdt\0", then pc, base, semaphore
    desc = off + 12 + 8
    pc, base, _ = struct.unpack_from("<QQQ", data, desc)
    struct.pack_into("<QQ", data, desc, pc - 0x10, base - 0x10)
    moved = tmp_path / "moved"
    moved.write_bytes(bytes(data))
    first = stapsdt.probe_sites(str(moved))[1][0]
    assert first.note.pc == pc - 0x10
    assert first.ip == pc


def test_corrupt_notes_are_format_errors(tmp_path):
    from elftools.elf.elffile import ELFFile
    data = bytearray(TARGET.read_bytes())
    with open(TARGET, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.stapsdt")
        off = sec["sh_offset"]
    struct.pack_into("<I", data, off + 4, 3)    # descsz too short for 3 addresses
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    with pytest.raises(ObjectFormatError, match="too short"):
        stapsdt.read_notes(str(bad))
    struct.pack_into("<I", data, off + 4, 1 << 20)   # beyond the section
    bad.write_bytes(bytes(data))
    with pytest.raises(ObjectFormatError, match="truncated"):
        stapsdt.read_notes(str(bad))


# -- the argument grammar ------------------------------------------------------------

@pytest.mark.parametrize("text, kind, val, reg, size, signed", [
    ("-4@$5", stapsdt.ARG_CONST, 5, "", 4, True),
    ("8@$-7", stapsdt.ARG_CONST, -7, "", 8, False),
    ("8@%rdi", stapsdt.ARG_REG, 0, "di", 8, False),
    ("-4@%esi", stapsdt.ARG_REG, 0, "si", 4, True),
    ("2@%dx", stapsdt.ARG_REG, 0, "dx", 2, False),
    ("-1@%cl", stapsdt.ARG_REG, 0, "cx", 1, True),
    ("1@%r8b", stapsdt.ARG_REG, 0, "r8", 1, False),
    ("-1@%sil", stapsdt.ARG_REG, 0, "si", 1, True),
    ("8@%rip", stapsdt.ARG_REG, 0, "ip", 8, False),
    ("-4@-20(%rbp)", stapsdt.ARG_REG_DEREF, -20, "bp", 4, True),
    ("8@16(%rsp)", stapsdt.ARG_REG_DEREF, 16, "sp", 8, False),
    ("8@(%rax)", stapsdt.ARG_REG_DEREF, 0, "ax", 8, False),
    (" -4 @ -20 ( %rbp ) ", stapsdt.ARG_REG_DEREF, -20, "bp", 4, True),
])
def test_arg_forms(text, kind, val, reg, size, signed):
    (a,) = stapsdt.parse_arg_specs(text)
    assert (a.kind, a.val_off, a.reg, a.size, a.signed) == (kind, val, reg, size, signed)


@pytest.mark.parametrize("text, error, match", [
    ("-4@8(%rax,%rbx,8)", NotSupportedError, "scaled-index"),
    ("-4@(%rax,%rbx,8)", NotSupportedError, "scaled-index"),
    ("-4@foo(%rip)", NotSupportedError, "not an x86-64 USDT argument"),
    ("-4@%ah", NotSupportedError, "unknown x86-64 register"),
    ("3@%rax", ObjectFormatError, "size 3"),
    ("16@%rax", ObjectFormatError, "size 16"),
    ("%rax", NotSupportedError, "not an x86-64 USDT argument"),
    ("8@$99999999999999999999", ObjectFormatError, "64 bits"),
    (" ".join(["8@%rax"] * 13), NotSupportedError, "more than 12"),
])
def test_arg_refused(text, error, match):
    with pytest.raises(error, match=match):
        stapsdt.parse_arg_specs(text, "usdt test")


_NAMES = sorted(stapsdt.REGISTERS)
_sizes = st.sampled_from([1, 2, 4, 8]).flatmap(lambda n: st.sampled_from([n, -n]))
_offs = st.integers(-(1 << 63), (1 << 63) - 1)
_ws = st.sampled_from(["", " ", "  "])


@st.composite
def _arg(draw):
    size, kind = draw(_sizes), draw(st.sampled_from(["const", "reg", "deref", "deref0"]))
    name, off = draw(st.sampled_from(_NAMES)), draw(_offs)
    w = draw(_ws)
    loc = {"const": f"${off}", "reg": f"%{name}", "deref": f"{off}{w}(%{name})",
           "deref0": f"(%{name})"}[kind]
    want = {"const": (stapsdt.ARG_CONST, off, ""),
            "reg": (stapsdt.ARG_REG, 0, stapsdt.REGISTERS[name]),
            "deref": (stapsdt.ARG_REG_DEREF, off, stapsdt.REGISTERS[name]),
            "deref0": (stapsdt.ARG_REG_DEREF, 0, stapsdt.REGISTERS[name])}[kind]
    return f"{size}{w}@{w}{loc}", (*want, abs(size), size < 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(_arg(), max_size=stapsdt.MAX_ARGS), _ws)
def test_grammar_round_trip(args, sep):
    text = (" " + sep).join(t for t, _ in args)
    got = stapsdt.parse_arg_specs(text)
    assert [(a.kind, a.val_off, a.reg, a.size, a.signed) for a in got] == \
        [w for _, w in args]
    for a in got:
        val_off, kind, reg_off, signed, shift = struct.unpack("<QIh?b", a.encode())
        assert (kind, reg_off, signed, shift) == \
            (a.kind, stapsdt.PT_REGS.index(a.reg) * 8 if a.reg else 0, a.signed,
             64 - 8 * a.size)
        assert val_off == a.val_off % (1 << 64)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="-+0123456789@$%(),. abcdilpqrswx", max_size=40))
def test_grammar_never_crashes(text):
    try:
        stapsdt.parse_arg_specs(text)
    except RawprobeError:
        pass


# -- layouts against BTF -------------------------------------------------------------

def _btf_struct(path: str, name: str) -> dict[str, int]:
    """member -> byte offset of struct ``name`` in BTF file ``path``, by bpftool."""
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.skip("bpftool is not installed")
    out = subprocess.run([tool, "btf", "dump", "file", path, "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(rf"\] STRUCT '{name}' size=\d+ vlen=\d+\n((?:\s+'.*\n)+)", out)
    assert m, f"no struct {name} in {path}"
    return {mm.group(1): int(mm.group(2)) // 8
            for mm in re.finditer(r"'(\w+)' type_id=\d+ bits_offset=(\d+)", m.group(1))}


def test_pt_regs_offsets_match_kernel_btf():
    btf = Path("/sys/kernel/btf/vmlinux")
    if not btf.exists():
        pytest.skip("no kernel BTF")
    offsets = _btf_struct(str(btf), "pt_regs")
    # (cs and ss sit in unions on recent kernels; no argument names them)
    used = set(stapsdt.REGISTERS.values())
    assert {r: stapsdt.PT_REGS.index(r) * 8 for r in used} == {r: offsets[r] for r in used}


def test_spec_layout_matches_usdt_bpf_h():
    """The test object's BTF (from libbpf-dev's usdt.bpf.h) says where each field
    of the spec lives; encode_spec writes there."""
    arg = _btf_struct(str(OBJ), "__bpf_usdt_arg_spec")
    spec = _btf_struct(str(OBJ), "__bpf_usdt_spec")
    assert arg == {"val_off": 0, "arg_type": 8, "reg_off": 12, "arg_signed": 14,
                   "arg_bitshift": 15}
    args = stapsdt.parse_arg_specs("-4@-20(%rbp) 8@%rdi")
    raw = stapsdt.encode_spec(args, 0x1122334455667788)
    assert len(raw) == stapsdt.SPEC_SIZE
    assert struct.unpack_from("<Q", raw, spec["usdt_cookie"])[0] == 0x1122334455667788
    assert struct.unpack_from("<h", raw, spec["arg_cnt"])[0] == 2
    stride = stapsdt._ARG.size
    assert struct.unpack_from("<q", raw, stride + arg["val_off"])[0] == 0
    assert struct.unpack_from("<h", raw, stride + arg["reg_off"])[0] == \
        stapsdt.PT_REGS.index("di") * 8
    assert struct.unpack_from("<q", raw, arg["val_off"])[0] == -20
    assert raw[arg["arg_bitshift"]] == 32 and raw[arg["arg_signed"]] == 1


def test_other_architectures_refused(tmp_path):
    data = bytearray(TARGET.read_bytes())
    struct.pack_into("<H", data, 18, 183)       # e_machine = EM_AARCH64
    other = tmp_path / "aarch64"
    other.write_bytes(bytes(data))
    assert stapsdt.read_notes(str(other))       # the notes themselves read the same
    with pytest.raises(NotSupportedError, match="x86-64 binaries only"):
        stapsdt.probe_sites(str(other))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(0, 11), st.integers(0, 1 << 16)),
                          st.one_of(st.integers(0, 40), st.integers(0, 255))),
                min_size=1, max_size=8))
def test_corrupt_note_bytes_raise_only_rawprobe_errors(tmp_path_factory, edits):
    """Bytes of .note.stapsdt overwritten anywhere (often the first note's
    header, with small sizes): the sites come out or one RawprobeError says
    what is wrong, never another exception."""
    from elftools.elf.elffile import ELFFile
    data = bytearray(TARGET.read_bytes())
    with open(TARGET, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".note.stapsdt")
        off, size = sec["sh_offset"], sec["sh_size"]
    for where, value in edits:
        data[off + where % size] = value
    path = tmp_path_factory.mktemp("corrupt") / "t"
    path.write_bytes(bytes(data))
    try:
        stapsdt.probe_sites(str(path))
    except RawprobeError:
        pass
