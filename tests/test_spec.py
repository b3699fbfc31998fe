"""rawprobe.spec on the committed test objects (tests/bpf/spec_*.bpf.c): programs,
static linking of subprograms, relocations, maps, global variables, errors.

Ground truth comes from the C sources (which functions call which, which
globals each touches) and from llvm-objdump-19 (function sizes), not from the
parser under test.
"""
from __future__ import annotations

import functools
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from rawprobe import elf as E
from rawprobe import insn as I
from rawprobe.btf import types as T
from rawprobe.btf.parse import BTFSpec
from rawprobe.errors import (BTFError, NotFoundError, ObjectFormatError, RawprobeError,
                             SyscallError)
from rawprobe.sections import AttachType, ProgType
from rawprobe.spec import (LIBBPF_PIN_BY_NAME, InvalidValueError, MapReloc, MapSpec, MapType,
                           ObjectSpec, ProgramSpec, VariableSpec)
from rawprobe.uapi import MapFlags

BPF_DIR = Path(__file__).parent / "bpf"
BASIC = BPF_DIR / "spec_basic.bpf.o"
MAPS = BPF_DIR / "spec_maps.bpf.o"
OBJDUMP = shutil.which("llvm-objdump-19") or shutil.which("llvm-objdump")

# From spec_basic.bpf.c: the functions each program reaches, and the edges
# (caller, callee, "call" | "func" for a callback reference).
REACH = {
    "tp_write_a": {("tp_write_a", "record", "call"), ("tp_write_a", "global_scale", "call"),
                   ("record", "bump", "call")},
    "tp_write_b": {("tp_write_b", "loop_cb", "func"), ("tp_write_b", "record", "call"),
                   ("record", "bump", "call")},
    "rawtp_enter": {("rawtp_enter", "core_tgid", "call")},
    "kp_write": {("kp_write", "global_scale", "call")},
}


@pytest.fixture(scope="module")
def basic() -> ObjectSpec:
    return ObjectSpec.from_file(BASIC)


@pytest.fixture(scope="module")
def maps() -> ObjectSpec:
    return ObjectSpec.from_file(MAPS)


@functools.lru_cache(maxsize=None)
def objdump_sizes(path: Path) -> dict[str, int]:
    """Function name -> instruction slots, from llvm-objdump -d."""
    out = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", str(path)], check=True,
                         capture_output=True, text=True).stdout
    spans: dict[str, list[int]] = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            cur = m.group(1)
            spans[cur] = []
            continue
        m = re.match(r"^\s+(\d+):\s+(.*)$", line)
        if cur and m and "R_BPF" not in line:
            idx = int(m.group(1))
            width = 2 if m.group(2).rstrip().endswith(" ll") else 1
            spans[cur] = [spans[cur][0] if spans[cur] else idx, idx + width]
    return {name: end - start for name, (start, end) in spans.items()}


# ---------------------------------------------------------------- programs --

def test_programs(basic):
    assert list(basic.programs) == ["tp_write_a", "tp_write_b", "rawtp_enter", "kp_write"]
    a, b = basic.programs["tp_write_a"], basic.programs["tp_write_b"]
    for p in (a, b):         # two programs share one section
        assert p.section == "tracepoint/syscalls/sys_enter_write"
        assert p.type == ProgType.TRACEPOINT
        assert p.attach_to == "syscalls/sys_enter_write"
        assert p.attach_kind == "tracepoint"
    raw = basic.programs["rawtp_enter"]
    assert (raw.type, raw.attach_to) == (ProgType.RAW_TRACEPOINT, "sys_enter")
    kp = basic.programs["kp_write"]
    assert (kp.type, kp.attach_to, kp.retprobe) == (ProgType.KPROBE, "ksys_write+0x10", False)
    assert basic.license == "GPL" and all(p.license == "GPL" for p in basic.programs.values())
    assert basic.kern_version == 0
    assert "tp_write_a" in repr(a) and "insns=" in repr(a)


