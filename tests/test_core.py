"""CO-RE relocation computation and patching.

Three oracles, none of them rawprobe:
* core_local.bpf.o against core_target.bpf.o (a stand-in kernel): the answers
  are the compiler's offsetof/sizeof, stored in the target's .rodata;
* core_read.bpf.o against the running kernel: `bpftool btf dump` of vmlinux;
* the same against libbpf itself: `bpftool prog loadall -d` prints every
  patched instruction, which must equal rawprobe's patch.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe.btf.core import (FIELD_KINDS, KIND_NAMES, POISON_HELPER, CoreRelocator,
                               CoreResult, apply, compute, fields_are_compat, types_are_compat,
                               types_match)
from rawprobe.btf.ext import BTFExt, CoreRelo, CoreReloKind as K
from rawprobe.btf import types as T
from rawprobe.btf.kernel import KernelBTF
from rawprobe.btf.parse import BTFSpec
from rawprobe.errors import CORERelocationError
from test_btf_kernel import bpftool_size, bpftool_dump, needs_vmlinux
from test_btf_parse import BPF_DIR, elf_sections, object_btf

LOCAL, TARGET, READ, ARRAY, COMPAT = (BPF_DIR / f"core_{n}.bpf.o"
                                      for n in ("local", "target", "read", "array", "compat"))
U64 = (1 << 64) - 1
INSN = struct.Struct("<BBhi")


def ext_of(path: Path):
    btf = object_btf(path)
    return btf, BTFExt.from_bytes(elf_sections(path)[".BTF.ext"], btf)


def rodata_u64(path: Path, prefix: str) -> dict[str, int]:
    """name -> value of every `const volatile __u64 <prefix>*` in the object."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        ro = elf.get_section_by_name(".rodata")
        data, idx = ro.data(), elf.get_section_index(".rodata")
        return {s.name[len(prefix):]: struct.unpack_from("<Q", data, s["st_value"])[0]
                for s in elf.get_section_by_name(".symtab").iter_symbols()
                if s.name.startswith(prefix) and s["st_shndx"] == idx}


def results_by_path(local, ext, target, sections) -> dict[tuple, list[CoreResult]]:
    r = CoreRelocator(local, target)
    out: dict[tuple, list[CoreResult]] = defaultdict(list)
    for sec in sections:
        for relo in ext.core_relos[sec]:
            res = r.compute(relo, section=sec)
            out[(sec.split("/")[-1], KIND_NAMES[relo.kind], res.local_path)].append(res)
    return out


def relocated(path: Path, target, sec: str) -> tuple[bytearray, list[CoreRelo]]:
    local, ext = ext_of(path)
    insns = bytearray(elf_sections(path)[sec])
    CoreRelocator(local, target).relocate(insns, ext.core_relos[sec], section=sec)
    return insns, ext.core_relos[sec]


def insn(insns: bytearray, idx: int) -> tuple[int, int, int, int]:
    return INSN.unpack_from(insns, idx * 8)


def poisoned(insns: bytearray, idx: int) -> bool:
    return insn(insns, idx) == (0x85, 0, 0, POISON_HELPER)


# -- the stand-in kernel -------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic():
    local, ext = ext_of(LOCAL)
    target = object_btf(TARGET)
    secs = [s for s in ext.core_relos if not s.endswith(("ambiguous", "toowide"))]
    return local, ext, target, results_by_path(local, ext, target, secs), \
        rodata_u64(TARGET, "expect_")


def one(res: dict, *key) -> CoreResult:
    found = res[key]
    assert found, f"no relocation {key}"
    vals = {(r.new_val, r.poison) for r in found}
    assert len(vals) == 1, f"{key}: {vals}"
    return found[0]


def test_field_offsets(synthetic) -> None:
    _, _, _, res, want = synthetic
    for path, key in [("thing.a", "off_a"), ("thing.s2", "off_s2"),
                      ("thing.counter", "off_counter"), ("thing.pts[2].y", "off_pts2_y"),
                      ("thing.name[3]", "off_name3"), ("thing.tail[5]", "off_tail5"),
                      ("thing.color", "off_color")]:
        r = one(res, "fields", "byte_off", path)
        assert (r.new_val, r.poison) == (want[key], False), path
    assert one(res, "flavours", "byte_off", "dup.a").new_val == want["off_dup_a"]


