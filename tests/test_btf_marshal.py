"""marshal.encode: round trips, DATASEC fix-ups, sanitising, and the kernel's verdict."""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe.btf import types as T
from rawprobe.btf.marshal import BTFFeatures, BTFFixups, encode, probe_blob
from rawprobe.btf.parse import BTFSpec
from rawprobe.btf.types import Kind
from rawprobe.errors import BTFError, SyscallError
from test_btf_parse import CORE_OBJECTS, OBJECTS, elf_sections, mutated_blob

FEATURES = [f.name for f in dataclasses.fields(BTFFeatures)]
BTF_OBJECTS = [p for p in OBJECTS if ".BTF" in elf_sections(p)]
# Objects the ELF layer rejects on purpose (legacy maps, a plain extern, a pinned
# inner map): test_spec and test_pinning
# covers them; the load_blob test below takes the others and checks this list.
REJECTED = {"spec_legacy.bpf.o", "spec_extern.bpf.o", "pinning_inner.bpf.o"}


def fixups_from_elf(path: Path) -> BTFFixups:
    """Section sizes and variable offsets straight from the ELF (pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sizes = {s.name: s.data_size for s in elf.iter_sections()}
        offs = {}
        for sym in elf.get_section_by_name(".symtab").iter_symbols():
            if sym["st_info"]["type"] == "STT_OBJECT" and isinstance(sym["st_shndx"], int):
                sec = elf.get_section(sym["st_shndx"]).name
                offs[(sec, sym.name)] = sym["st_value"]
    return BTFFixups(sizes, offs)


def hidden_funcs_static(spec: BTFSpec, path: Path) -> BTFSpec:
    """``spec`` with the BTF FUNC of each hidden global .text function static,
    as libbpf gives it to the kernel (visibility straight from pyelftools)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_index(".text")
        hidden = {sym.name for sym in elf.get_section_by_name(".symtab").iter_symbols()
                  if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] == text
                  and sym["st_info"]["bind"] != "STB_LOCAL"
                  and sym["st_other"]["visibility"] in ("STV_HIDDEN", "STV_INTERNAL")}
    for t in spec.types:
        if isinstance(t, T.Func) and t.name in hidden:
            t.linkage = T.BTF_FUNC_STATIC
    return spec


def fresh_spec(path: Path) -> BTFSpec:
    return BTFSpec.from_bytes(elf_sections(path)[".BTF"])


@pytest.mark.parametrize("path", BTF_OBJECTS, ids=lambda p: p.name)
def test_round_trip(path: Path) -> None:
    spec = fresh_spec(path)
    fx = fixups_from_elf(path)
    out = encode(spec, fixups=fx)
    again = BTFSpec.from_bytes(out)
    assert len(again.types) == len(spec.types)
    assert again.strings.startswith(spec.strings)       # line_info offsets stay valid
    for a, b in zip(spec.types, again.types):
        if isinstance(a, T.Datasec) and a.name in (".kconfig", ".ksyms"):
            assert b.vars == sorted(a.vars, key=lambda v: v.offset)   # libbpf's job
        elif isinstance(a, T.Datasec):
            assert b.size == fx.section_sizes[a.name]
            offs = [v.offset for v in b.vars]
            assert offs == sorted(offs)
            for v in b.vars:
                name = spec.name_of(v.type)
                assert v.offset == fx.var_offsets[(a.name, name)], (a.name, name)
        else:
            assert a == b
    assert encode(again) == out                        # stable, byte for byte
    assert spec.types == fresh_spec(path).types        # encode did not touch its input


def test_rejected_objects_are_rejected() -> None:
    from rawprobe.errors import ObjectFormatError
    from rawprobe.spec import ObjectSpec
    for path in BTF_OBJECTS:
        if path.name in REJECTED:
            with pytest.raises(ObjectFormatError):
                ObjectSpec.from_file(path)


@pytest.mark.parametrize("path", [p for p in BTF_OBJECTS if p.name not in REJECTED],
                         ids=lambda p: p.name)