@pytest.mark.parametrize("prog", list(REACH))
def test_linking_graph(basic, prog):
    p = basic.programs[prog]
    names = [f[0] for f in p.functions]
    assert names[0] == prog and len(set(names)) == len(names)      # each appended once
    assert set(names) == {prog} | {c for _, c, _ in REACH[prog]}
    starts = {start: name for name, start, _ in p.functions}
    edges = set()
    for i, ins in I.iter_insns(p.insns):
        if ins.is_subprog_call() or ins.is_pseudo_func():
            target = i + ins.imm + 1
            assert target in starts, f"{p.disasm(i)} lands inside a function"
            edges.add((p.function_at(i), starts[target],
                       "call" if ins.is_call() else "func"))
    assert edges == REACH[prog]
    # contiguous layout covering every instruction
    pos = 0
    for _name, start, count in p.functions:
        assert start == pos
        pos += count
    assert pos == p.insn_count


@pytest.mark.skipif(OBJDUMP is None, reason="llvm-objdump-19 not installed")
@pytest.mark.parametrize("prog", list(REACH))
def test_linked_size_matches_objdump(basic, prog):
    sizes = objdump_sizes(BASIC)
    p = basic.programs[prog]
    assert {name: count for name, _, count in p.functions} == \
        {name: sizes[name] for name, _, _ in p.functions}
    assert p.insn_count == sum(sizes[n] for n, _, _ in p.functions)


def test_linked_code_is_the_original_but_for_relocated_slots(basic):
    elf = E.ElfFile(BASIC.read_bytes(), "spec_basic.bpf.o")
    funcs = {s.name: s for s in elf.symbols if s.type == E.STT_FUNC}
    for p in basic.programs.values():
        patched = {r.insn for r in p.map_relocs} | {r.insn + 1 for r in p.map_relocs}
        for i, ins in I.iter_insns(p.insns):
            if ins.is_subprog_call() or ins.is_pseudo_func():
                patched |= {i, i + 1}
        for name, start, count in p.functions:
            sym = funcs[name]
            orig = elf.sections[sym.shndx].data[sym.value:sym.value + sym.size]
            for k in range(count):
                if start + k not in patched:
                    assert p.insns[(start + k) * 8:(start + k + 1) * 8] == \
                        orig[k * 8:(k + 1) * 8], f"{name}+{k}"


def test_callback_reference_is_pseudo_func(basic):
    p = basic.programs["tp_write_b"]
    refs = [(i, ins) for i, ins in I.iter_insns(p.insns) if ins.is_pseudo_func()]
    assert len(refs) == 1
    i, ins = refs[0]
    assert I.decode(p.insns, i + 1).imm == 0
    assert p.function_at(i + ins.imm + 1) == "loop_cb"


# ------------------------------------------------------------- relocations --

def test_map_relocs_are_preencoded(basic):
    for p in basic.programs.values():
        assert p.map_relocs == sorted(p.map_relocs)
        for r in p.map_relocs:
            assert isinstance(r, MapReloc)
            first, second = I.decode(p.insns, r.insn), I.decode(p.insns, r.insn + 1)
            assert first.is_ld_imm64() and first.imm == 0
            m = basic.maps[r.map]
            if m.is_global_data:
                assert first.src_reg == I.BPF_PSEUDO_MAP_VALUE and second.imm == r.offset
                assert 0 <= r.offset < m.value_size
            else:
                assert first.src_reg == I.BPF_PSEUDO_MAP_FD and second.imm == 0
                assert r.offset == 0


def _refs(p: ProgramSpec, func: str) -> set[tuple[str, int]]:
    return {(r.map, r.offset) for r in p.map_relocs if p.function_at(r.insn) == func}