def test_field_size_changes(synthetic) -> None:
    _, _, _, res, want = synthetic
    r = one(res, "fields", "byte_off", "thing.counter")     # u64 locally, u32 in target
    assert (r.orig_sz, r.new_sz, r.fail_memsz_adjust) == (8, want["size_counter"], False)
    r = one(res, "fields", "byte_off", "thing.scount")      # s64 locally, s32: unsafe
    assert (r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == \
        (want["off_scount"], 8, 4, True)


def test_field_existence_size_signedness(synthetic) -> None:
    _, _, _, res, want = synthetic
    expect = {
        ("field_exists", "thing.a"): 1, ("field_exists", "thing.missing"): 0,
        ("field_exists", "thing.int_not_ptr"): 0, ("field_exists", "thing.scount"): 1,
        ("byte_sz", "thing.pts"): want["size_pts"], ("byte_sz", "thing.pts[1]"): want["size_pt"],
        ("byte_sz", "thing.name"): want["size_name"],
        ("byte_sz", "thing.counter"): want["size_counter"],
        ("signed", "thing.a"): 1, ("signed", "thing.counter"): 0,
        ("signed", "thing.color"): 1, ("signed", "thing.big"): 0,
    }
    for (kind, path), value in expect.items():
        r = one(res, "fields", kind, path)
        assert (r.new_val, r.poison) == (value, False), (kind, path)
    r = one(res, "fields", "byte_off", "thing.missing")
    assert r.poison and r.target_type_id == 0


def test_multidimensional_array(synthetic) -> None:
    """thing.grid: unsigned short[2][3] locally, [3][4] in the target."""
    _, _, target, res, want = synthetic
    r = one(res, "fields", "byte_off", "thing.grid")       # a load through the member
    assert (r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == \
        (want["off_grid"], 2, 2, False)                     # its elements' sizes
    r = one(res, "fields", "byte_off", "thing.grid[1]")
    assert (r.new_val, r.poison) == (want["off_grid1"], False)
    assert one(res, "fields", "byte_sz", "thing.grid").new_val == want["size_grid"]
    assert one(res, "fields", "byte_sz", "thing.grid[1]").new_val == want["size_grid1"]
    insns, relos = relocated(LOCAL, target, "raw_tracepoint/fields")
    r = CoreRelocator(object_btf(LOCAL), target)
    (i,) = [relo.insn_off // 8 for relo in relos
            if r.compute(relo).local_path == "thing.grid" and relo.kind == K.FIELD_BYTE_OFFSET]
    code, _, off, _ = insn(insns, i)
    assert (code, off) == (0x69, want["off_grid"])          # still LDX H


def test_bitfields(synthetic) -> None:
    _, _, _, res, want = synthetic
    # In the target, `flags:3` and `mode:5` follow `int a`: bits (a+4)*8 and +3,
    # in a 4-byte unsigned int.  A u64 load at the int's offset, shifted left by
    # 64 - (end bit within the load) and right by 64 - width, extracts them.
    base = (want["off_a"] + 4) * 8
    for name, bit, width in (("flags", base, 3), ("mode", base + 3, 5)):
        byte_off = bit // 32 * 4
        got = {k: one(res, "fields", k, f"thing.{name}").new_val
               for k in ("byte_off", "byte_sz", "lshift_u64", "rshift_u64", "signed")}
        assert got == {"byte_off": byte_off, "byte_sz": 4,
                       "lshift_u64": 64 - (bit + width - byte_off * 8),
                       "rshift_u64": 64 - width, "signed": 0}, name


def test_bitfields_across_their_types_size(synthetic) -> None:
    """pk.mid: 30 bits at bit 8 of a packed struct (after one char): a 4-byte load
    cannot hold bits 8..37, an 8-byte one from byte 0 can.  pk.hi (bits 60..69):
    no 8-byte load can, which is an error, as in libbpf."""
    local, ext, target, res, _ = synthetic
    got = {k: one(res, "fields", k, "pk.mid").new_val
           for k in ("byte_off", "byte_sz", "lshift_u64", "rshift_u64")}
    assert got == {"byte_off": 0, "byte_sz": 8, "lshift_u64": 64 - (8 + 30),
                   "rshift_u64": 64 - 30}
    # pk2.edge: bits 16..31 (after a short) end where a 4-byte load does: no wider
    got = {k: one(res, "fields", k, "pk2.edge").new_val
           for k in ("byte_off", "byte_sz", "lshift_u64", "rshift_u64")}
    assert got == {"byte_off": 0, "byte_sz": 4, "lshift_u64": 64 - 32, "rshift_u64": 64 - 16}
    (relo, *_) = ext.core_relos["raw_tracepoint/toowide"]
    with pytest.raises(CORERelocationError,
                       match="bitfield 'hi' cannot be read with one 64-bit load"):
        CoreRelocator(local, target).compute(relo, section="raw_tracepoint/toowide")


def _bpftool_type_ids(path: Path) -> dict[str, int]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return {f"{m[2]} {m[3]}": int(m[1])
            for m in re.finditer(r"^\[(\d+)\] (\w+) '([^']*)'", out, re.M)}


def test_type_relocations(synthetic) -> None:
    local, _, _, res, want = synthetic
    ids = _bpftool_type_ids(TARGET)
    local_ids = _bpftool_type_ids(LOCAL)
    expect = {
        ("local_type_id", "thing"): local_ids["STRUCT thing"],
        ("target_type_id", "thing"): ids["STRUCT thing"],
        ("target_type_id", "thing_t"): ids["TYPEDEF thing_t"],
        ("target_type_id", "nonexistent"): 0,
        ("type_exists", "thing"): 1, ("type_exists", "nonexistent"): 0,
        ("type_exists", "my_int"): 1, ("type_exists", "un"): 1,
        ("type_size", "thing"): want["size_thing"], ("type_size", "pt"): want["size_pt"],
        ("type_size", "my_int"): want["size_my_int"], ("type_size", "nonexistent"): 0,
        ("type_matches", "match_me"): 1, ("type_matches", "match_me___sign"): 0,
        ("type_matches", "match_me___arr"): 0, ("type_matches", "color___m"): 1,
        ("type_matches", "color___x"): 0,
    }
    for (kind, path), value in expect.items():
        r = one(res, "types", kind, path)
        assert (r.new_val, r.poison) == (value, False), (kind, path)


def test_enum_relocations(synthetic) -> None:
    _, _, _, res, _ = synthetic
    expect = {
        ("enumval_exists", "color::GREEN"): 1, ("enumval_exists", "color::PURPLE"): 0,
        ("enumval_value", "color::GREEN"): 5, ("enumval_value", "color::BLUE"): -3 & U64,
        ("enumval_value", "big::BIG_A"): 1 << 32,
        ("enumval_value", "big___small::BIG_B___small"): 7,
    }
    for (kind, path), value in expect.items():
        r = one(res, "enums", kind, path)
        assert (r.new_val, r.poison) == (value, False), (kind, path)
    assert one(res, "enums", "enumval_value", "color::PURPLE").poison


def test_enum_values_at_the_sign_bit() -> None:
    """A 32-bit enumerator is read as libbpf reads it (an s32, widened): 0x80000000
    and above are negative, 0x7fffffff is not; a 64-bit one is taken whole."""
    btf = _btf(T.Enum("e", 4, False, [T.EnumValue("LOW", 0x7FFFFFFF),
                                      T.EnumValue("HIGH", 0x80000000),
                                      T.EnumValue("TOP", 0xFFFFFFFF)]),
               T.Enum64("e64", 8, False, [T.EnumValue("HIGH64", 0x80000000)]))
    got = [compute(btf, CoreRelo(0, tid, 0, K.ENUMVAL_VALUE, str(i)), btf).new_val
           for tid, i in ((1, 0), (1, 1), (1, 2), (2, 0))]
    assert got == [0x7FFFFFFF, -(1 << 31) & U64, U64, 0x80000000]


def test_ambiguous_candidates_are_an_error() -> None:
    local, ext = ext_of(LOCAL)
    r = CoreRelocator(local, object_btf(TARGET))
    (relo,) = ext.core_relos["raw_tracepoint/ambiguous"]
    with pytest.raises(CORERelocationError) as e:
        r.compute(relo, section="raw_tracepoint/ambiguous", program="ambiguous")
    msg = str(e.value)
    for part in ("'ambiguous'", "'raw_tracepoint/ambiguous'", "insn #0", "amb.b",
                 "ambiguity"):
        assert part in msg


def test_repeated_relocations_reuse_results() -> None:
    """One relocator computes a repeated (type, access string, kind) once; callers
    get equal but separate results, and failures are raised for every occurrence
    with that occurrence's program."""
    local, ext = ext_of(LOCAL)
    target = object_btf(TARGET)
    relos = [(sec, r) for sec, rs in ext.core_relos.items()
             if not sec.endswith(("ambiguous", "toowide"))
             for r in rs]
    shared = CoreRelocator(local, target)
    first = [shared.compute(r, section=sec) for sec, r in relos]
    again = [shared.compute(r, section=sec) for sec, r in relos]
    fresh = [CoreRelocator(local, target).compute(r, section=sec) for sec, r in relos]
    assert first == again == fresh
    assert all(a is not b for a, b in zip(first, again))
    (relo,) = ext.core_relos["raw_tracepoint/ambiguous"]
    for prog in ("one", "two"):
        with pytest.raises(CORERelocationError, match=f"program '{prog}'"):
            shared.compute(relo, section="raw_tracepoint/ambiguous", program=prog)


def test_ambiguities_say_which_candidates_disagree_and_how() -> None:
    """Two target flavours of one local type: a field at different offsets in each,
    or a type relocation with a different answer from each, is an error that names
    both candidates and what each gives."""
    local, ext = ext_of(LOCAL)
    target = object_btf(TARGET)
    amb, v2 = target.type_by_name("amb")[0], target.type_by_name("amb___v2")[0]
    (relo,) = ext.core_relos["raw_tracepoint/ambiguous"]       # a->b: at 4, or at 0
    with pytest.raises(CORERelocationError) as e:
        CoreRelocator(local, target).compute(relo)
    assert str(e.value).startswith("insn #0: CO-RE relocation byte_off of amb.b (0:0): ")
    assert str(e.value).endswith(f"): field offset ambiguity: candidate [{v2}] has bit "
                                 f"offset 0, [{amb}] 32")
    tid = local.type_by_name("amb")[0]
    with pytest.raises(CORERelocationError) as e:
        CoreRelocator(local, target).compute(CoreRelo(0, tid, 0, K.TYPE_ID_TARGET, "0"))
    assert str(e.value).endswith(f"): relocation ambiguity: candidate [{v2}] gives {v2}, "
                                 f"[{amb}] {amb}")


def test_candidates_that_failed_to_match_are_dropped_for_later_relocations() -> None:
    """As libbpf: a flavour that did not match one relocation of a type is no longer
    a candidate for the next ones.  Here struct dup {a, b} against dup and
    dup___v2 {a, c}: once dup.b is relocated, dup___v2 is gone, so the type's id is
    no longer ambiguous (it is, asked first)."""
    btf = object_btf(TARGET)                     # its own stand-in kernel: two flavours
    dup, v2 = btf.type_by_name("dup")[0], btf.type_by_name("dup___v2")[0]
    type_id = CoreRelo(0, dup, 0, K.TYPE_ID_TARGET, "0")
    r = CoreRelocator(btf, btf)
    with pytest.raises(CORERelocationError, match="relocation ambiguity"):
        r.compute(type_id)
    assert [i for _, i in r.candidates(dup)] == [dup, v2]
    assert r.compute(CoreRelo(0, dup, 0, K.FIELD_BYTE_OFFSET, "0:1")).new_val == 4
    assert [i for _, i in r.candidates(dup)] == [dup]
    assert r.compute(type_id).new_val == dup


def test_kinds_must_agree_but_enums_of_any_size_do() -> None:
    """types_are_compat: an enum is compatible with an enum64 of its name (both
    ways) and with no other kind; nor is a struct with an enum."""
    local, target = object_btf(LOCAL), object_btf(TARGET)
    small, big64 = local.type_by_name("big___small")[0], target.type_by_name("big")[0]
    color, thing = local.type_by_name("color")[0], target.type_by_name("thing")[0]
    assert types_are_compat(local, small, target, big64)
    assert types_are_compat(target, big64, local, small)
    assert not types_are_compat(local, color, target, thing)
    assert not types_are_compat(target, thing, local, color)


@pytest.mark.parametrize("path", [LOCAL, TARGET, COMPAT, READ, ARRAY], ids=lambda p: p.name)
def test_every_type_matches_itself(path) -> None:
    """A type is compatible with, and matches, itself (every kind a CO-RE relocation
    can name, in each test object); the kinds no relocation names (functions,
    variables, data sections) match nothing.  Each member's type is a compatible
    field type of itself."""
    btf = object_btf(path)
    for i, t in enumerate(btf.types[1:], 1):
        named = not isinstance(t, (T.Func, T.Var, T.Datasec))
        assert types_match(btf, i, btf, i) == named, (i, t)
        assert types_are_compat(btf, i, btf, i) == named, (i, t)
        for m in getattr(t, "members", ()):
            assert fields_are_compat(btf, m.type, btf, m.type), (i, t, m)


def test_relocating_a_program_cut_from_its_section() -> None:
    """relocate() on a program cut from its section at byte base_off patches what
    the whole section's relocation patches, at the program's own indexes, skips the
    relocations outside it, and names the program's instruction in errors."""
    local, ext = ext_of(LOCAL)
    target = object_btf(TARGET)
    sec = "raw_tracepoint/fields"
    relos = ext.core_relos[sec]
    whole = bytearray(elf_sections(LOCAL)[sec])
    want = CoreRelocator(local, target).relocate(whole, relos, section=sec)
    assert want == [CoreRelocator(local, target).compute(r, section=sec) for r in relos]
    offs = sorted({r.insn_off for r in relos})
    assert len(offs) > 2
    for lo, hi in [(offs[0], offs[0] + 8), (offs[1], offs[-1] + 8), (offs[-1], offs[-1] + 8)]:
        cut = bytearray(elf_sections(LOCAL)[sec][lo:hi])
        got = CoreRelocator(local, target).relocate(cut, relos, section=sec, base_off=lo)
        assert cut == whole[lo:hi]
        assert got == [w for w, r in zip(want, relos) if lo <= r.insn_off < hi]
    # one just past the end of the cut is not the cut's
    cut = bytearray(elf_sections(LOCAL)[sec][offs[0]:offs[0] + 8])
    after = CoreRelo(offs[0] + 8, relos[0].type_id, 0, relos[0].kind, relos[0].access_str)
    assert CoreRelocator(local, target).relocate(cut, [after], base_off=offs[0]) == []
    # an instruction that disagrees with its relocation: apply's error names the
    # program (or, without one, the section) and the local path
    r0 = CoreRelocator(local, target).compute(relos[0])
    bad = bytearray(elf_sections(LOCAL)[sec])
    bad[offs[0] + 2:offs[0] + 4] = (r0.orig_val + 1).to_bytes(2, "little")
    bad[offs[0]] = LDX_W
    for kw, name in [({"program": "p", "section": sec}, "p"), ({"section": sec}, sec)]:
        with pytest.raises(CORERelocationError) as e:
            CoreRelocator(local, target).relocate(bytearray(bad), relos[:1], **kw)
        assert str(e.value).startswith(f"program {name!r}, insn #{offs[0] // 8} "
                                       f"({r0.local_path}): unexpected"), str(e.value)
    with pytest.raises(CORERelocationError) as e:
        CoreRelocator(local, target).relocate(bytearray(bad), relos[:1])
    assert str(e.value).startswith(f"insn #{offs[0] // 8} ({r0.local_path}): unexpected")
    # a relocation record not on an instruction boundary is no instruction's
    odd = [CoreRelo(r.insn_off + 4, r.type_id, 0, r.kind, r.access_str) for r in relos]
    cut = bytearray(elf_sections(LOCAL)[sec])
    assert CoreRelocator(local, target).relocate(cut, odd, section=sec) == []
    assert cut == elf_sections(LOCAL)[sec]
    # the error names the instruction within the program, not within the section
    (bad,) = ext.core_relos["raw_tracepoint/ambiguous"]
    late = CoreRelo(bad.insn_off + 64, bad.type_id, 0, bad.kind, bad.access_str)
    prog = bytearray(elf_sections(LOCAL)["raw_tracepoint/ambiguous"])
    with pytest.raises(CORERelocationError) as e:
        CoreRelocator(local, target).relocate(prog, [late], section="raw_tracepoint/ambiguous",
                                              program="ambiguous", base_off=64)
    assert str(e.value).startswith(f"program 'ambiguous' (section 'raw_tracepoint/ambiguous'), "
                                   f"insn #{bad.insn_off // 8}: CO-RE relocation byte_off of "
                                   f"amb.b (0:0): field offset ambiguity")


def test_patched_instructions(synthetic) -> None:
    _, ext, target, res, want = synthetic
    sec = "raw_tracepoint/fields"
    insns, relos = relocated(LOCAL, target, sec)
    at = {}
    r = CoreRelocator(*synthetic[:1], target)
    for relo in relos:
        at.setdefault(r.compute(relo).local_path + "/" + KIND_NAMES[relo.kind],
                      []).append(relo.insn_off // 8)
    (i,) = at["thing.counter/byte_off"]
    code, _, off, _ = insn(insns, i)
    assert code & 0x07 == 0x01 and code & 0x18 == 0x00 and off == want["off_counter"]  # LDX W
    (i,) = at["thing.scount/byte_off"]
    assert poisoned(insns, i)
    (i,) = at["thing.missing/byte_off"]
    assert poisoned(insns, i)
    for i in at["thing.a/byte_off"]:                    # a load, then a store of 42
        code, _, off, _ = insn(insns, i)
        assert off == want["off_a"] and code & 0x07 in (0x01, 0x02, 0x03)
    insns, relos = relocated(LOCAL, target, "raw_tracepoint/enums")
    for relo in relos:
        if relo.access_str == "0" and relo.kind == K.ENUMVAL_VALUE and \
                object_btf(LOCAL).name_of(relo.type_id) == "big":
            i = relo.insn_off // 8
            assert insn(insns, i)[0] == 0x18            # ld_imm64 carries 64 bits
            assert insn(insns, i)[3] & 0xFFFFFFFF | (insn(insns, i + 1)[3] & 0xFFFFFFFF) << 32 \
                == 1 << 32


# -- the running kernel ------------------------------------------------------------

def _member_offset(dump, tid: int, name: str) -> int | None:
    """Bit offset of member `name` of type `tid`, looking into anonymous members."""
    while dump[tid]["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        tid = int(re.search(r"type_id=(\d+)", dump[tid]["rest"])[1])
    for mname, mtype, off, _ in dump[tid]["members"]:
        if mname == name:
            return off
        if mname == "(anon)":
            inner = _member_offset(dump, mtype, name)
            if inner is not None:
                return off + inner
    return None


@needs_vmlinux
def test_against_running_kernel() -> None:
    dump = bpftool_dump()
    by_name = {(d["kind"], d["name"]): i for i, d in dump.items()}
    task = by_name[("STRUCT", "task_struct")]
    mm = by_name[("STRUCT", "mm_struct")]
    local, ext = ext_of(READ)
    res = results_by_path(local, ext, KernelBTF.load(), ext.core_relos)
    for field in ("pid", "tgid", "real_parent", "mm", "comm", "start_time"):
        for sec in ("sys_enter",):
            r = one(res, sec, "byte_off", f"task_struct.{field}")
            assert r.new_val == _member_offset(dump, task, field) // 8, field
    assert one(res, "sys_enter", "byte_off", "task_struct.comm[3]").new_val == \
        _member_offset(dump, task, "comm") // 8 + 3
    assert one(res, "sys_enter", "byte_off", "mm_struct.total_vm").new_val == \
        _member_offset(dump, mm, "total_vm") // 8
    assert one(res, "sys_enter", "field_exists", "task_struct___old.state").new_val == \
        int(_member_offset(dump, task, "state") is not None)
    assert one(res, "sys_enter", "field_exists", "task_struct___new.__state").new_val == \
        int(_member_offset(dump, task, "__state") is not None)
    assert one(res, "sys_enter", "field_exists", "task_struct.rawprobe_no_such_field"
               ).new_val == 0
    assert one(res, "sys_enter", "byte_off", "task_struct.rawprobe_no_such_field").poison
    assert one(res, "sys_enter", "target_type_id", "task_struct").new_val == task
    size = int(re.search(r"size=(\d+)", dump[task]["rest"])[1])
    assert one(res, "sys_enter", "type_size", "task_struct").new_val == size
    assert one(res, "sys_enter", "type_exists", "pid_t").new_val == 1
    assert one(res, "sys_enter", "type_exists", "rawprobe_no_such_struct").new_val == 0
    pid_type = dump[by_name[("ENUM", "pid_type")]]["values"]
    assert one(res, "sys_enter", "enumval_value", "pid_type::PIDTYPE_SID").new_val == \
        pid_type["PIDTYPE_SID"]
    ctx = dump[by_name[("ENUM64", "perf_callchain_context")]]["values"]
    assert one(res, "sys_enter", "enumval_value",
               "perf_callchain_context::PERF_CONTEXT_KERNEL").new_val == \
        ctx["PERF_CONTEXT_KERNEL"] & U64
    assert one(res, "sys_enter", "type_matches", "list_head___same").new_val == 1
    assert one(res, "sys_enter", "type_matches", "list_head___different").new_val == 0


# -- libbpf as the oracle ----------------------------------------------------------

_PATCH = re.compile(r"libbpf: prog '(\w+)': relo #(\d+): (?:patched insn #(\d+) \((ALU/ALU64|"
                    r"LDX/ST/STX|LDIMM64)\) (imm64|imm|off|mem_sz) (-?\d+) -> (-?\d+)|"
                    r"substituting insn #(\d+) w/ invalid insn)")


def libbpf_patches(obj: Path) -> dict[str, list[tuple]]:
    """prog name -> [(insn, what, new value) or (insn, 'poison', None)] from libbpf."""
    if os.geteuid() != 0:
        pytest.skip("bpftool prog loadall needs root")
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    if not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
    pin = Path(f"/sys/fs/bpf/rawprobe-test-core-{os.getpid()}")
    try:
        out = subprocess.run(["bpftool", "prog", "loadall", str(obj), str(pin), "-d"],
                             capture_output=True, text=True, timeout=60)
    finally:
        if pin.exists():
            shutil.rmtree(pin, ignore_errors=True)
    patches: dict[str, list[tuple]] = defaultdict(list)
    for m in _PATCH.finditer(out.stderr + out.stdout):
        if m[8] is not None:
            patches[m[1]].append((int(m[8]), "poison", None))
        else:
            patches[m[1]].append((int(m[3]), m[5], int(m[7])))
    if not patches:
        pytest.skip(f"bpftool printed no CO-RE relocations (rc={out.returncode}): "
                    f"{out.stderr[-300:]}")
    return patches


def assert_same_patches_as_libbpf(obj: Path, sections: dict[str, str],
                                  array_member_loads: frozenset = frozenset()) -> int:
    """Relocate each program (name -> section) of ``obj`` against the running kernel
    and compare every instruction libbpf patched; returns how many were compared.

    ``array_member_loads``: (program, local path) of loads through an array member
    itself whose length differs from the kernel's.  libbpf before commit
    06096d19ee38 (2025, "fix LDX/STX/ST CO-RE relocation size adjustment logic")
    compared whole array sizes there and poisoned the load; rawprobe, like libbpf
    since, compares the elements' sizes and patches the offset only (checked by
    running the program)."""
    patches = libbpf_patches(obj)
    kb = KernelBTF.load()
    n = 0
    for prog, sec in sections.items():
        insns, relos = relocated(obj, kb, sec)
        local, _ = ext_of(obj)
        r = CoreRelocator(local, kb)
        path_at = {relo.insn_off // 8: r.compute(relo).local_path for relo in relos}
        for idx, what, value in patches[prog]:
            code, regs, off, imm = insn(insns, idx)
            if what == "poison" and (prog, path_at[idx]) in array_member_loads:
                assert not poisoned(insns, idx), (prog, idx)
                assert code == insn(bytearray(elf_sections(obj)[sec]), idx)[0], (prog, idx)
            elif what == "poison":
                assert poisoned(insns, idx), (prog, idx)
            elif what == "imm":
                assert imm == struct.unpack("<i", struct.pack("<I", value & 0xFFFFFFFF))[0], \
                    (prog, idx, imm, value)
            elif what == "imm64":
                assert imm & 0xFFFFFFFF | (insn(insns, idx + 1)[3] & 0xFFFFFFFF) << 32 == \
                    value & U64, (prog, idx)
            elif what == "off":
                assert off == value, (prog, idx)
            elif what == "mem_sz":
                assert {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}[code & 0x18] == value
            n += 1
    return n


@needs_vmlinux
def test_same_patches_as_libbpf() -> None:
    n = assert_same_patches_as_libbpf(READ, {"core_probe_read": "raw_tracepoint/sys_enter",
                                             "core_direct": "tp_btf/sys_enter"})
    assert n >= 50


@needs_vmlinux
def test_arrays_same_patches_as_libbpf() -> None:
    """core_array.bpf.o: array fields and elements whose local declarations differ
    from the kernel's (length, element size, flexible or not, behind a typedef),
    the kernel's flexible arrays, an index on the root pointer, and arrays that do
    not match the kernel's field."""
    n = assert_same_patches_as_libbpf(
        ARRAY, {"core_arrays": "raw_tracepoint/sys_enter",
                "core_arrays_direct": "tp_btf/sys_enter"},
        array_member_loads=frozenset({("core_arrays_direct", "task_struct___small.comm")}))
    assert n >= 45


@needs_vmlinux
def test_compatibility_rules_same_as_libbpf() -> None:
    """core_compat.bpf.o: function prototypes, arrays, ints, enums, structs, unions
    and forwards on either side of each TYPE_EXISTS / TYPE_MATCHES / FIELD_EXISTS
    rule, against the kernel's types: every answer as libbpf's."""
    n = assert_same_patches_as_libbpf(COMPAT, {"core_compat": "raw_tracepoint/sys_enter"})
    assert n >= 39
    insns, relos = relocated(COMPAT, KernelBTF.load(), "raw_tracepoint/sys_enter")
    answers = {insn(insns, r.insn_off // 8)[3] for r in relos if r.kind != K.TYPE_SIZE}
    assert answers == {0, 1}                   # both sides of the rules are exercised


# struct array_out in core_array.bpf.c: what the program read, then 26 relocated u32s
ARRAY_OUT = struct.Struct("<ccc5xQQIII4xQ26I8x")
ARRAY_DIRECT_OUT = struct.Struct("<IIcc2x")


@needs_vmlinux
def test_arrays_read_what_the_kernel_holds(bpf_privileges) -> None:
    """core_array.bpf.o run on this process: what it reads through the relocated
    array paths is what /proc, getrlimit and sched_getaffinity say."""
    import resource
    import rawprobe
    spec = rawprobe.ObjectSpec.from_file(str(ARRAY))
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll:
        with coll.programs["core_arrays"].attach_raw_tracepoint("sys_enter"), \
                coll.programs["core_arrays_direct"].attach():
            os.getppid()
        raw = coll.variables["out"].get()
        direct = ARRAY_DIRECT_OUT.unpack(coll.variables["direct_out"].get())
    assert len(raw) == ARRAY_OUT.size
    (comm5, small5, flex5, nofile, nofile_ptr, nr, root_self, root_level, cpus0,
     *consts) = ARRAY_OUT.unpack(raw)
    proc_comm = Path("/proc/self/comm").read_bytes().rstrip(b"\n").ljust(16, b"\0")
    assert comm5 == small5 == flex5 == proc_comm[5:6]
    assert nofile == nofile_ptr == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nr == os.getpid()                     # the main thread's struct pid
    assert (root_self, root_level) == (1, 0)     # the root cgroup is its own ancestors[0]
    assert cpus0 == sum(1 << c for c in os.sched_getaffinity(0) if c < 64)
    # The relocated constants, from bpftool's dump of the kernel's BTF.
    dump = bpftool_dump()
    by_name = {(d["kind"], d["name"]): i for i, d in dump.items()}

    def member(struct_name: str, name: str) -> tuple[int, int]:
        """(byte offset, type id) of a member, looking through typedefs."""
        tid = by_name[("STRUCT", struct_name)]
        ((off, mtype),) = [(o // 8, t) for n, t, o, _ in dump[tid]["members"] if n == name]
        return off, mtype

    def size(tid: int) -> int:
        return bpftool_size(dump, tid)

    def elem(array_tid: int) -> int:
        return int(re.search(r"type_id=(\d+)", dump[array_tid]["rest"])[1])

    comm, comm_t = member("task_struct", "comm")
    rlim, rlim_t = member("signal_struct", "rlim")
    rlimit = size(by_name[("STRUCT", "rlimit")])
    rlim_max, _ = member("rlimit", "rlim_max")
    anc, anc_t = member("cgroup", "ancestors")
    numbers, numbers_t = member("pid", "numbers")
    upid = size(by_name[("STRUCT", "upid")])
    nr, _ = member("upid", "nr")
    cpus_mask, _ = member("task_struct", "cpus_mask")
    bits, bits_t = member("cpumask", "bits")
    assert consts == [
        size(comm_t), size(rlim_t), rlimit, size(anc_t), size(elem(anc_t)), upid,
        size(bits_t),
        comm + 15, comm + 5, rlim + 5 * rlimit, rlim + 3 * rlimit + rlim_max,
        7 * rlimit + rlim_max, anc + 2 * size(elem(anc_t)), anc + 3 * size(elem(anc_t)),
        numbers + upid + nr, cpus_mask + bits,
        1, 0, 1, 0, 1, 1,               # comm[15]/[20] through [32] and [], ancestors[1000]/[3]
        0, 0,                           # void *comm[2], char pid[4]: not the kernel's fields
        member("sk_buff", "__cloned_offset")[0], 0,   # zero-length, not last: no elements
    ]
    # tp_btf: direct loads, a u32 element here read as the kernel's u8
    perf_recursion = any(n == "perf_recursion" for n, *_ in
                         dump[by_name[("STRUCT", "task_struct")]]["members"])
    assert direct[1:] == (int(perf_recursion), proc_comm[0:1], proc_comm[2:3])


@pytest.mark.vm("module_btf")
def test_relocations_against_a_module_type(bpf_privileges, tmp_path, monkeypatch) -> None:
    """core_module.bpf.o reads struct p9_client, which only the 9pnet module's
    BTF has where 9pnet is a module (the test VM): loaded, attached and run, the
    program reports the module's offsets and size, and the CO-RE cache keeps the
    answer under the modules' identity."""
    import rawprobe
    from rawprobe import corecache
    from rawprobe.btf.kernel import ModuleBTFs
    vmlinux = KernelBTF.load()
    if vmlinux.types_by_name("p9_client"):
        pytest.skip("struct p9_client is in vmlinux here (9pnet built in)")
    mod = next((m for m in ModuleBTFs(vmlinux) if m.types_by_name("p9_client")), None)
    if mod is None:
        pytest.skip("no loaded module has struct p9_client (9pnet is not loaded)")
    tid, t = mod.type_by_name("p9_client", T.Kind.STRUCT)
    by = {m.name: m.offset // 8 for m in t.members}
    want = [by["msize"], by["proto_version"], t.size]

    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(tmp_path))
    for run in ("computed", "cached"):
        with rawprobe.load(str(BPF_DIR / "core_module.bpf.o")) as coll:
            with coll.programs["core_module"].attach_raw_tracepoint("sys_enter"):
                os.getppid()
            assert list(struct.unpack("<3Q", coll.variables["out"].get())) == want, run
    spec = rawprobe.ObjectSpec.from_file(str(BPF_DIR / "core_module.bpf.o"))
    entry = corecache.CoreCache.open(spec.name, spec.btf.raw)._progs["core_module"]
    assert entry[3] == corecache.modules_key() and entry[3], entry[3]


# -- apply() on hand-made instructions ---------------------------------------------

def _prog(*insns: tuple[int, int, int, int]) -> bytearray:
    return bytearray(b"".join(INSN.pack(*i) for i in insns))


MOV64_IMM = 0xB7        # BPF_ALU64 | BPF_MOV | BPF_K
LDX_DW, LDX_W = 0x79, 0x61
ST_W = 0x62
LD_IMM64 = 0x18


def test_apply_alu_and_validation() -> None:
    p = _prog((MOV64_IMM, 1, 0, 4))
    apply(p, 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=4, new_val=1268))
    assert insn(p, 0) == (MOV64_IMM, 1, 0, 1268)
    with pytest.raises(CORERelocationError, match=r"'prog', insn #0 \(task_struct.tgid\).*"
                                                  r"expected 4"):
        apply(p, 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=4, new_val=8), program="prog",
              path="task_struct.tgid")
    apply(p, 0, CoreResult(K.TYPE_ID_TARGET, orig_val=1, new_val=114, validate=False))
    assert insn(p, 0)[3] == 114
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, orig_val=114, new_val=-3 & U64))
    assert insn(p, 0)[3] == -3
    with pytest.raises(CORERelocationError, match="without an immediate"):
        apply(_prog((0xBF, 0x21, 0, 0)), 0, CoreResult(K.FIELD_BYTE_OFFSET))


def test_apply_says_where_in_full_and_takes_the_largest_offset() -> None:
    """apply()'s errors name the program, instruction and path as the loader prints
    them; an offset of 0x7fff is the largest a load/store carries."""
    with pytest.raises(CORERelocationError) as e:
        apply(_prog((LDX_W, 0x21, 4, 0)), 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=8),
              program="prog", path="s.a")
    assert str(e.value) == "program 'prog', insn #0 (s.a): unexpected load/store offset 4, " \
        "expected 8 (-> 0)"
    with pytest.raises(CORERelocationError) as e:
        apply(_prog((LDX_W, 0x21, 4, 0), (LDX_W, 0x21, 4, 0)), 2, CoreResult(K.FIELD_BYTE_OFFSET))
    assert str(e.value) == "insn #2: CO-RE relocation points past the end of the " \
        "2-instruction program"
    p = _prog((LDX_W, 0x21, 4, 0))
    apply(p, 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=4, new_val=0x7FFF))
    assert insn(p, 0) == (LDX_W, 0x21, 0x7FFF, 0)


def test_apply_load_store() -> None:
    p = _prog((LDX_DW, 0x21, 8, 0))
    apply(p, 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=8, new_val=20, orig_sz=8, new_sz=4))
    assert insn(p, 0) == (LDX_W, 0x21, 20, 0)
    p = _prog((LDX_DW, 0x21, 8, 0))
    apply(p, 0, CoreResult(K.FIELD_BYTE_OFFSET, orig_val=8, new_val=20, orig_sz=8, new_sz=4,
                           fail_memsz_adjust=True))
    assert poisoned(p, 0)
    with pytest.raises(CORERelocationError, match="16-bit offset"):
        apply(_prog((ST_W, 1, 0, 42)), 0, CoreResult(K.FIELD_BYTE_OFFSET, new_val=1 << 15))
    with pytest.raises(CORERelocationError, match="load/store of 4 bytes"):
        apply(_prog((ST_W, 1, 0, 42)), 0,
              CoreResult(K.FIELD_BYTE_OFFSET, new_val=4, orig_sz=8, new_sz=4))
    with pytest.raises(CORERelocationError, match="no load/store of that size"):
        apply(_prog((ST_W, 1, 0, 42)), 0,
              CoreResult(K.FIELD_BYTE_OFFSET, new_val=4, orig_sz=4, new_sz=3))


def test_apply_ld_imm64_and_poison() -> None:
    p = _prog((LD_IMM64, 1, 0, 5), (0, 0, 0, 0), (0x95, 0, 0, 0))
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, orig_val=5, new_val=0xFFFFFFFFFFFFFF80))
    assert insn(p, 0)[3] == -128 and insn(p, 1)[3] == -1
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, poison=True))
    assert poisoned(p, 0) and poisoned(p, 1) and insn(p, 2)[0] == 0x95
    with pytest.raises(CORERelocationError, match="unexpected form"):
        apply(_prog((LD_IMM64, 0x11, 0, 5), (0, 0, 0, 0)), 0,
              CoreResult(K.ENUMVAL_VALUE, orig_val=5))
    with pytest.raises(CORERelocationError, match="cut off"):
        apply(_prog((LD_IMM64, 1, 0, 5)), 0, CoreResult(K.ENUMVAL_VALUE, orig_val=5))
    with pytest.raises(CORERelocationError, match="cannot carry"):
        apply(_prog((0x05, 0, 1, 0)), 0, CoreResult(K.FIELD_BYTE_OFFSET))
    with pytest.raises(CORERelocationError, match="past the end"):
        apply(_prog((0x05, 0, 1, 0)), 1, CoreResult(K.FIELD_BYTE_OFFSET))


