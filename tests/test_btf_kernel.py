"""KernelBTF: the lazily indexed vmlinux BTF, its on-disk index cache, fuzz.

The oracle for the running kernel's BTF is `bpftool btf dump` (raw format),
parsed here with a regex: independent of rawprobe's decoder.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe.btf import kernel as K
from rawprobe.btf import types as T
from rawprobe.btf.kernel import KernelBTF
from rawprobe.btf.parse import BTFSpec, essential_name
from rawprobe.btf.types import Kind
from rawprobe.errors import BTFError, NotFoundError, NotSupportedError
from test_btf_parse import (CORE_OBJECTS, INT_REC, INT_STRINGS, blob, elf_sections, mutate,
                             rec)

VMLINUX = Path("/sys/kernel/btf/vmlinux")
needs_vmlinux = pytest.mark.skipif(not os.access(VMLINUX, os.R_OK),
                                   reason="no readable /sys/kernel/btf/vmlinux "
                                          "(CONFIG_DEBUG_INFO_BTF, root)")

_HEAD = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_MEMBER = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?")
_ENUMVAL = re.compile(r"^\t'([^']*)' val=(-?\d+)")


@lru_cache(maxsize=4)
def bpftool_dump(path: Path = VMLINUX) -> dict[int, dict]:
    """id -> {kind, name, rest, members: [(name, type_id, bits_offset, bitfield_size)],
    values: {enumerator: value}}; split BTF (a module's) is dumped on vmlinux, an
    object file's BTF alone."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    module = path.parent == VMLINUX.parent and path != VMLINUX
    base = ["--base-btf", str(VMLINUX)] if module else []
    text = subprocess.run(["bpftool", *base, "btf", "dump", "file", str(path)], check=True,
                          capture_output=True, text=True).stdout
    types: dict[int, dict] = {}
    cur: dict = {}
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = {"kind": m[2], "name": m[3], "rest": m[4], "members": [], "values": {}}
            types[int(m[1])] = cur
            continue
        m = _MEMBER.match(line)
        if m:
            cur["members"].append((m[1], int(m[2]), int(m[3]), int(m[4] or 0)))
            continue
        m = _ENUMVAL.match(line)
        if m:
            cur["values"][m[1]] = int(m[2])
    return types


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(d))
    return d


def fresh(path: Path = VMLINUX, cache: bool = True) -> KernelBTF:
    """A new KernelBTF (not the per-process one) so the cache is exercised."""
    return KernelBTF(K._map_file(str(path)), path=str(path), use_cache=cache)


def indexed(path: Path = VMLINUX) -> KernelBTF:
    """A new KernelBTF with its full index (built and cached, or read)."""
    kb = fresh(path)
    kb.index()
    return kb


# -- against bpftool ------------------------------------------------------------------

@needs_vmlinux
def test_ids_kinds_and_names_match_bpftool(cache_dir) -> None:
    dump = bpftool_dump()
    kb = fresh()
    assert len(kb) == max(dump) + 1
    rnd = random.Random(1234)
    sample = rnd.sample(sorted(dump), 1500) + [1, max(dump)]
    for i in sample:
        t = kb.type_by_id(i)
        assert (t.kind.name, t.name) == (dump[i]["kind"], dump[i]["name"].replace("(anon)", "")), i
        if dump[i]["members"] and isinstance(t, (T.Struct, T.Union)):
            assert [(m.name or "(anon)", m.type, m.offset, m.bitfield_size)
                    for m in t.members] == dump[i]["members"]


@needs_vmlinux
def test_name_lookups_match_bpftool(cache_dir) -> None:
    dump = bpftool_dump()
    by_name: dict[str, list[int]] = {}
    for i, d in dump.items():
        if d["name"] != "(anon)":
            by_name.setdefault(d["name"], []).append(i)
    kb = fresh()
    rnd = random.Random(99)
    names = rnd.sample(sorted(by_name), 400) + ["task_struct", "pid_t", "int", "list_head"]
    for name in names:
        assert kb.types_by_name(name) == by_name[name], name
    # Flavoured names in the kernel itself (rare) are found by their essential name.
    flavoured = [n for n in by_name if essential_name(n) != n]
    for name in flavoured[:20]:
        ess = essential_name(name)
        want = sorted(i for n, ids in by_name.items() if essential_name(n) == ess for i in ids)
        assert kb.essential_ids(ess) == want
    assert kb.types_by_name("rawprobe_no_such_type") == []
    assert kb.types_by_name("") == []
    with pytest.raises(NotFoundError):
        kb.type_by_name("rawprobe_no_such_type")


