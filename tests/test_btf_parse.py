"""BTFSpec.from_bytes on committed objects, hand-made broken blobs and fuzz.

Also home of the small helpers the other BTF/CO-RE tests import
(`object_btf`, `blob`): section extraction uses pyelftools directly so these
tests do not depend on rawprobe's own ELF layer.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe.btf import types as T
from rawprobe.btf.parse import BTFSpec, essential_name
from rawprobe.btf.types import Kind
from rawprobe.errors import BTFError, NotFoundError

BPF_DIR = Path(__file__).parent / "bpf"
OBJECTS = sorted(BPF_DIR.glob("*.bpf.o"))
CORE_OBJECTS = [BPF_DIR / f"core_{n}.bpf.o" for n in ("read", "local", "target", "array")]


@lru_cache(maxsize=None)
def elf_sections(path: Path) -> dict[str, bytes]:
    """name -> contents of every section of an ELF object (pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        return {s.name: s.data() for s in elf.iter_sections() if s.header.sh_type != "SHT_NOBITS"}


@lru_cache(maxsize=None)
def object_btf(path: Path) -> BTFSpec:
    """The object's parsed .BTF (shared: do not mutate it)."""
    return BTFSpec.from_bytes(elf_sections(path)[".BTF"])


def blob(types: bytes, strings: bytes = b"\0", *, hdr_len: int = 24) -> bytes:
    """A BTF blob with the given raw type and string sections."""
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(types), len(types),
                      len(strings))
    return hdr.ljust(hdr_len, b"\0") + types + strings


def rec(name_off: int, kind: int, vlen: int = 0, size_or_type: int = 0, kflag: int = 0) -> bytes:
    return struct.pack("<III", name_off, kflag << 31 | kind << 24 | vlen, size_or_type)


INT_REC = rec(1, Kind.INT, 0, 4) + struct.pack("<I", 1 << 24 | 32)   # "int", signed 32 bits
INT_STRINGS = b"\0int\0"


# -- committed objects ------------------------------------------------------------

@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_every_committed_object_parses(path: Path) -> None:
    secs = elf_sections(path)
    if ".BTF" not in secs:
        pytest.skip(f"{path.name} has no .BTF section")
    spec = BTFSpec.from_bytes(secs[".BTF"])
    assert isinstance(spec.types[0], T.Void)
    for i in range(1, len(spec.types)):
        assert spec.type_by_id(i) is spec.types[i]


def test_core_read_types() -> None:
    spec = object_btf(BPF_DIR / "core_read.bpf.o")
    tid, ts = spec.type_by_name("task_struct", Kind.STRUCT)
    assert isinstance(ts, T.Struct) and spec.types_by_name("task_struct") == [tid]
    names = [m.name for m in ts.members]
    assert names[:5] == ["pid", "tgid", "real_parent", "mm", "comm"]
    pid = ts.members[0]
    assert spec.name_of(pid.type) == "pid_t"
    assert isinstance(spec.type_by_id(spec.resolve(pid.type)), T.Int)
    assert spec.size_of(pid.type) == 4
    comm = ts.members[4]
    assert spec.size_of(comm.type) == 16 and comm.offset == 24 * 8
    in_execve = ts.members[6]
    assert in_execve.name == "in_execve" and in_execve.bitfield_size == 1
    assert spec.size_of(ts.members[2].type) == 8                  # a pointer
    # The ___flavour structs are separate types with their own names.
    assert spec.type_by_name("task_struct___old")[1].members[0].name == "state"
    assert spec.essential_ids("task_struct") == sorted(
        spec.types_by_name("task_struct") + spec.types_by_name("task_struct___old")
        + spec.types_by_name("task_struct___new"))
    _, e = spec.type_by_name("perf_callchain_context")
    assert isinstance(e, T.Enum64) and e.values[0].val == 0xFFFFFFFFFFFFFF80
    with pytest.raises(NotFoundError):
        spec.type_by_name("no_such_type")
    with pytest.raises(NotFoundError):
        spec.type_by_name("task_struct", Kind.UNION)


def test_datasec_and_vars() -> None:
    spec = object_btf(BPF_DIR / "core_read.bpf.o")
    _, bss = spec.type_by_name(".bss", Kind.DATASEC)
    assert isinstance(bss, T.Datasec)
    assert [spec.name_of(v.type) for v in bss.vars] == ["out", "direct_out"]
    _, rodata = spec.type_by_name(".rodata", Kind.DATASEC)
    var = spec.type_by_id(rodata.vars[0].type)
    assert isinstance(var, T.Var) and var.name == "target_tgid"
    assert var.linkage == T.BTF_VAR_GLOBAL_ALLOCATED


def test_signed_enum_and_func() -> None:
    spec = object_btf(BPF_DIR / "core_target.bpf.o")
    _, color = spec.type_by_name("color")
    assert isinstance(color, T.Enum) and color.signed
    assert [(v.name, v.val) for v in color.values] == [("RED", 1), ("GREEN", 5), ("BLUE", -3)]
    local = object_btf(BPF_DIR / "core_local.bpf.o")
    fid, func = local.type_by_name("fields", Kind.FUNC)
    proto = local.type_by_id(func.type)
    assert isinstance(proto, T.FuncProto) and [p.name for p in proto.params] == ["t"]
    assert func.linkage == T.BTF_FUNC_GLOBAL


@pytest.mark.parametrize("name, want", [
    ("task_struct", "task_struct"), ("task_struct___old", "task_struct"),
    ("a___b___c", "a___b"), ("a____b", "a____b"), ("___x", "___x"), ("x___", "x___"),
    ("f___b_", "f"), ("", ""),
])
def test_essential_name(name: str, want: str) -> None:
    assert essential_name(name) == want