def test_ld_imm64_at_the_end_and_each_field_of_its_form() -> None:
    """An ld_imm64 that ends the program is patched and poisoned whole; one whose
    second half is missing is refused, and poisoned in its first half only; any
    field the second half must leave zero, or a source register or offset in the
    first, is refused as a form clang does not emit."""
    p = _prog((LD_IMM64, 1, 0, 5), (0, 0, 0, 0))
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, orig_val=5, new_val=(7 << 32) | 9))
    assert (insn(p, 0)[3], insn(p, 1)[3]) == (9, 7)
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, poison=True))
    assert poisoned(p, 0) and poisoned(p, 1)
    p = _prog((LD_IMM64, 1, 0, 5))
    apply(p, 0, CoreResult(K.ENUMVAL_VALUE, poison=True))
    assert poisoned(p, 0) and len(p) == 8
    for first, second in [((LD_IMM64, 0x01, 0, 5), (LD_IMM64, 0, 0, 0)),    # code
                          ((LD_IMM64, 0x01, 0, 5), (0, 0x01, 0, 0)),        # dst_reg
                          ((LD_IMM64, 0x01, 0, 5), (0, 0x10, 0, 0)),        # src_reg
                          ((LD_IMM64, 0x01, 0, 5), (0, 0, 1, 0)),           # off
                          ((LD_IMM64, 0x11, 0, 5), (0, 0, 0, 0)),           # src_reg, first
                          ((LD_IMM64, 0x01, 2, 5), (0, 0, 0, 0)),           # off, first
                          ((0x10, 0x01, 0, 5), (0, 0, 0, 0))]:              # not imm64
        with pytest.raises(CORERelocationError) as e:
            apply(_prog(first, second), 0, CoreResult(K.ENUMVAL_VALUE, orig_val=5))
        assert str(e.value) == "insn #0: CO-RE relocation on an ld_imm64 of unexpected form"
    with pytest.raises(CORERelocationError) as e:
        apply(_prog((LD_IMM64, 1, 0, 5), (0, 0, 0, 0)), 0,
              CoreResult(K.ENUMVAL_VALUE, orig_val=6, new_val=2))
    assert str(e.value) == "insn #0: unexpected ld_imm64 value 5, expected 6 (-> 2)"
    with pytest.raises(CORERelocationError) as e:
        apply(_prog((LD_IMM64, 1, 0, 5)), 0, CoreResult(K.ENUMVAL_VALUE, orig_val=5))
    assert str(e.value) == "insn #0: ld_imm64 cut off at the end of the program"