@needs_vmlinux
def test_every_name_finds_exactly_its_records(cache_dir, monkeypatch) -> None:
    """Differential, over vmlinux: the full index (built here, then read back
    from the cache) gives for every name offset the ids whose record header
    bears it (read here with struct, one by one), ascending; a lazy first start
    (scans, no index) gives the same for a sample of them -- names borne by
    several records, function names (deep in the section), other type names at
    random -- and nothing for member names that name no type."""
    built = fresh()
    assert not built._from_cache and not built.indexed
    built.index()
    cached = fresh()
    assert cached._from_cache and cached.indexed
    want: dict[int, list[int]] = {}
    funcs = []
    for k, off in enumerate(built.offsets):
        name_off, info = struct.unpack_from("<II", built._buf, built._ts + 4 * off)
        if name_off:
            want.setdefault(name_off, []).append(built.first_id + k)
            if (info >> 24) & 0x1F == Kind.FUNC:
                funcs.append(name_off)
    for kb in (built, cached):
        for name_off, ids in want.items():
            assert kb._ids_named(name_off) == ids, name_off
    several = [o for o, ids in want.items() if len(ids) > 1]
    assert several and funcs
    rnd = random.Random(7)
    sample = (rnd.sample(several, 40) + rnd.sample(funcs, 4)
              + rnd.sample(sorted(set(want) - set(funcs)), 200))
    ts = built.type_by_id(built.type_by_name("task_struct")[0])
    others = [o for o in (built._name_offset(m.name) for m in ts.members if m.name)
              if o not in want]
    assert others
    monkeypatch.setattr(K, "_LAZY_SCANS", 1 << 30)
    lazy = fresh(cache=False)
    for name_off in sample + others:
        if lazy.indexed:                    # a deep record finished the walk
            lazy = fresh(cache=False)
        assert lazy._ids_named(name_off) == want.get(name_off, []), name_off


@needs_vmlinux
def test_a_first_start_walks_only_as_far_as_it_must(cache_dir) -> None:
    """A lazy start finds task_struct and decodes its members' types having
    walked a small part of the section and without building or caching the full
    index; a record past half the section (a function) completes and caches
    it; many lookups switch to the index too."""
    kb = fresh()
    tid, ts = kb.type_by_name("task_struct", Kind.STRUCT)
    for m in ts.members:
        kb.size_of(m.type)
    assert not kb.indexed and kb._walked < len(kb._words) // 4
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    fid = kb.types_by_name("do_exit")[-1]
    assert isinstance(kb.type_by_id(fid), T.Func) and kb.indexed
    assert fresh()._from_cache
    many = fresh(cache=False)
    for i in range(1, 200):
        many.types_by_name(many.type_by_id(i).name or "int")
    assert many.indexed


@needs_vmlinux
def test_task_struct_members(cache_dir) -> None:
    dump = bpftool_dump()
    kb = fresh()
    tid, ts = kb.type_by_name("task_struct", Kind.STRUCT)
    assert f"size={ts.size} " in dump[tid]["rest"] + " "
    by = {m.name: m for m in ts.members}
    assert kb.name_of(by["pid"].type) == "pid_t"
    assert kb.size_of(by["pid"].type) == 4 and kb.size_of(by["comm"].type) == 16
    assert isinstance(kb.type_by_id(kb.resolve(by["pid"].type)), T.Int)
    assert kb.types[tid] is ts and kb.types[-1] == kb.type_by_id(len(kb) - 1)


# -- the index cache ------------------------------------------------------------------

@needs_vmlinux
def test_index_cache_round_trip(cache_dir) -> None:
    first = indexed()
    assert not first._from_cache
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].stat().st_size > 4 * len(first)
    second = fresh()
    assert second._from_cache
    assert list(second.offsets) == list(first.offsets)
    assert second.type_by_name("task_struct") == first.type_by_name("task_struct")
    assert second.essential_ids("task_struct") == first.essential_ids("task_struct")


@needs_vmlinux
def test_stale_or_corrupt_cache_is_rebuilt(cache_dir) -> None:
    indexed()
    (path,) = cache_dir.iterdir()
    data = bytearray(path.read_bytes())
    # Layout (kernel._write_index): magic, 4 u32 counts, key, padding, offsets[].
    klen = struct.unpack_from("<I", data, len(K._INDEX_MAGIC))[0]
    offs_start = K._align8(len(K._INDEX_MAGIC) + 16 + klen)
    tid, _ = fresh().type_by_name("task_struct")
    pos = offs_start + 4 * (tid - 1)            # offsets[i] is type i + 1
    struct.pack_into("<I", data, pos, struct.unpack_from("<I", data, pos)[0] + 3)
    path.write_bytes(bytes(data))
    kb = fresh()
    assert kb._from_cache
    assert kb.type_by_id(tid).name == "task_struct"      # detected, rebuilt, retried
    assert not kb._from_cache
    assert fresh()._from_cache                          # and rewritten for next time


