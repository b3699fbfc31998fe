"""rawprobe._records (IntConst, RecordTuple) and the import hygiene they buy:
the ELF/spec/BTF/CO-RE layer imports no typing, enum, re, dataclasses."""
from __future__ import annotations

import copy
import enum
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe.btf.ext import CoreReloKind
from rawprobe.btf.types import Kind
from rawprobe.insn import Insn
from rawprobe import uapi
from rawprobe.sections import AttachType, ProgType
from rawprobe.spec import MapReloc, MapType

ROOT = Path(__file__).resolve().parent.parent


class Colour(enum.IntEnum):
    RED = 1
    GREEN = 2
    ALSO_RED = 1


def test_int_const_behaves_like_int_enum() -> None:
    from rawprobe._records import IntConst

    class C(IntConst):
        RED = 1
        GREEN = 2
        ALSO_RED = 1
    for mine, theirs in ((C.RED, Colour.RED), (C.GREEN, Colour.GREEN)):
        assert mine == theirs == int(theirs) and hash(mine) == hash(theirs)
        assert (mine.name, mine.value) == (theirs.name, theirs.value)
        assert repr(mine) == repr(theirs).replace("Colour", "C")
        assert str(mine) == str(int(theirs)) and f"{mine:#x}" == f"{theirs:#x}"
        assert C(int(theirs)) is mine and isinstance(mine, C) and isinstance(mine, int)
    assert C.ALSO_RED is C.RED and list(C) == [C.RED, C.GREEN] and len(C) == 2
    assert C["GREEN"] is C.GREEN and C["ALSO_RED"] is C.RED and C["GREEN"] == Colour["GREEN"]
    for missing in ("BLUE", "_value2member_", "name", 1):
        with pytest.raises(KeyError):
            C[missing]
    assert max(C) is C.GREEN and C.RED + 1 == 2 and {1: "x"}[C.RED] == "x"
    with pytest.raises(ValueError, match="3 is not a valid"):
        C(3)
    with pytest.raises(ValueError):
        C("RED")


UAPI_CLASSES = [c for c in map(uapi.__dict__.get, uapi.__all__) if isinstance(c, type)]


@pytest.mark.parametrize("cls", [Kind, CoreReloKind, *UAPI_CLASSES])
def test_constant_classes(cls) -> None:
    members = list(cls)
    assert members and all(cls(int(m)) is m and getattr(cls, m.name) is m is cls[m.name]
                           for m in members)
    m = members[-1]
    assert pickle.loads(pickle.dumps(m)) is m and copy.deepcopy(m) is m


def test_one_definition_of_each_kernel_enum() -> None:
    from rawprobe._sys import consts
    assert ProgType is uapi.ProgType is consts.ProgType
    assert AttachType is uapi.AttachType is consts.AttachType
    assert MapType is uapi.MapType is consts.MapType


def test_known_values() -> None:
    assert (Kind.STRUCT, Kind.ENUM64, Kind(19).name) == (4, 19, "ENUM64")
    assert (ProgType.KPROBE, ProgType(26).name) == (2, "TRACING")
    assert (AttachType.TRACE_FENTRY, MapType.RINGBUF, CoreReloKind.TYPE_MATCHES) == \
        (24, 27, 12)


@given(st.tuples(*[st.integers(-2**31, 2**31 - 1)] * 5))
def test_record_tuple_is_a_named_tuple(values) -> None:
    ins = Insn(*values)
    assert tuple(ins) == values and ins == Insn(**dict(zip(Insn._fields, values)))
    assert [getattr(ins, f) for f in Insn._fields] == list(values)
    assert repr(ins) == "Insn(" + ", ".join(f"{f}={v!r}" for f, v in
                                            zip(Insn._fields, values)) + ")"
    assert pickle.loads(pickle.dumps(ins)) == ins and type(copy.copy(ins)) is Insn
    assert Insn._make(values) == ins and ins._replace(imm=7).imm == 7


def test_record_tuple_arguments() -> None:
    r = MapReloc(3, "m", offset=8)
    assert (r.insn, r.map, r.offset) == (3, "m", 8)
    assert sorted([r, MapReloc(1, "m", 0)])[0].insn == 1
    with pytest.raises(TypeError, match="missing argument 'offset'"):
        MapReloc(3, "m")
    with pytest.raises(TypeError, match="takes 3 arguments"):
        MapReloc(1, "m", 0, 5)
    with pytest.raises(TypeError, match="unexpected or repeated"):
        MapReloc(1, "m", 0, insn=2)
    with pytest.raises(AttributeError):
        r.insn = 5                      # type: ignore[misc]


def test_parsing_layer_imports_nothing_heavy(tmp_path) -> None:
    """Parsing an object, reading kernel BTF (its index cached) and computing
    CO-RE pull in none of the standard library's slow imports (each costs
    milliseconds of start-up)."""
    obj = ROOT / "tests" / "bpf" / "core_read.bpf.o"
    code = (
        "import os, sys\n"
        "before = set(sys.modules)\n"
        "from rawprobe.spec import ObjectSpec\n"
        "from rawprobe.btf import core, kernel\n"
        f"spec = ObjectSpec.from_file({str(obj)!r})\n"
        "btf = spec.btf.load_blob()\n"
        "if os.path.exists(kernel.VMLINUX):\n"
        "    r = core.CoreRelocator(spec.btf, kernel.KernelBTF.load())\n"
        "    for p in spec.programs.values():\n"
        "        for relo in p.core_relos:\n"
        "            r.compute(relo)\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAWPROBE_CACHE_DIR=str(tmp_path))
    for _ in range(2):      # the first run builds the kernel BTF index cache
        out = subprocess.run([sys.executable, "-S", "-c", code], env=env, check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout.split()
    heavy = {"typing", "enum", "re", "dataclasses", "inspect", "collections", "functools",
             "importlib", "zlib", "array", "elftools", "cffi", "_cffi_backend"}
    assert not heavy & set(out), sorted(heavy & set(out))
    assert "rawprobe.btf.marshal" not in out        # only needed to sanitise