# -- bad relocations and fuzz --------------------------------------------------------

def test_bad_relocation_records() -> None:
    local = object_btf(LOCAL)
    target = object_btf(TARGET)
    tid = local.type_by_name("thing")[0]
    for relo, match in [
        (CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, "0:99"), "member #99"),
        (CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, ""), "bad access string"),
        (CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, "0:x"), "bad access string"),
        (CoreRelo(0, tid, 0, K.TYPE_SIZE, "1"), "want '0'"),
        (CoreRelo(0, tid, 0, K.ENUMVAL_VALUE, "0"), "does not name an enumerator"),
        (CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, "0:0:1"), "no members"),
    ]:
        with pytest.raises(CORERelocationError, match=match) as e:
            compute(local, relo, target, section="s", program="p")
        assert "program 'p' (section 's'), insn #0" in str(e.value)


def _why(relo: CoreRelo, local=None, target=None) -> str:
    """What compute() says is wrong with ``relo``: its message's last clause
    (local and target: core_local's and core_target's BTF unless given)."""
    with pytest.raises(CORERelocationError) as e:
        compute(local or object_btf(LOCAL), relo, target or object_btf(TARGET))
    return str(e.value).rsplit(": ", 1)[-1]


def test_access_string_bounds_and_wording() -> None:
    local = object_btf(LOCAL)
    tid, thing = local.type_by_name("thing")
    members = [m.name for m in thing.members]
    n, pts, name = len(members), members.index("pts"), members.index("name")
    cid, color = local.type_by_name("color")
    fo = K.FIELD_BYTE_OFFSET
    # the last member, element and enumerator are fine; one past is not
    assert compute(local, CoreRelo(0, tid, 0, fo, f"0:{n - 1}"),
                   object_btf(TARGET)).local_path == "thing.tail"
    assert _why(CoreRelo(0, tid, 0, fo, f"0:{n}")) == f"member #{n} of thing does not exist"
    assert compute(local, CoreRelo(0, tid, 0, fo, f"0:{pts}:3"),
                   object_btf(TARGET)).local_path == "thing.pts[3]"
    assert _why(CoreRelo(0, tid, 0, fo, f"0:{pts}:4")) == \
        "index 4 past the end of a 4-element array"
    last = len(color.values) - 1
    assert compute(local, CoreRelo(0, cid, 0, K.ENUMVAL_EXISTS, str(last)),
                   object_btf(TARGET)).local_path == "color::PURPLE"
    for acc in (str(last + 1), "0:0"):
        assert _why(CoreRelo(0, cid, 0, K.ENUMVAL_VALUE, acc)) == \
            f"enum relocation {acc!r} does not name an enumerator of [{cid}] ENUM 'color'"
    # at most 64 indices (BPF_CORE_SPEC_MAX_LEN): 64 are walked, 65 refused unread
    deep = ":".join(["0"] * 64)
    assert "steps into" in _why(CoreRelo(0, tid, 0, fo, deep))
    assert _why(CoreRelo(0, tid, 0, fo, deep + ":0")) == \
        f"access string {deep + ':0'!r} is longer than 64"
    assert _why(CoreRelo(0, 10 ** 6, 0, fo, "0")).startswith("no BTF type with id 1000000")
    assert _why(CoreRelo(0, tid, 0, 13, "0")) == "unknown relocation kind 13"
    with pytest.raises(CORERelocationError) as e:
        compute(local, CoreRelo(0, tid, 0, 13, "0"), object_btf(TARGET))
    assert str(e.value) == f"insn #0: CO-RE relocation 13 of struct thing (0): cannot parse " \
        f"access string '0' on [{tid}] struct thing: unknown relocation kind 13"