def test_load_blob_is_encode_without_reencoding(path: Path) -> None:
    """BTFSpec.load_blob (the loader's fast path): the object's own bytes with the
    DATASEC fix-ups (and static __hidden functions) patched in decode to exactly
    what encode() produces, and leave the blob as clang wrote it wherever
    nothing needed fixing."""
    from rawprobe.spec import ObjectSpec
    raw = elf_sections(path)[".BTF"]
    obj = ObjectSpec.from_file(path)            # fills DATASEC sizes and offsets
    if obj.ksyms:       # a type added, others rewritten: re-encoded (test_ksyms)
        assert obj.btf.load_blob() is None
        return
    blob = obj.btf.load_blob()
    assert blob is not None and len(blob) == len(raw)
    assert BTFSpec.from_bytes(blob).types == BTFSpec.from_bytes(encode(obj.btf)).types
    fresh = fresh_spec(path)
    if obj.kconfig:     # .kconfig's layout is not the ELF's but libbpf's: test_load_parity
        return
    assert BTFSpec.from_bytes(blob).types == \
        BTFSpec.from_bytes(encode(hidden_funcs_static(fresh_spec(path), path),
                                  fixups=fixups_from_elf(path))).types
    datasecs = [t for t in fresh.types if isinstance(t, T.Datasec)]
    if not any(t.size == 0 for t in datasecs) and \
            fresh.types == hidden_funcs_static(fresh_spec(path), path).types:
        assert blob == raw


def test_load_blob_declines_what_it_cannot_patch() -> None:
    spec = fresh_spec(CORE_OBJECTS[0])
    assert spec.load_blob() is None              # DATASEC sizes still 0: encode explains
    assert synthetic_spec().load_blob() is None  # not parsed from a blob


@pytest.mark.parametrize("path", CORE_OBJECTS, ids=lambda p: p.name)
def test_kernel_accepts_load_blob(path: Path) -> None:
    from rawprobe.spec import ObjectSpec
    _btf_load(ObjectSpec.from_file(path).btf.load_blob())


def test_missing_fixups_are_explained() -> None:
    spec = fresh_spec(CORE_OBJECTS[0])
    with pytest.raises(BTFError, match="size 0 .*BTFFixups"):
        encode(spec)
    fx = fixups_from_elf(CORE_OBJECTS[0])
    with pytest.raises(BTFError, match="no ELF symbol offset for variable 'out'"):
        encode(spec, fixups=BTFFixups(fx.section_sizes, {}))
    # Plain names work too, and the tuple form.
    plain = {name: off for (_, name), off in fx.var_offsets.items()}
    assert encode(spec, fixups=(fx.section_sizes, plain)) == encode(spec, fixups=fx)


def _kinds(blob: bytes) -> set[Kind]:
    return {t.kind for t in BTFSpec.from_bytes(blob).types[1:]}


FEATURE_KINDS = {
    "func": {Kind.FUNC, Kind.FUNC_PROTO}, "datasec": {Kind.DATASEC, Kind.VAR},
    "float": {Kind.FLOAT}, "decl_tag": {Kind.DECL_TAG}, "type_tag": {Kind.TYPE_TAG},
    "enum64": {Kind.ENUM64},
}


def synthetic_spec() -> BTFSpec:
    """Every kind sanitising touches, in one small BTF."""
    i32 = T.Int("int", size=4, encoding=T.BTF_INT_SIGNED, bits=32)
    types = [
        T.Void(), i32,
        T.FuncProto(type=1, params=[T.Param("x", 1)]),               # 2
        T.Func("f", type=2, linkage=T.BTF_FUNC_GLOBAL),              # 3
        T.Var("v", type=1, linkage=T.BTF_VAR_GLOBAL_ALLOCATED),      # 4
        T.Datasec("?.data.x", size=4, vars=[T.VarSecinfo(4, 0, 4)]),  # 5
        T.Float("double", size=8),                                   # 6
        T.DeclTag("tag", type=4, component_idx=-1),                  # 7
        T.TypeTag("user", type=1),                                   # 8
        T.Ptr(type=8),                                               # 9
        T.Enum64("e64", size=8, signed=True, values=[T.EnumValue("A", -1),
                                                     T.EnumValue("B", 1 << 40)]),  # 10
        T.Enum("e", size=4, signed=True, values=[T.EnumValue("C", -2)]),            # 11
    ]
    return BTFSpec(types, b"\0")