# -- malformed blobs: each gets a BTFError with a useful message -------------------

def test_minimal_blob() -> None:
    spec = BTFSpec.from_bytes(blob(INT_REC, INT_STRINGS))
    assert spec.types[1] == T.Int("int", size=4, encoding=T.BTF_INT_SIGNED, bits=32)


@pytest.mark.parametrize("data, match", [
    (b"", "shorter than"),
    (b"\x9f\xeb\x01\x00", "shorter than"),
    (blob(b"")[:-1], "truncated|empty|NUL"),
    (b"\xeb\x9f" + blob(b"")[2:], "big-endian"),
    (b"\x00\x00" + blob(b"")[2:], "magic"),
    (blob(b"")[:2] + b"\x02" + blob(b"")[3:], "version"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 8, 0, 0, 0, 1) + b"\0", "header length"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 100) + b"\0", "truncated"),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 2, 0, 0, 1) + b"\0", "aligned"),
    (blob(b"", hdr_len=32)[:24] + b"\1" + blob(b"", hdr_len=32)[25:], "unknown non-zero"),
    (blob(b"", b"x\0"), "start with the empty string"),
    (blob(b"", b"\0x"), "end with a NUL"),
    (blob(b"", b""), "empty"),
    (blob(rec(0, 0)), "unknown kind 0"),
    (blob(rec(0, 25)), "unknown kind 25"),
    (blob(rec(0, Kind.STRUCT, 3, 4)), "runs past the end"),
    (blob(INT_REC[:-2], INT_STRINGS), "runs past the end"),
    (blob(rec(99, Kind.PTR, 0, 0)), "string offset 99"),
    (blob(rec(1, Kind.PTR, 0, 0), b"\0\xff\0"), "UTF-8"),
    (blob(rec(0, Kind.PTR, 0, 5)), "refers to type id 5"),
    (blob(rec(0, Kind.TYPEDEF, 0, 1)), "loop"),
    (blob(rec(0, Kind.CONST, 0, 2) + rec(0, Kind.VOLATILE, 0, 1)), "loop"),
    (blob(rec(0, Kind.PTR, 0, 1)), "loop"),
], ids=lambda v: v if isinstance(v, str) else "blob")
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(BTFError, match=match):
        BTFSpec.from_bytes(data)


def test_pointer_cycle_through_struct_is_fine() -> None:
    # struct s { struct s *next; }: a loop, but through a struct, as in every list.
    strings = b"\0s\0next\0"
    types = rec(1, Kind.STRUCT, 1, 8) + struct.pack("<III", 3, 2, 0) + rec(0, Kind.PTR, 0, 1)
    spec = BTFSpec.from_bytes(blob(types, strings))
    assert spec.size_of(1) == 8 and spec.types[1].members[0].name == "next"


def test_lookup_errors() -> None:
    spec = BTFSpec.from_bytes(blob(INT_REC, INT_STRINGS))
    with pytest.raises(BTFError):
        spec.type_by_id(2)
    with pytest.raises(BTFError):
        spec.type_by_id(-1)
    with pytest.raises(BTFError, match="no size"):
        spec.size_of(0)


def test_split_btf_on_a_base() -> None:
    base = BTFSpec.from_bytes(blob(INT_REC, INT_STRINGS))
    # Split blob: type id 2 = PTR to base's int; its name "p" at offset len(base strings).
    split = BTFSpec.from_bytes(blob(rec(len(INT_STRINGS), Kind.PTR, 0, 1), b"p\0"), base=base)
    assert split.types[2] == T.Ptr("p", type=1)
    assert split.name_of(1) == "int"
    assert split.types_by_name("p") == [2]


# -- fuzz: only BTFError ever escapes ----------------------------------------------

def _real_blobs() -> list[bytes]:
    out = []
    for p in CORE_OBJECTS:
        out.append(elf_sections(p)[".BTF"])
    return out


def check_only_btf_error(fn, data: bytes) -> None:
    try:
        fn(data)
    except BTFError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    check_only_btf_error(BTFSpec.from_bytes, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_after_valid_header(body: bytes) -> None:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body) // 2, len(body) // 2,
                      len(body) - len(body) // 2)
    check_only_btf_error(BTFSpec.from_bytes, hdr + body)


def mutate(draw, data: bytes, max_steps: int = 8) -> bytes:
    """A few random edits of ``data``: bytes, whole u32 fields, truncation, insertion."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_steps))):
        if not buf:
            break
        pos = draw(st.integers(0, len(buf) - 1))
        how = draw(st.sampled_from(["byte", "u32", "truncate", "insert"]))
        if how == "byte":
            buf[pos] = draw(st.integers(0, 255))
        elif how == "u32" and pos + 4 <= len(buf):
            struct.pack_into("<I", buf, pos, draw(st.sampled_from(
                [0, 1, 13, 0xFFFF, 0x0400FFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(buf)])))
        elif how == "truncate":
            del buf[pos:]
        elif how == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


@st.composite
def mutated_blob(draw) -> bytes:
    blobs = _real_blobs()
    return mutate(draw, blobs[draw(st.integers(0, len(blobs) - 1))])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_blob())
def test_fuzz_mutated_real_blobs(data: bytes) -> None:
    def parse_and_use(d: bytes) -> None:
        spec = BTFSpec.from_bytes(d)
        for i in range(len(spec.types)):     # lookups on whatever parsed stay in BTFError
            for fn in (spec.resolve, spec.size_of, spec.name_of):
                try:
                    fn(i)
                except BTFError:
                    pass
    check_only_btf_error(parse_and_use, data)