def test_paths_name_every_index_but_a_leading_zero() -> None:
    local, target = object_btf(LOCAL), object_btf(TARGET)
    tid, thing = local.type_by_name("thing")
    name = [m.name for m in thing.members].index("name")
    pid, _ = local.type_by_name("pt")
    want = rodata_u64(TARGET, "expect_")
    r = compute(local, CoreRelo(0, pid, 0, K.FIELD_BYTE_OFFSET, "3:1"), target)
    assert (r.local_path, r.new_val) == ("pt[3].y", 3 * want["size_pt"] + 4)
    assert compute(local, CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, f"0:{name}:0"),
                   target).local_path == "thing.name[0]"
    assert compute(local, CoreRelo(0, pid, 0, K.FIELD_BYTE_OFFSET, "1"),
                   target).local_path == "pt[1]"
    # an anonymous root is named by its kind
    anon = next(i for i, t in enumerate(target.types)
                if not t.name and isinstance(t, T.Union))
    msg = _why(CoreRelo(0, anon, 0, K.FIELD_BYTE_OFFSET, "0:0"), local=target)
    assert msg == "CO-RE relocations against anonymous types are not supported"
    with pytest.raises(CORERelocationError, match=r"byte_off of <anon union>\.u1 \(0:0\)"):
        compute(target, CoreRelo(0, anon, 0, K.FIELD_BYTE_OFFSET, "0:0"), target)