@pytest.mark.parametrize("feature", FEATURES)
def test_sanitise_one_feature(feature: str) -> None:
    spec = synthetic_spec()
    full = BTFSpec.from_bytes(encode(spec))
    assert full.types == spec.types
    feats = dataclasses.replace(BTFFeatures(), **{feature: False})
    out = BTFSpec.from_bytes(encode(spec, kernel_features=feats))
    assert not (_kinds(encode(spec, kernel_features=feats)) & FEATURE_KINDS.get(feature, set()))
    assert len(out.types) == len(spec.types) + (feature == "enum64")
    t = out.types
    if feature == "func":
        assert t[3] == T.Typedef("f", type=2)
        assert t[2] == T.Enum("", size=4, values=[T.EnumValue("x", 1)])
    elif feature == "func_global":
        assert t[3] == T.Func("f", type=2, linkage=T.BTF_FUNC_STATIC)
    elif feature == "datasec":
        assert t[4] == T.Int("v", size=1, bits=8)
        assert t[5] == T.Struct("__data_x", size=4, members=[T.Member("v", 4, 0)])
    elif feature == "qmark_datasec":
        assert t[5].name == "_.data.x" and isinstance(t[5], T.Datasec)
    elif feature == "float":
        assert t[6] == T.Struct("", size=8)
    elif feature == "decl_tag":
        assert t[7] == T.Int("tag", size=1, bits=8)
    elif feature == "type_tag":
        assert t[8] == T.Const("", type=1)
    elif feature == "enum64":
        assert t[12] == T.Int("enum64_placeholder", size=1, bits=8)
        assert t[10] == T.Union("e64", size=8, members=[T.Member("A", 12, 0),
                                                         T.Member("B", 12, 0)])
        assert t[11].signed is False and t[11].values[0].val == (-2 & 0xFFFFFFFF)


# -- the running kernel accepts what we encode -----------------------------------------

def _btf_load(blob: bytes) -> None:
    if os.geteuid() != 0:
        pytest.skip("BPF_BTF_LOAD needs root (or CAP_BPF)")
    from rawprobe._sys import bpf
    log = bytearray(1 << 16)
    try:
        bpf.btf_load(blob, 1, log).close()
    except SyscallError as e:
        text = bytes(log).rstrip(b"\0").decode(errors="replace")
        raise AssertionError(f"{e}\n{text[-1500:]}") from None




# The first kernel release with each feature.
SINCE = {"func": (5, 0), "datasec": (5, 2), "func_global": (5, 6), "float": (5, 13),
         "decl_tag": (5, 16), "type_tag": (5, 17), "enum64": (6, 0), "qmark_datasec": (6, 9)}


def _kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert m, os.uname().release
    return int(m[1]), int(m[2])


@pytest.mark.parametrize("feature", FEATURES)
def test_kernel_probe_blobs(feature: str) -> None:
    """A probe blob loads exactly when the running kernel is new enough."""
    if _kernel_version() >= SINCE[feature]:
        _btf_load(probe_blob(feature))
    else:
        with pytest.raises(AssertionError, match="BPF_BTF_LOAD"):
            _btf_load(probe_blob(feature))


def _running_features() -> BTFFeatures:
    return BTFFeatures(**{f: _kernel_version() >= v for f, v in SINCE.items()})


@pytest.mark.parametrize("path", CORE_OBJECTS, ids=lambda p: p.name)
@pytest.mark.parametrize("features", ["running", "none"])
def test_kernel_accepts(path: Path, features: str) -> None:
    feats = _running_features() if features == "running" else BTFFeatures.none()
    _btf_load(encode(fresh_spec(path), fixups=fixups_from_elf(path), kernel_features=feats))


# The order kernels gained them; a real kernel has a prefix of this list.
BY_VERSION = sorted(SINCE, key=SINCE.__getitem__)


@pytest.mark.parametrize("known", range(len(BY_VERSION) + 1))
def test_kernel_accepts_sanitised_synthetic(known: int) -> None:
    """What an older kernel would get (one with the first `known` features) is still
    valid BTF for this one."""
    assert sorted(BY_VERSION) == sorted(FEATURES)
    if known and SINCE[BY_VERSION[known - 1]] > _kernel_version():
        pytest.skip(f"the running kernel predates {BY_VERSION[known - 1]}")
    feats = BTFFeatures(**{f: i < known for i, f in enumerate(BY_VERSION)})
    _btf_load(encode(synthetic_spec(), kernel_features=feats))


def test_probe_blob_unknown() -> None:
    with pytest.raises(ValueError, match="unknown BTF feature"):
        probe_blob("nope")


# -- fuzz: whatever parses, encodes and parses again --------------------------------

class _Anything(Mapping):
    def __getitem__(self, key):
        return 64

    def __contains__(self, key) -> bool:
        return True

    def get(self, key, default=None):
        return 0

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_blob(), st.sampled_from([None, BTFFeatures.none()]))
def test_fuzz_encode(data: bytes, feats) -> None:
    try:
        spec = BTFSpec.from_bytes(data)
    except BTFError:
        return
    try:
        out = encode(spec, fixups=BTFFixups(_Anything(), _Anything()), kernel_features=feats)
    except BTFError:
        return
    BTFSpec.from_bytes(out)