def test_global_data_references(basic):
    v = basic.variables
    raw = basic.programs["rawtp_enter"]
    # named symbols (target_comm), section symbol + addend (bpf_printk's format in
    # .rodata, the literal in .rodata.str1.1)
    assert _refs(raw, "rawtp_enter") == {
        (".rodata.str1.1", 0), (".bss", v["hits"].offset),
        (".rodata", v["target_comm"].offset), (".rodata", v["neg_default"].offset),
        (".rodata", v["rawtp_enter.____fmt"].offset)}
    b = basic.programs["tp_write_b"]
    assert _refs(b, "tp_write_b") == {
        (".rodata.custom", v["ro_custom"].offset), (".data.custom", v["custom_buf"].offset),
        (".rodata", v["signed_s16"].offset), (".data", v["counter"].offset)}
    # a static variable reached through the .bss section symbol + 8, in a subprogram
    assert _refs(b, "bump") == {(".bss", v["hits"].offset), (".bss", v["static_bss"].offset)}
    assert v["static_bss"].offset == 8
    assert _refs(b, "record") == {("counts", 0), (".data", 0)}
    # the same subprogram's relocations appear in every program that links it
    a = basic.programs["tp_write_a"]
    assert _refs(a, "record") == _refs(b, "record")


def test_btf_ext_rebased(basic):
    btf = basic.btf
    for p in basic.programs.values():
        assert [(btf.types[f.type_id].name, f.insn_off) for f in p.func_info] == \
            [(name, start) for name, start, _ in p.functions]
        offs = [li.insn_off for li in p.line_info]
        assert offs == sorted(offs) and offs[-1] < p.insn_count
        for _, start, _ in p.functions:          # the kernel wants a line at each start
            assert start in offs
    raw = basic.programs["rawtp_enter"]
    kinds = {(raw.function_at(r.insn_off // 8), r.kind.name) for r in raw.core_relos}
    assert kinds == {("rawtp_enter", "FIELD_EXISTS"), ("core_tgid", "FIELD_BYTE_OFFSET")}
    for r in raw.core_relos:                     # byte offsets, at the patched insn
        assert r.insn_off % 8 == 0
    off = next(r for r in raw.core_relos if r.kind.name == "FIELD_BYTE_OFFSET")
    assert I.decode(raw.insns, off.insn_off // 8).imm == 4     # offsetof(tgid)


# -------------------------------------------------------------------- maps --

def test_global_data_maps(basic):
    assert [m for m in basic.maps if m.startswith(".")] == [
        ".rodata", ".rodata.custom", ".data", ".data.custom", ".rodata.str1.1", ".bss"]
    for name, m in basic.maps.items():
        if not m.is_global_data:
            continue
        assert (m.type, m.key_size, m.max_entries, m.section) == (MapType.ARRAY, 4, 1, name)
        assert m.value_size == len(m.contents)
        ro = name.startswith(".rodata")
        assert m.frozen == ro
        assert m.map_flags == MapFlags.MMAPABLE | (MapFlags.RDONLY_PROG if ro else 0)
        assert len(m.kernel_name) <= 15 and name in m.kernel_name
    # libbpf's names: 8 characters of the object's name before a section of up
    # to 7; a section with a second dot keeps its own name (libbpf's internal_map_name)
    assert basic.maps[".rodata"].kernel_name == "spec_bas.rodata"
    assert basic.maps[".bss"].kernel_name == "spec_bas.bss"
    assert basic.maps[".rodata.custom"].kernel_name == ".rodata.custom"
    assert basic.maps[".rodata.str1.1"].kernel_name == ".rodata.str1.1"
    assert basic.maps[".rodata.str1.1"].contents == b"string literal\0"
    assert basic.maps[".rodata.str1.1"].btf_value_type_id == 0        # no DATASEC
    assert basic.maps[".bss"].contents == bytes(12)
    assert basic.maps[".data.custom"].contents == b"custom\0\0"
    ds = basic.btf.types[basic.maps[".rodata"].btf_value_type_id]
    assert ds.name == ".rodata" and ds.size == 45            # filled in from the ELF
    assert [v.offset for v in ds.vars] == sorted(v.offset for v in ds.vars)
    counts = basic.maps["counts"]
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == \
        (MapType.HASH, 4, 8, 64)


def test_btf_maps(maps):
    m = maps.maps
    expect = {
        "hash_map": (MapType.HASH, 4, 8, 128, MapFlags.NO_PREALLOC),
        "array_map": (MapType.ARRAY, 4, 24, 4, 0),
        "percpu_hash": (MapType.PERCPU_HASH, 8, 4, 32, 0),
        "percpu_array": (MapType.PERCPU_ARRAY, 4, 24, 1, 0),
        "lru_hash": (MapType.LRU_HASH, 24, 1, 1024, 0),
        "ringbuf": (MapType.RINGBUF, 0, 0, 256 * 1024, 0),
        "perf_events": (MapType.PERF_EVENT_ARRAY, 4, 4, 0, 0),
        "bloom": (MapType.BLOOM_FILTER, 0, 4, 100, 0),
        "jump_table": (MapType.PROG_ARRAY, 4, 4, 4, 0),
        "inner_a": (MapType.ARRAY, 4, 8, 8, 0),
        "outer": (MapType.ARRAY_OF_MAPS, 4, 4, 3, 0),
    }
    assert set(m) == set(expect)
    for name, (typ, ks, vs, me, flags) in expect.items():
        spec = m[name]
        assert (spec.type, spec.key_size, spec.value_size, spec.max_entries,
                spec.map_flags) == (typ, ks, vs, me, flags), name
        assert spec.contents is None and not spec.frozen and spec.section == ".maps"
        assert spec.kernel_name == name
    btf = maps.btf
    arr = m["array_map"]
    assert btf.types[btf.resolve(arr.btf_value_type_id)].name == "stats"
    assert btf.size_of(arr.btf_key_type_id) == 4
    assert arr.pinning == LIBBPF_PIN_BY_NAME and m["hash_map"].pinning == 0
    assert m["bloom"].map_extra == 3 and m["bloom"].btf_key_type_id == 0
    assert m["ringbuf"].btf_key_type_id == m["ringbuf"].btf_value_type_id == 0
    assert m["perf_events"].btf_key_type_id == 0           # __uint(key_size, ...)
    assert m["jump_table"].values == {2: "tail_target"}
    outer = m["outer"]
    assert outer.values == {1: "inner_a"} and outer.btf_value_type_id == 0
    assert isinstance(outer.inner, MapSpec)
    assert (outer.inner.type, outer.inner.key_size, outer.inner.value_size,
            outer.inner.max_entries) == (MapType.ARRAY, 4, 8, 8)
    use = maps.programs["use_maps"]
    assert {r.map for r in use.map_relocs} == set(expect) - {"inner_a"}
    assert maps.license == "Dual BSD/GPL" and maps.variables == {}


# --------------------------------------------------------------- variables --

def test_variables(basic):
    v = basic.variables
    layout = {n: (x.map_name, x.offset, x.size, x.const) for n, x in v.items()}
    assert layout == {
        "target_pid": (".rodata", 0, 4, True),
        "target_comm": (".rodata", 4, 16, True),
        "neg_default": (".rodata", 24, 8, True),
        "small_u8": (".rodata", 32, 1, True),
        "signed_s16": (".rodata", 34, 2, True),
        "rawtp_enter.____fmt": (".rodata", 36, 9, True),
        "ro_custom": (".rodata.custom", 0, 4, True),
        "counter": (".data", 0, 4, False),
        "custom_buf": (".data.custom", 0, 8, False),
        "hits": (".bss", 0, 8, False),
        "static_bss": (".bss", 8, 4, False),
    }
    assert v["target_comm"].get() == b"init".ljust(16, b"\0")
    assert v["neg_default"].get() == struct.pack("<q", -5)
    assert v["signed_s16"].get() == struct.pack("<h", -2)
    assert v["counter"].get() == struct.pack("<i", 1)
    assert v["hits"].get() == bytes(8)
    assert isinstance(v["hits"], VariableSpec) and "hits" in repr(v["hits"])


def test_variable_set():
    spec = ObjectSpec.from_file(BASIC)           # a private copy: set() mutates it
    v, ro = spec.variables, spec.maps[".rodata"]
    v["target_comm"].set(b"java")
    assert v["target_comm"].get() == b"java".ljust(16, b"\0")
    assert ro.contents[4:20] == b"java".ljust(16, b"\0")
    v["target_pid"].set(4242)
    assert ro.contents[:4] == struct.pack("<i", 4242)
    v["neg_default"].set(-(1 << 63))
    v["small_u8"].set(255)
    v["signed_s16"].set(-32768)
    assert ro.contents[32] == 255 and ro.contents[34:36] == struct.pack("<h", -32768)
    assert v["target_comm"].get() == b"java".ljust(16, b"\0")     # neighbours intact
    assert len(ro.contents) == ro.value_size
    v["hits"].set((1 << 64) - 1)
    assert spec.maps[".bss"].contents[:8] == b"\xff" * 8
    v["counter"].set(b"\x01\x02")
    assert v["counter"].get() == b"\x01\x02\0\0"
    v["target_comm"].set(b"x" * 16)                            # exactly full is fine


@pytest.mark.parametrize("name, value, message", [
    ("small_u8", 256, r"0\.\.255"),
    ("small_u8", -1, "unsigned"),
    ("signed_s16", 32768, "signed"),
    ("target_pid", 1 << 31, "signed 4 bytes"),
    ("hits", 1 << 64, "unsigned 8 bytes"),
    ("target_comm", 1, "array, not an integer"),
    ("target_comm", b"y" * 17, "holds 16 bytes; got 17"),
    ("target_comm", "java", "pass bytes, not str"),
    ("counter", 1.5, "cannot set a float"),
])
def test_variable_set_rejects(name, value, message):
    spec = ObjectSpec.from_file(BASIC)
    before = spec.maps[spec.variables[name].map_name].contents
    with pytest.raises(InvalidValueError, match=message) as exc:
        spec.variables[name].set(value)
    assert isinstance(exc.value, RawprobeError) and isinstance(exc.value, ValueError)
    assert spec.maps[spec.variables[name].map_name].contents == before


# ------------------------------------------------------------------ errors --

def test_from_file_errors(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        ObjectSpec.from_file(tmp_path / "missing.o")
    with pytest.raises(SyscallError):
        ObjectSpec.from_file(tmp_path)                 # a directory: EISDIR


def test_legacy_maps_rejected():
    with pytest.raises(ObjectFormatError, match=r"section 'maps': legacy map definitions"):
        ObjectSpec.from_file(BPF_DIR / "spec_legacy.bpf.o")


def test_plain_extern_rejected():
    """An extern in no .kconfig/.ksyms section: nothing can fill it."""
    with pytest.raises(ObjectFormatError, match="extern 'rawprobe_plain_extern', which is "
                                                "neither __kconfig nor __ksym"):
        ObjectSpec.from_file(BPF_DIR / "spec_extern.bpf.o")


def test_kconfig_externs():
    """__kconfig externs land in a .kconfig map laid out as libbpf lays it out
    (alignment down, then size up, then name), read-only for programs and
    frozen; the BTF the kernel gets has that layout and "allocated" VARs; every
    reference is an ld_imm64 of the map's value at the extern's offset."""
    spec = ObjectSpec.from_file(BPF_DIR / "kconfig.bpf.o")
    kc = spec.kconfig
    assert len(kc) == 16
    align = {"string": 1, "char": 1, "bool": 1}
    order = sorted(kc.values(), key=lambda v: (-align.get(v.kind, min(v.size, 8)), v.size,
                                               v.name))
    assert list(kc.values()) == order
    end = 0
    for v in order:
        a = align.get(v.kind, v.size)
        assert v.offset == (end + a - 1) // a * a
        end = v.offset + v.size
    assert kc["CONFIG_HZ"][3:] == ("int", True, False)
    assert kc["CONFIG_KPROBES"][3:] == ("bool", False, True)
    assert kc["CONFIG_BPF_JIT"].kind == "tristate" and kc["CONFIG_BPF"].kind == "char"
    assert kc["CONFIG_DEFAULT_HOSTNAME"][2:4] == (16, "string")
    m = spec.maps[".kconfig"]
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.frozen, m.contents) == \
        (MapType.ARRAY, 4, end, 1, True, None)
    assert m.map_flags == MapFlags.MMAPABLE | MapFlags.RDONLY_PROG
    assert m.kernel_name == "kconfig.kconfig"
    sent = BTFSpec.from_bytes(spec.btf.load_blob())
    ds = sent.types[m.btf_value_type_id]
    assert isinstance(ds, T.Datasec) and ds.name == ".kconfig" and ds.size == end
    assert [(sent.types[vs.type].name, vs.offset, vs.size) for vs in ds.vars] == \
        [(v.name, v.offset, v.size) for v in order]
    assert {sent.types[vs.type].linkage for vs in ds.vars} == {T.BTF_VAR_GLOBAL_ALLOCATED}
    relocs = spec.programs["copy_kconfig"].map_relocs
    kc_relocs = {r.offset for r in relocs if r.map == ".kconfig"}
    assert kc_relocs and kc_relocs <= {v.offset + i for v in kc.values() for i in range(v.size)}
    insns = spec.programs["copy_kconfig"].insns
    for r in relocs:
        if r.map == ".kconfig":
            assert I.decode(insns, r.insn).src_reg == I.BPF_PSEUDO_MAP_VALUE
            assert I.decode(insns, r.insn + 1).imm == r.offset


def _rename_section(data: bytes, old: str, new: str) -> bytes:
    """Overwrite a section's name in .shstrtab (same length)."""
    elf = E.ElfFile(data, "x")
    sec = elf.section_by_name[old]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shstrndx = struct.unpack_from("<H", data, 62)[0]
    name_off = struct.unpack_from("<I", data, shoff + sec.index * 64)[0]
    strtab = elf.sections[shstrndx]
    pos = strtab.offset + name_off
    b = bytearray(data)
    b[pos:pos + len(new)] = new.encode()
    return bytes(b)


def test_unknown_code_section_is_named():
    data = _rename_section((BPF_DIR / "spec_sections.bpf.o").read_bytes(), "socket", "sockex")
    with pytest.raises(ObjectFormatError, match=r"section 'sockex' holds code but its name "
                                                r"is not a known program type"):
        ObjectSpec.from_bytes(data, "x.o")


def test_maps_without_btf_rejected():
    data = _rename_section(MAPS.read_bytes(), ".BTF", ".BTX")
    with pytest.raises(ObjectFormatError, match=r"'\.maps'.*compile with clang -g"):
        ObjectSpec.from_bytes(data, "x.o")


def test_static_program_rejected():
    data = bytearray((BPF_DIR / "spec_sections.bpf.o").read_bytes())
    elf = E.ElfFile(bytes(data), "x")
    symtab = next(s for s in elf.sections if s.type == E.SHT_SYMTAB)
    sym = next(s for s in elf.symbols if s.name == "p_socket")
    data[symtab.offset + sym.index * 24 + 4] = (E.STB_LOCAL << 4) | E.STT_FUNC
    with pytest.raises(ObjectFormatError, match="'p_socket' is static"):
        ObjectSpec.from_bytes(bytes(data), "x.o")


def test_corrupt_btf_names_file_and_section():
    data = bytearray(BASIC.read_bytes())
    btf = E.ElfFile(bytes(data), "x").section_by_name[".BTF"]
    data[btf.offset] ^= 0xFF                                  # break the magic
    with pytest.raises(BTFError, match=r"^x\.o: section '\.BTF': "):
        ObjectSpec.from_bytes(bytes(data), "x.o")


def test_not_elf():
    with pytest.raises(ObjectFormatError, match="not an ELF file"):
        ObjectSpec.from_bytes(b"int main() {}", "main.c")


def test_hidden_subprogram_gets_static_btf():
    """A __hidden global subprogram's BTF FUNC becomes static in the blob the
    kernel gets, as libbpf makes it; other FUNCs keep their linkage."""
    spec = ObjectSpec.from_file(BPF_DIR / "hidden_subprog.bpf.o")
    raw = BTFSpec.from_bytes(spec.btf.raw)
    sent = BTFSpec.from_bytes(spec.btf.load_blob())

    def linkage(btf):
        return {t.name: t.linkage for t in btf.types if isinstance(t, T.Func)}
    assert linkage(raw) == {"read_pair": T.BTF_FUNC_GLOBAL, "checked_sum": T.BTF_FUNC_GLOBAL,
                            "on_getppid": T.BTF_FUNC_GLOBAL}
    assert linkage(sent) == {**linkage(raw), "read_pair": T.BTF_FUNC_STATIC}
    assert len(sent.raw) == len(raw.raw)