@needs_vmlinux
def test_a_cache_file_others_may_write_is_not_used(cache_dir) -> None:
    indexed()
    (path,) = cache_dir.iterdir()
    assert fresh()._from_cache
    os.chmod(path, 0o666)
    assert not fresh()._from_cache


@needs_vmlinux
def test_cache_for_another_kernel_is_ignored(cache_dir, monkeypatch) -> None:
    indexed()
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release + "-other",
                            real.version, real.machine))
    monkeypatch.setattr(K.os, "uname", lambda: fake)
    assert not fresh()._from_cache


@needs_vmlinux
def test_unwritable_cache_dir_is_fine(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(blocker / "sub"))
    kb = fresh()
    assert kb.type_by_name("task_struct")[1].name == "task_struct"
    kb.index()
    assert kb.type_by_name("task_struct")[1].name == "task_struct"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "")
    assert K.cache_dir() is None


def test_cache_dir_default_locations(monkeypatch) -> None:
    """Where caches go without RAWPROBE_CACHE_DIR (the test session sets its own,
    see conftest.py): only the environment of this test changes, nothing is written."""
    from rawprobe import _cache
    monkeypatch.delenv("RAWPROBE_CACHE_DIR")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert _cache.cache_dir() == "/var/cache/rawprobe"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert _cache.cache_dir() == "/xdg/rawprobe"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/someone")
    assert _cache.cache_dir() == "/home/someone/.cache/rawprobe"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "/elsewhere")
    assert _cache.cache_dir() == "/elsewhere"


def test_the_session_caches_in_a_directory_of_its_own() -> None:
    """conftest.py's hermeticity: tests and the processes they start cache in a
    fresh temporary directory, not in the machine's."""
    import subprocess
    import sys
    import tempfile
    d = os.environ["RAWPROBE_CACHE_DIR"]
    assert Path(d).parent == Path(tempfile.gettempdir())
    assert Path(d).name.startswith("rawprobe-test-cache-")
    child = subprocess.run([sys.executable, "-c", "from rawprobe._cache import cache_dir; "
                            "print(cache_dir())"], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parent.parent).stdout.strip()
    assert child == d


@needs_vmlinux
def test_read_fallback_without_mmap(cache_dir, monkeypatch) -> None:
    """Kernels before 6.16 refuse to mmap /sys/kernel/btf/vmlinux: read() it instead."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    with_mmap = fresh()
    monkeypatch.setattr(K.mmap, "mmap", refuse)
    buf = K._map_file(str(VMLINUX))
    assert isinstance(buf, bytes) and len(buf) == VMLINUX.stat().st_size
    kb = KernelBTF(buf, path=str(VMLINUX), use_cache=False)
    assert kb.type_by_name("task_struct") == with_mmap.type_by_name("task_struct")


@needs_vmlinux
def test_load_is_per_process() -> None:
    assert KernelBTF.load() is KernelBTF.load()


def test_missing_file(tmp_path) -> None:
    with pytest.raises(NotSupportedError, match="no BTF"):
        KernelBTF.load(str(tmp_path / "nope"))
    with pytest.raises(NotFoundError, match="module"):
        KernelBTF.load_module("rawprobe_no_such_module", base=KernelBTF.from_bytes(
            blob(INT_REC, INT_STRINGS)))


@pytest.mark.vm("module_btf")
def test_real_module_btf_matches_bpftool() -> None:
    """Split BTF as the kernel ships it: every loaded module's own types (ids after
    vmlinux's) against bpftool's dump of the same file on top of vmlinux."""
    mods = sorted(p.name for p in VMLINUX.parent.iterdir() if p.name != "vmlinux")
    base = KernelBTF.load()
    checked = 0
    for mod in mods:
        kb = KernelBTF.load_module(mod)
        dump = bpftool_dump(VMLINUX.parent / mod)
        assert len(kb) == max(dump) + 1 and min(dump) == len(base), mod
        for i in sorted(dump):
            t = kb.type_by_id(i)
            assert (t.kind.name, t.name) == (dump[i]["kind"],
                                             dump[i]["name"].replace("(anon)", "")), (mod, i)
            if dump[i]["members"] and isinstance(t, (T.Struct, T.Union)):
                assert [(m.name or "(anon)", m.type, m.offset, m.bitfield_size)
                        for m in t.members] == dump[i]["members"], (mod, i)
            checked += 1
        # lookups by name reach the module's own types and vmlinux's
        own = next(d["name"] for i, d in sorted(dump.items()) if d["name"] != "(anon)")
        assert any(i >= len(base) for i in kb.types_by_name(own)), (mod, own)
        assert kb.types_by_name("task_struct") == base.types_by_name("task_struct")
    assert checked > 100, (mods, checked)


# -- same answers as BTFSpec on committed objects; split BTF ---------------------------

@pytest.mark.parametrize("path", CORE_OBJECTS, ids=lambda p: p.name)
def test_agrees_with_btfspec(path) -> None:
    data = elf_sections(path)[".BTF"]
    spec, kb = BTFSpec.from_bytes(data), KernelBTF.from_bytes(data)
    assert len(kb) == len(spec.types)
    for i, t in enumerate(spec.types):
        assert kb.type_by_id(i) == t
        if t.name:
            assert kb.types_by_name(t.name) == spec.types_by_name(t.name)
            assert kb.essential_ids(essential_name(t.name)) == \
                spec.essential_ids(essential_name(t.name))
    dump = bpftool_dump(path)
    for i in range(len(spec.types)):
        want = bpftool_size(dump, i)
        assert _size_or_error(kb, i) == _size_or_error(spec, i) == want, (path.name, i, want)


def _size_or_error(btf, i) -> int | None:
    """The type's size, or None for a type without one (void, a function...)."""
    try:
        return btf.size_of(i)
    except BTFError:
        return None


