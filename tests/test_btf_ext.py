"""BTFExt.from_bytes: func_info, line_info and CO-RE relocations per section."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe.btf import types as T
from rawprobe.btf.ext import BTFExt, CoreRelo, CoreReloKind as K, FuncInfo
from rawprobe.btf.parse import BTFSpec
from rawprobe.errors import BTFError
from test_btf_parse import BPF_DIR, CORE_OBJECTS, elf_sections, mutate, object_btf

READ = BPF_DIR / "core_read.bpf.o"


def ext_of(path):
    btf = object_btf(path)
    return btf, BTFExt.from_bytes(elf_sections(path)[".BTF.ext"], btf)


def test_core_read_ext() -> None:
    btf, ext = ext_of(READ)
    secs = {"raw_tracepoint/sys_enter", "tp_btf/sys_enter"}
    assert set(ext.func_infos) == set(ext.line_infos) == set(ext.core_relos) == secs
    # One function per section, at its start, typed by its FUNC.
    for sec, name in (("raw_tracepoint/sys_enter", "core_probe_read"),
                      ("tp_btf/sys_enter", "core_direct")):
        (fi,) = ext.func_infos[sec]
        assert fi == FuncInfo(0, btf.type_by_name(name, T.Kind.FUNC)[0])
    assert len(ext.core_relos["raw_tracepoint/sys_enter"]) == 44
    assert len(ext.core_relos["tp_btf/sys_enter"]) == 14
    kinds = {r.kind for rs in ext.core_relos.values() for r in rs}
    assert kinds == set(K), "core_read.bpf.c is meant to use all 13 kinds"
    first = ext.core_relos["raw_tracepoint/sys_enter"][0]
    assert first == CoreRelo(first.insn_off, btf.type_by_name("task_struct")[0],
                             first.access_str_off, K.FIELD_BYTE_OFFSET, "0:0")
    for rs in ext.core_relos.values():
        for r in rs:
            assert r.insn_off % 8 == 0
            assert r.access_str == btf.string_at(r.access_str_off)


def test_line_info_matches_the_source() -> None:
    """Each line_info's line text is the source line it names (an independent check)."""
    btf, ext = ext_of(READ)
    src = (BPF_DIR / "core_read.bpf.c").read_text().splitlines()
    n = 0
    for recs in ext.line_infos.values():
        offs = [li.insn_off for li in recs]
        assert offs == sorted(offs)
        for li in recs:
            assert btf.string_at(li.file_name_off).endswith("core_read.bpf.c")
            assert btf.string_at(li.line_off) == src[li.line - 1]
            assert 0 < li.col <= len(src[li.line - 1]) + 1
            n += 1
    assert n > 50


@pytest.mark.parametrize("path", CORE_OBJECTS[:2], ids=lambda p: p.name)
def test_record_sizes(path) -> None:
    _, ext = ext_of(path)
    assert (ext.func_info_rec_size, ext.line_info_rec_size, ext.core_relo_rec_size) == (8, 16, 16)


# -- malformed sections -------------------------------------------------------------

BTF = BTFSpec.from_bytes(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 16, 16, 11)
                         + struct.pack("<IIII", 1, 1 << 24, 4, 32) + b"\0int\0.text\0")
TEXT = 5    # string offset of ".text"


def ext_blob(func=b"", line=b"", core=b"", hdr_len=32) -> bytes:
    areas = [func, line, core][: (hdr_len - 8) // 8]
    offs, body = [], b""
    for a in areas:
        offs += [len(body), len(a)]
        body += a
    hdr = struct.pack("<HBBI", 0xEB9F, 1, 0, hdr_len) + struct.pack(f"<{len(offs)}I", *offs)
    return hdr + body


def area(rec_size: int, *blocks: tuple[int, list[bytes]]) -> bytes:
    out = struct.pack("<I", rec_size)
    for name_off, recs in blocks:
        out += struct.pack("<II", name_off, len(recs)) + b"".join(recs)
    return out


def core_rec(insn_off=0, type_id=1, acc=0, kind=0) -> bytes:
    return struct.pack("<IIII", insn_off, type_id, acc, kind)


def test_hand_made_ext() -> None:
    ext = BTFExt.from_bytes(ext_blob(
        func=area(8, (TEXT, [struct.pack("<II", 16, 1)])),
        core=area(16, (TEXT, [core_rec(8, 1, 0, 8)]))), BTF)
    assert ext.func_infos == {".text": [FuncInfo(16, 1)]}
    assert ext.core_relos == {".text": [CoreRelo(8, 1, 0, K.TYPE_EXISTS, "")]}
    # A pre-LLVM-12 header has no CO-RE area; bigger records keep their known prefix.
    ext = BTFExt.from_bytes(ext_blob(func=area(12, (TEXT, [struct.pack("<III", 8, 1, 7)])),
                                     hdr_len=24), BTF)
    assert ext.func_infos == {".text": [FuncInfo(8, 1)]} and ext.func_info_rec_size == 12


@pytest.mark.parametrize("data, match", [
    (b"\x9f\xeb\x01", "too short"),
    (b"\xeb\x9f\x01\x00" + bytes(28), "big-endian"),
    (b"\x00\x00\x01\x00" + bytes(28), "magic"),
    (b"\x9f\xeb\x02\x00" + bytes(28), "version"),
    (struct.pack("<HBBI", 0xEB9F, 1, 0, 12) + bytes(20), "header length"),
    (ext_blob(func=area(8, (TEXT, [b"\0" * 8])))[:-4], "past the"),
    (ext_blob(func=area(4, (TEXT, [b"\0" * 4]))), "record size"),
    (ext_blob(func=area(10, (TEXT, [b"\0" * 10]))), "record size"),
    (ext_blob(func=b"\x08\0\0"), "too short"),
    (ext_blob(func=area(8) + b"\0\0\0"), "truncated"),
    (ext_blob(func=area(8, (0, [b"\0" * 8]))), "empty section name"),
    (ext_blob(func=area(8, (TEXT, []))), "no records"),
    (ext_blob(func=area(8, (999, [b"\0" * 8]))), "string offset 999"),
    (ext_blob(line=area(16, (TEXT, [b"\0" * 8]))), "runs past"),
    (ext_blob(core=area(16, (TEXT, [core_rec(kind=13)]))), "unknown kind 13"),
    (ext_blob(core=area(16, (TEXT, [core_rec(type_id=2)]))), "missing type id 2"),
    (ext_blob(core=area(16, (TEXT, [core_rec(acc=999)]))), "string offset 999"),
], ids=lambda v: v if isinstance(v, str) else "blob")
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(BTFError, match=match):
        BTFExt.from_bytes(data, BTF)


# -- fuzz ----------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        BTFExt.from_bytes(data, BTF)
    except BTFError:
        pass


@st.composite
def mutated_ext(draw):
    path = draw(st.sampled_from(CORE_OBJECTS[:2]))
    return object_btf(path), mutate(draw, elf_sections(path)[".BTF.ext"], 6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_ext())
def test_fuzz_mutated_real_ext(case) -> None:
    btf, data = case
    try:
        BTFExt.from_bytes(data, btf)
    except BTFError:
        pass