def test_module_btf_is_searched_only_for_types_vmlinux_lacks() -> None:
    """A stand-in vmlinux (an int) and a module's split BTF (struct modt { int y, x; }):
    modt is found in the module, counted as module-dependent, at the module's offset;
    int is vmlinux's, and then the modules are not even walked."""
    from test_btf_parse import INT_REC, INT_STRINGS, blob, rec
    tk = T.Kind
    base = KernelBTF.from_bytes(blob(INT_REC, INT_STRINGS))
    n = len(INT_STRINGS)                               # module strings follow the base's
    mod = KernelBTF.from_bytes(blob(rec(n, tk.STRUCT, 2, 8)
                                    + struct.pack("<III", n + 5, 1, 0)     # y at 0
                                    + struct.pack("<III", n + 7, 1, 32),   # x at 4
                                    b"modt\0y\0x\0"), base=base)
    local = BTFSpec.from_bytes(blob(INT_REC + rec(5, tk.STRUCT, 1, 4)
                                    + struct.pack("<III", 10, 1, 0), INT_STRINGS + b"modt\0x\0"))
    r = CoreRelocator(local, base, [mod])
    res = r.compute(CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET, "0:0"))
    assert (res.new_val, res.target_btf, res.target_type_id) == (4, mod, 2)
    assert r.module_dependent == {2}
    assert compute(local, CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET, "0:0"), base,
                   modules=[mod]).new_val == 4

    class Unwalkable:
        def __iter__(self):
            raise AssertionError("modules walked for a type vmlinux has")
    r = CoreRelocator(local, base, Unwalkable())
    res = r.compute(CoreRelo(0, 1, 0, K.TYPE_SIZE, "0"))
    assert (res.new_val, res.target_btf) == (4, base) and not r.module_dependent
    # every module is searched, not just the last one
    empty = KernelBTF.from_bytes(blob(b"", b"\0"), base=base)
    for mods in ([mod, empty], [empty, mod]):
        res = CoreRelocator(local, base, mods).compute(CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET,
                                                                "0:0"))
        assert (res.new_val, res.target_btf) == (4, mod)
    # without the module, modt is missing: its field access is poisoned
    assert CoreRelocator(local, base).compute(CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET,
                                                       "0:0")).poison


# -- runaway BTF: chains and nestings deeper than libbpf's 32 levels ----------------------

_NAMES = b"\0int\0t\0s\0m\0"            # offsets: int 1, t 5, s 7, m 9


def _deep(kind: str, depth: int) -> tuple[BTFSpec, int]:
    """A BTF whose type named "t" (or "s") nests ``depth`` levels of ``kind``."""
    from test_btf_parse import INT_REC, blob, rec
    tk = T.Kind
    out = [INT_REC]                                    # [1] int
    first = 2
    if kind == "ptr":                                  # t -> * -> * ... -> int
        out += [rec(0, tk.PTR, 0, first + i + 1) for i in range(depth - 1)]
        out += [rec(0, tk.PTR, 0, 1), rec(5, tk.TYPEDEF, 0, first)]
        root = first + depth
    elif kind == "const":                              # t -> const const ... int
        out += [rec(0, tk.CONST, 0, first + i + 1) for i in range(depth - 1)]
        out += [rec(0, tk.CONST, 0, 1), rec(5, tk.TYPEDEF, 0, first)]
        root = first + depth
    elif kind == "proto":                              # t -> *(int (*)(int (*)(...)))
        for i in range(depth):
            ptr, proto = first + 2 * i, first + 2 * i + 1
            param = ptr + 2 if i < depth - 1 else 1
            out += [rec(0, tk.PTR, 0, proto),
                    rec(0, tk.FUNC_PROTO, 1, 1) + struct.pack("<II", 0, param)]
        out.append(rec(5, tk.TYPEDEF, 0, first))
        root = first + 2 * depth
    elif kind == "struct":                             # struct s { struct s' m; } ...
        for i in range(depth):
            inner = first + i + 1 if i < depth - 1 else 1
            out.append(rec(7, tk.STRUCT, 1, 4) + struct.pack("<III", 9, inner, 0))
        root = first
    elif kind == "array":                              # struct s { int m[1][1]...[1]; }
        out.append(rec(7, tk.STRUCT, 1, 4) + struct.pack("<III", 9, first + 1, 0))
        for i in range(depth):
            elem = first + i + 2 if i < depth - 1 else 1
            out.append(rec(0, tk.ARRAY) + struct.pack("<III", elem, 1, 1))
        root = first
    return BTFSpec.from_bytes(blob(b"".join(out), _NAMES)), root


# The deepest chain of each kind that is computed: libbpf's limit of 32 levels, the
# root's typedef (or the member holding the chain) being one of them, except for
# function prototypes, whose parameters are counted from the prototype.
@pytest.mark.parametrize("kind, relo_kind, acc, deepest, why", [
    ("ptr", K.TYPE_EXISTS, "0", 31, "type compatibility check nests too deep"),
    ("ptr", K.TYPE_MATCHES, "0", 31, "type match nests too deep"),
    ("proto", K.TYPE_EXISTS, "0", 32, "function prototype nesting too deep"),
    ("proto", K.TYPE_MATCHES, "0", 31, "type match nests too deep"),
    ("struct", K.TYPE_MATCHES, "0", 31, "type match nests too deep"),
    ("array", K.FIELD_EXISTS, "0:0", 31, "field compatibility check nests too deep"),
    ("const", K.TYPE_EXISTS, "0", 31, r"typedef/modifier chain at type \d+ is too deep or loops"),
])
def test_runaway_btf_is_refused_not_recursed(kind, relo_kind, acc, deepest, why) -> None:
    """Hostile or broken BTF (a module's, a local object's) cannot send CO-RE into
    deep recursion: past libbpf's 32 levels it is refused with a clear error."""
    for depth in (deepest + 1, 40):
        btf, root = _deep(kind, depth)
        with pytest.raises(CORERelocationError) as e:
            compute(btf, CoreRelo(0, root, 0, relo_kind, acc), btf)
        assert re.search(rf"\): {why}$", str(e.value)), str(e.value)
    for depth in (8, deepest):
        btf, root = _deep(kind, depth)
        assert compute(btf, CoreRelo(0, root, 0, relo_kind, acc), btf).new_val == 1


@st.composite
def random_relo(draw):
    local = object_btf(draw(st.sampled_from([LOCAL, READ])))
    kind = draw(st.sampled_from(list(K)))
    tid = draw(st.integers(0, len(local.types) + 2))
    acc = ":".join(str(i) for i in draw(st.lists(st.integers(0, 40), min_size=1, max_size=5)))
    acc = draw(st.sampled_from([acc, "0", "", ":1", "0::1"]))
    return local, CoreRelo(draw(st.integers(0, 64)) * 8, tid, 0, kind, acc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_relo(), st.binary(min_size=0, max_size=48))