_SIZE = re.compile(r"\bsize=(\d+)")
_TYPE_ID = re.compile(r"\btype_id=(\d+)")
_NELEMS = re.compile(r"\bnr_elems=(\d+)")


def bpftool_size(dump: dict[int, dict], i: int) -> int | None:
    """What the kernel's btf_resolve_size gives for type ``i``, from bpftool's dump:
    sizes of sized kinds, 8 for pointers, arrays times their length, through
    typedefs, modifiers, variables and tags; None for the rest (void, fwd, func)."""
    n = 1
    while i != 0:
        d = dump[i]
        if d["kind"] in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "FLOAT", "DATASEC"):
            return n * int(_SIZE.search(d["rest"])[1])
        if d["kind"] == "PTR":
            return n * 8
        if d["kind"] == "ARRAY":
            n *= int(_NELEMS.search(d["rest"])[1])
        elif d["kind"] not in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG", "VAR",
                               "DECL_TAG"):
            return None
        i = int(_TYPE_ID.search(d["rest"])[1])
    return None


def test_split_module_btf() -> None:
    base = KernelBTF.from_bytes(blob(INT_REC, INT_STRINGS))
    strings = b"p\0int___mod\0"
    split = blob(rec(len(INT_STRINGS), Kind.PTR, 0, 1)
                 + rec(len(INT_STRINGS) + 2, Kind.TYPEDEF, 0, 1), strings)
    mod = KernelBTF.from_bytes(split, base=base)
    assert mod.first_id == 2 and len(mod) == 4
    assert mod.type_by_id(2) == T.Ptr("p", type=1)
    assert mod.type_by_id(1) == T.Int("int", size=4, encoding=1, bits=32)
    assert mod.types_by_name("p") == [2] and mod.types_by_name("int") == [1]
    assert mod.essential_ids("int") == [1, 3]
    # A module type may take its name from the base's string table.
    mod = KernelBTF.from_bytes(blob(rec(1, Kind.TYPEDEF, 0, 1), b"\0"), base=base)
    assert mod.types_by_name("int") == [1, 2]
    assert mod.type_by_id(2) == T.Typedef("int", type=1)


# -- fuzz: KernelBTF over a temp file only raises BTFError ------------------------------

def _exercise(kb: KernelBTF) -> None:
    for i in range(len(kb)):
        for fn in (kb.type_by_id, kb.resolve, kb.size_of):
            try:
                fn(i)
            except BTFError:
                pass
    for name in ("int", "thing", "task_struct", "pt", "color"):
        kb.types_by_name(name)
        kb.essential_ids(name)


_counter = iter(range(1 << 30))


@st.composite
def kernelish_blob(draw) -> bytes:
    src = draw(st.sampled_from(CORE_OBJECTS))
    return mutate(draw, elf_sections(src)[".BTF"], 6)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(kernelish_blob(), st.binary(max_size=300)))
def test_fuzz_kernel_btf_file(tmp_path, data: bytes) -> None:
    # A new file each time: never shrink a file an older mapping may still cover.
    path = tmp_path / f"btf{next(_counter)}"
    path.write_bytes(data)
    try:
        _exercise(KernelBTF(K._map_file(str(path)), path=str(path), use_cache=False))
    except BTFError:
        pass