def test_fuzz_compute_and_apply(case, code: bytes) -> None:
    local, relo = case
    try:
        res = compute(local, relo, object_btf(TARGET))
    except CORERelocationError:
        return
    try:
        apply(bytearray(code), relo.insn_off // 8 % 7, res)
    except CORERelocationError:
        pass


# -- hand-built BTF: libbpf's rules at edges no compiled object reaches ----------------
# Each expected answer is the rule of libbpf's tools/lib/bpf/relo_core.c for that case
# (named in the test), on types built in memory: legacy bitfield ints, floats, forward
# declarations on each side, arrays at the root, nesting at the 64-step limit.

I32 = T.Int("int", 4, T.BTF_INT_SIGNED, 0, 32)
U8 = T.Int("unsigned char", 1, 0, 0, 8)
U32 = T.Int("unsigned int", 4, 0, 0, 32)


def _btf(*types: T.Type) -> BTFSpec:
    """A BTF holding ``types`` (ids from 1), as if parsed from a blob."""
    return BTFSpec([T.Void(), *types], b"\0")


def test_legacy_bitfield_ints_are_compatible_with_no_int() -> None:
    """An INT with a bit offset (the encoding of bitfields before kind_flag) is
    neither a compatible type nor a compatible member type of any int, on either
    side, not even of itself (libbpf: "reject deprecated bitfield-like integers")."""
    plain, legacy = _btf(I32), _btf(T.Int("int", 4, T.BTF_INT_SIGNED, 3, 5))
    assert types_are_compat(plain, 1, plain, 1) and fields_are_compat(plain, 1, plain, 1)
    for local, target in ((plain, legacy), (legacy, plain), (legacy, legacy)):
        assert not types_are_compat(local, 1, target, 1)
        assert not fields_are_compat(local, 1, target, 1)


def test_kinds_without_a_rule_are_never_compatible() -> None:
    """The compatibility, match and member checks have a rule per kind and end in
    libbpf's "unexpected kind" (0): a float is not a compatible or matching type
    (so TYPE_EXISTS and TYPE_MATCHES of it give 0), and a member whose type is a
    function prototype has no compatible counterpart (FIELD_EXISTS gives 0)."""
    fl = _btf(T.Float("double", 8), T.Typedef("d_t", 1))
    for kind in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        r = compute(fl, CoreRelo(0, 2, 0, kind, "0"), fl)
        assert (r.new_val, r.poison) == (0, False), kind
    btf = _btf(I32, T.FuncProto(type=1), T.Struct("s", 8, [T.Member("i", 1, 0),
                                                          T.Member("f", 2, 32)]))
    exists = [compute(btf, CoreRelo(0, 3, 0, K.FIELD_EXISTS, f"0:{i}"), btf).new_val
              for i in (0, 1)]
    assert exists == [1, 0]


# [1] fwd struct x, [2] fwd union x, [3] struct x, [4] union x, [5] int, [6..9] * to 1..4
_FWDS = _btf(T.Fwd("x"), T.Fwd("x", union=True), T.Struct("x", 4, [T.Member("a", 5, 0)]),
             T.Union("x", 4, [T.Member("a", 5, 0)]), I32,
             *(T.Ptr(type=i) for i in (1, 2, 3, 4)))


@pytest.mark.parametrize("local, target, matches", [
    # not behind a pointer: a forward matches a forward of its own flavour only
    (1, 1, True), (2, 2, True), (1, 2, False), (2, 1, False), (1, 3, False), (2, 4, False),
    (3, 4, False), (4, 3, False),
    # behind a pointer: struct or union against a forward of the same flavour, and back
    (8, 6, True), (9, 7, True), (8, 7, False), (9, 6, False), (6, 8, True), (7, 9, True),
    (6, 9, False), (7, 8, False), (8, 9, False), (9, 8, False), (6, 7, False),
])
def test_type_matches_forwards_by_flavour(local, target, matches) -> None:
    """TYPE_MATCHES with forward declarations, as libbpf's __bpf_core_types_match:
    a forward matches only a forward of the same flavour (struct or union), except
    behind a pointer, where a struct (union) and a forward of a struct (union)
    match either way round; a struct never matches a union."""
    assert types_match(_FWDS, local, _FWDS, target) == matches


def test_type_matches_needs_every_member_and_the_same_kind() -> None:
    """A struct with a member the target lacks does not match it (more members than
    the target: refused before any is looked at); a pointer matches no other kind,
    even one as anonymous as itself (an array)."""
    btf = _btf(I32, T.Struct("s", 8, [T.Member("a", 1, 0), T.Member("b", 1, 32)]),
               T.Struct("s", 4, [T.Member("a", 1, 0)]), T.Ptr(type=1), T.Array(type=1,
                                                                                index_type=1,
                                                                                nelems=2))
    assert types_match(btf, 3, btf, 2) and not types_match(btf, 2, btf, 3)
    assert not types_match(btf, 4, btf, 5) and not types_match(btf, 5, btf, 4)


def test_function_prototype_parameters_behind_a_pointer_match_by_kind() -> None:
    """A parameter of a function reached through a pointer is matched as behind a
    pointer (libbpf passes behind_ptr down): a struct taken by value matches a
    struct of another layout there, but not in a function type reached directly."""
    def side(member: str) -> BTFSpec:
        # [1] int, [2] struct x, [3] void (struct x), [4] *[3], [5] cb = [4], [6] fn = [3]
        return _btf(I32, T.Struct("x", 4, [T.Member(member, 1, 0)]),
                    T.FuncProto(type=0, params=[T.Param("", 2)]), T.Ptr(type=3),
                    T.Typedef("cb", 4), T.Typedef("fn", 3))
    local, target = side("a"), side("b")
    assert types_match(local, 5, target, 5)
    assert not types_match(local, 6, target, 6)
    assert types_match(local, 6, local, 6)


def test_bitfields_in_a_byte_and_past_a_word() -> None:
    """libbpf's bitfield arithmetic at its edges: a 3-bit field of an unsigned char
    is read with a 1-byte load; a 30-bit field starting at byte 17 of a packed struct
    does not fit the 4-byte load at byte 16 and is read with an 8-byte one there.
    A plain member's shifts are those of its whole size (BPF_CORE_READ_BITFIELD
    works on any integer member)."""
    byte = _btf(U8, T.Struct("b", 2, [T.Member("pad", 1, 0), T.Member("c", 1, 8, 3)]))
    long_ = T.Int("long", 8, T.BTF_INT_SIGNED, 0, 64)
    packed = _btf(I32, long_, U8, U32, T.Array(type=2, index_type=1, nelems=2),
                  T.Struct("w", 21, [T.Member("pad", 5, 0), T.Member("c", 3, 128),
                                     T.Member("mid", 4, 136, 30)]))
    kinds = (K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64)
    for btf, tid, acc, want in [(byte, 2, "0:1", [1, 1, 64 - 3, 64 - 3]),
                                (byte, 2, "0:0", [0, 1, 64 - 8, 64 - 8]),
                                (packed, 6, "0:2", [16, 8, 64 - (136 + 30 - 128), 64 - 30]),
                                (packed, 6, "0:1", [16, 1, 64 - 8, 64 - 8])]:
        got = [compute(btf, CoreRelo(0, tid, 0, k, acc), btf).new_val for k in kinds]
        assert got == want, acc


def test_what_is_checked_against_the_instruction_of_a_bitfield_or_a_type_id() -> None:
    """A bitfield's offset, size and left shift are not checked against what the
    compiler put in the instruction (compilers may lay bitfields out differently),
    but its signedness and right shift are (never ambiguous); a local or target type
    id is never checked (linking may renumber the local one), as in libbpf."""
    btf = _btf(U8, T.Struct("b", 2, [T.Member("pad", 1, 0), T.Member("c", 1, 8, 3)]))
    for kind, checked in [(K.FIELD_BYTE_OFFSET, False), (K.FIELD_BYTE_SIZE, False),
                          (K.FIELD_LSHIFT_U64, False), (K.FIELD_SIGNED, True),
                          (K.FIELD_RSHIFT_U64, True), (K.TYPE_ID_TARGET, False),
                          (K.TYPE_ID_LOCAL, False)]:
        relo = CoreRelo(0, 2, 0, kind, "0:1" if kind in FIELD_KINDS else "0")
        r = compute(btf, relo, btf)
        assert r.kind == kind
        p = _prog((MOV64_IMM, 1, 0, r.orig_val + 1))
        if checked:
            with pytest.raises(CORERelocationError, match="unexpected ALU immediate"):
                apply(p, 0, r)
        else:
            apply(p, 0, r)
            assert insn(p, 0) == (MOV64_IMM, 1, 0, r.new_val), kind


def test_a_bitfield_of_a_type_without_a_size_is_refused() -> None:
    """A bitfield whose type has no size (here a pointer: broken BTF) cannot be
    located: a clear error, not arithmetic on a missing size."""
    btf = _btf(I32, T.Ptr(type=1), T.Struct("h", 8, [T.Member("p", 2, 0, 3)]))
    for kind in (K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE):
        assert _why(CoreRelo(0, 3, 0, kind, "0:0"), btf, btf) == \
            "bitfield 'p' has a type without a size"


def test_a_member_that_turned_into_a_bitfield_poisons_its_load() -> None:
    """A plain unsigned char locally, a bitfield in the target: the load's size
    cannot follow (a bitfield has no load size), so libbpf marks the load
    fail_memsz_adjust and poisons it; the byte offset itself is still given."""
    local = _btf(U8, T.Struct("s", 1, [T.Member("c", 1, 0)]))
    target = _btf(U8, T.Struct("s", 1, [T.Member("c", 1, 0, 3)]))
    r = compute(local, CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET, "0:0"), target)
    assert (r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == (0, 1, 0, True)
    p = _prog((0x71, 0x21, 0, 0))                          # LDX B r1 = *(u8 *)(r2 + 0)
    apply(p, 0, r)
    assert poisoned(p, 0)


def test_arrays_at_the_root_and_arrays_that_end_a_struct() -> None:
    """An index into a root array type (a typedef of int[4]) is an element step
    (libbpf checks its bounds, not the root's); an array that ends a struct is
    flexible only when it has no elements: a 1-element last member is bounded."""
    btf = _btf(I32, T.Array(type=1, index_type=1, nelems=4), T.Typedef("arr_t", 2),
               T.Array(type=1, index_type=1, nelems=1),
               T.Struct("one", 8, [T.Member("n", 1, 0), T.Member("d", 4, 32)]),
               T.Array(type=1, index_type=1, nelems=0),
               T.Struct("flex", 4, [T.Member("n", 1, 0), T.Member("d", 6, 32)]))
    fo = K.FIELD_BYTE_OFFSET
    for acc, path, off in [("0:0", "arr_t[0]", 0), ("0:3", "arr_t[3]", 12),
                           ("1:2", "arr_t[1][2]", 24)]:
        r = compute(btf, CoreRelo(0, 3, 0, fo, acc), btf)
        assert (r.local_path, r.new_val, r.poison) == (path, off, False), acc
    assert _why(CoreRelo(0, 3, 0, fo, "0:4"), btf, btf) == \
        "index 4 past the end of a 4-element array"
    assert _why(CoreRelo(0, 5, 0, fo, "0:1:1"), btf, btf) == \
        "index 1 past the end of a 1-element array"
    assert compute(btf, CoreRelo(0, 7, 0, fo, "0:1:5"), btf).new_val == 4 + 5 * 4


def _nested(depth: int, member: T.Type) -> tuple[BTFSpec, int]:
    """struct s { struct { struct { ... <member> m; }; }; }: ``m`` inside ``depth``
    anonymous structs; ``member``'s type is [1], its elements' (if an array) int [2]."""
    types = [member, I32, T.Struct("", 8, [T.Member("m", 1, 0)])]
    for _ in range(depth - 1):
        types.append(T.Struct("", 8, [T.Member("", len(types), 0)]))
    types.append(T.Struct("s", 8, [T.Member("", len(types), 0)]))
    return _btf(*types), len(types)


def test_target_paths_stop_at_64_steps() -> None:
    """A target path holds at most 64 steps (BPF_CORE_SPEC_MAX_LEN), each anonymous
    struct on the way counting as one: looking for `s.m` through 62 anonymous structs
    takes 64 steps, through 63 it is refused; an element of `m` adds one step more."""
    local = _btf(I32, T.Struct("s", 4, [T.Member("m", 1, 0)]))
    fo = K.FIELD_BYTE_OFFSET
    assert compute(local, CoreRelo(0, 2, 0, fo, "0:0"), _nested(62, I32)[0]).new_val == 0
    assert _why(CoreRelo(0, 2, 0, fo, "0:0"), local, _nested(63, I32)[0]) == \
        "target struct nesting too deep"
    arr = T.Array(type=2, index_type=2, nelems=2)
    local = _btf(arr, I32, T.Struct("s", 8, [T.Member("m", 1, 0)]))
    assert compute(local, CoreRelo(0, 3, 0, fo, "0:0:1"), _nested(61, arr)[0]).new_val == 4
    assert _why(CoreRelo(0, 3, 0, fo, "0:0:1"), local, _nested(62, arr)[0]) == \
        "target nesting too deep"


def test_computed_results_are_checked_against_the_instruction() -> None:
    """Every non-bitfield field relocation and every type size is validated when
    applied: an instruction that does not hold the local answer is an error (the
    object and its BTF disagree).  A type relocation on a load patches its offset
    and leaves its access size alone (it has no field size)."""
    local, target = object_btf(LOCAL), object_btf(TARGET)
    tid, thing = local.type_by_name("thing")
    a = [m.name for m in thing.members].index("a")
    r = compute(local, CoreRelo(0, tid, 0, K.FIELD_BYTE_OFFSET, f"0:{a}"), target)
    assert r.validate
    with pytest.raises(CORERelocationError,
                       match=f"unexpected load/store offset {r.orig_val + 4}"):
        apply(_prog((LDX_W, 0x21, r.orig_val + 4, 0)), 0, r)
    size = compute(local, CoreRelo(0, tid, 0, K.TYPE_SIZE, "0"), target)
    with pytest.raises(CORERelocationError, match=f"unexpected ALU immediate {size.orig_val + 1}"):
        apply(_prog((MOV64_IMM, 1, 0, size.orig_val + 1)), 0, size)
    p = _prog((LDX_W, 0x21, size.orig_val, 0))
    apply(p, 0, size)
    assert insn(p, 0) == (LDX_W, 0x21, size.new_val, 0)


def test_a_result_keeps_what_it_is_given() -> None:
    given = dict(orig_val=1, new_val=2, poison=True, validate=False, fail_memsz_adjust=True,
                 orig_sz=4, new_sz=8, orig_type_id=5, new_type_id=6, local_path="s.a",
                 target_type_id=7, target_btf=object())
    r = CoreResult(K.FIELD_BYTE_SIZE, **given)
    assert {n: getattr(r, n) for n in CoreResult.__slots__} == \
        {"kind": K.FIELD_BYTE_SIZE, **given}
    c = r.copy()
    assert c == r and c is not r


def test_what_each_refusal_names() -> None:
    """The last clause of each refusal says what is wrong, naming the type, member
    or relocation: a type without a size indexed at the root, a member past the end
    of an anonymous struct or union, a relocation kind that has no meaning for an
    array element, an access string that starts with ':' whatever the kind."""
    local = object_btf(LOCAL)
    tid, thing = local.type_by_name("thing")
    fwd = _btf(T.Fwd("x"))
    assert _why(CoreRelo(0, 1, 0, K.FIELD_BYTE_OFFSET, "0"), fwd, fwd) == \
        "BTF type [1] FWD 'x' has no size"
    target = object_btf(TARGET)
    ttid, tthing = target.type_by_name("thing")
    anon = [m.name for m in tthing.members].index("")
    assert _why(CoreRelo(0, ttid, 0, K.FIELD_BYTE_OFFSET, f"0:{anon}:9"), target, target) == \
        "member #9 of anonymous does not exist"
    name = [m.name for m in thing.members].index("name")
    for kind in (K.FIELD_SIGNED, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64):
        assert _why(CoreRelo(8, tid, 0, kind, f"0:{name}:3"), local, target) == \
            f"relocation {KIND_NAMES[kind]} at insn #1 cannot apply to an array element"
    for kind in (K.FIELD_BYTE_OFFSET, K.TYPE_SIZE, K.ENUMVAL_VALUE):
        assert _why(CoreRelo(0, tid, 0, kind, ":0"), local, target) == \
            "bad access string ':0'"
    # the same for a type the target lacks (no candidate to match)
    assert _why(CoreRelo(8, tid, 0, K.FIELD_SIGNED, f"0:{name}:3"), local, fwd) == \
        "relocation signed at insn #1 cannot apply to an array element"
    # the whole message: where (a section alone), what, the local type as parsed
    anon_id = next(i for i, t in enumerate(target.types) if not t.name and
                   isinstance(t, T.Union))
    with pytest.raises(CORERelocationError) as e:
        compute(target, CoreRelo(0, anon_id, 0, K.FIELD_BYTE_OFFSET, "0:9"), target,
                section="s")
    assert str(e.value) == f"section 's', insn #0: CO-RE relocation byte_off of union <anon> " \
        f"(0:9): cannot parse access string '0:9' on [{anon_id}] union <anon>: member #9 " \
        f"of anonymous does not exist"


def test_an_element_of_a_root_array_that_changed_type_poisons_its_load() -> None:
    """Elements of a root array are not checked for compatibility (libbpf checks
    members, not elements): a pointer element locally that is a 4-byte int in the
    target keeps its offset, but its load cannot be resized (not pointer to pointer,
    not unsigned int to unsigned int): fail_memsz_adjust."""
    void_ptr = T.Ptr(type=0)
    local = _btf(U32, void_ptr, T.Array(type=2, index_type=1, nelems=4), T.Typedef("arr_t", 3))
    target = _btf(U32, T.Array(type=1, index_type=1, nelems=4), T.Typedef("arr_t", 2))
    r = compute(local, CoreRelo(0, 4, 0, K.FIELD_BYTE_OFFSET, "0:1"), target)
    assert (r.orig_val, r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == \
        (8, 4, 8, 4, True)
    # the same with unsigned ints on both sides is a resized load
    local = _btf(U8, T.Array(type=1, index_type=1, nelems=4), T.Typedef("arr_t", 2))
    r = compute(local, CoreRelo(0, 3, 0, K.FIELD_BYTE_OFFSET, "0:1"), target)
    assert (r.orig_val, r.new_val, r.orig_sz, r.new_sz, r.fail_memsz_adjust) == \
        (1, 4, 1, 4, False)


def test_candidates_are_of_the_local_kind() -> None:
    """A target type of the same name but another kind (a typedef named like the
    struct, of a struct laid out otherwise) is no candidate of the struct, as in
    libbpf: the struct's field is found once, not ambiguously through the typedef."""
    local = _btf(I32, T.Struct("s", 8, [T.Member("a", 1, 0), T.Member("b", 1, 32)]))
    target = _btf(I32, T.Struct("s", 8, [T.Member("a", 1, 0), T.Member("b", 1, 32)]),
                  T.Struct("t", 8, [T.Member("b", 1, 0), T.Member("a", 1, 32)]),
                  T.Typedef("s", 3))
    r = CoreRelocator(local, target)
    assert [i for _, i in r.candidates(2)] == [2]
    assert r.compute(CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET, "0:1")).new_val == 4


def test_a_candidate_that_does_not_match_is_passed_over() -> None:
    """Candidates are tried in order: the first flavour lacking the member does not
    end the search, the next one that has it answers."""
    local = _btf(I32, T.Struct("s", 8, [T.Member("a", 1, 0), T.Member("c", 1, 32)]))
    target = _btf(I32, T.Struct("s", 4, [T.Member("a", 1, 0)]),
                  T.Struct("s___v2", 12, [T.Member("a", 1, 0), T.Member("c", 1, 64)]))
    r = compute(local, CoreRelo(0, 2, 0, K.FIELD_BYTE_OFFSET, "0:1"), target)
    assert (r.new_val, r.poison, r.target_type_id) == (8, False, 3)
