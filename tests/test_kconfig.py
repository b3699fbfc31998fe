"""__kconfig externs without a kernel: the configuration parser, value encoding
(libbpf's rules), the layout's errors, the kernel version from uname."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawprobe import kconfig as K
from rawprobe.btf import types as T
from rawprobe.btf.parse import BTFSpec
from rawprobe.errors import InvalidValueError, ObjectFormatError


def var(kind: str, size: int, signed: bool = False) -> K.KconfigVar:
    return K.KconfigVar("CONFIG_X", 0, size, kind, signed, False)


def test_parse_config():
    text = ("#\n# Automatically generated file\n#\nCONFIG_A=y\n# CONFIG_B is not set\n"
            "CONFIG_C=\"two words\"\nCONFIG_D=0x10\nNOT_CONFIG=1\nCONFIG_A=n\n")
    assert K.parse_config(text) == {"CONFIG_A": "y", "CONFIG_C": '"two words"',
                                    "CONFIG_D": "0x10"}
    with pytest.raises(InvalidValueError, match=r"cfg, line 2: 'CONFIG_E=' has no value"):
        K.parse_config("CONFIG_A=y\nCONFIG_E=\n", "cfg")
    with pytest.raises(InvalidValueError, match="line 1: 'CONFIG_E' has no value"):
        K.parse_config("CONFIG_E\n", "cfg")


@pytest.mark.parametrize("kind, size, raw, want", [
    ("bool", 1, "y", b"\x01"), ("bool", 1, "n", b"\x00"),
    ("tristate", 4, "y", b"\x01\0\0\0"), ("tristate", 4, "m", b"\x02\0\0\0"),
    ("tristate", 4, "n", b"\0\0\0\0"),
    ("char", 1, "y", b"y"), ("char", 1, "m", b"m"), ("char", 1, "65", b"A"),
    ("int", 4, "250", (250).to_bytes(4, "little")),
    ("int", 8, "0x7fffffffffffffff", (2**63 - 1).to_bytes(8, "little")),
    ("int", 2, "017", (15).to_bytes(2, "little")),
    ("string", 8, '"abc"', b"abc\0\0\0\0\0"),
    ("string", 4, '"abcdef"', b"abc\0"),                      # cut as libbpf cuts it
    ("string", 1, '""', b"\0"),
    ("int", 4, 7, (7).to_bytes(4, "little")), ("bool", 1, 1, b"\x01"),
])
def test_encode(kind, size, raw, want):
    assert K.encode(var(kind, size), raw) == want


def test_encode_signed():
    assert K.encode(var("int", 2, signed=True), "-2") == (-2).to_bytes(2, "little", signed=True)
    assert K.encode(var("int", 8, signed=True), "-1") == b"\xff" * 8


@pytest.mark.parametrize("kind, size, raw, why", [
    ("bool", 1, "m", "is a module"),
    ("int", 4, "y", "is y/n/m"),
    ("string", 4, "y", "is y/n/m"),
    ("int", 4, '"x"', "is a string"),
    ("string", 4, '"x', "not a complete"),
    ("bool", 1, "1", "is a number: declare it an integer"),
    ("tristate", 4, "1", "is a number"),
    ("int", 4, "12abc", "is not a number"),
    ("int", 4, "0x", "is not a number"),
    ("int", 4, "09", "is not a number"),                       # 0... is octal
    ("int", 1, "256", "does not fit"),
    ("int", 2, "-32769", "does not fit 2 signed"),
    ("int", 4, "0x100000000", "does not fit"),
    ("int", 8, "0x10000000000000000", "is not a number"),
    ("bool", 1, 2, "is not 0 or 1"),
    ("tristate", 4, 1, "is a number"),
])
def test_encode_refuses(kind, size, raw, why):
    with pytest.raises(InvalidValueError, match=f"extern 'CONFIG_X' .*: src gives .*{why}"):
        K.encode(var(kind, size, signed="signed" in why), raw, "src")


@given(st.sampled_from([1, 2, 4, 8]), st.booleans(), st.data())
def test_encode_every_integer_in_range(size, signed, data):
    bits = size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    v = data.draw(st.integers(lo, hi))
    kind = "char" if size == 1 else "int"
    out = K.encode(var(kind, size, signed), str(v))
    assert int.from_bytes(out, "little", signed=signed) == v
    assert K.encode(var(kind, size, signed), hex(v) if v >= 0 else str(v)) == out
    with pytest.raises(InvalidValueError):
        K.encode(var(kind, size, signed), str(hi + 1 if size < 8 else 1 << 64))


def _btf(*vars_: tuple[str, T.Type]) -> tuple[BTFSpec, int]:
    """A BTF with one VAR per (name, type) and a .kconfig DATASEC of them."""
    types: list[T.Type] = [T.Void()]
    secinfo = []
    for name, t in vars_:
        types.append(t)
        types.append(T.Var(name, type=len(types) - 1, linkage=T.BTF_VAR_GLOBAL_EXTERN))
        secinfo.append(T.VarSecinfo(len(types) - 1, 0, t.size))
    types.append(T.Datasec(".kconfig", size=0, vars=secinfo))
    return BTFSpec(types, b"\0"), len(types) - 1


U32 = T.Int("unsigned int", size=4, encoding=0, bits=32)


def test_layout_refuses():
    btf, ds = _btf(("CONFIG_A", U32))
    with pytest.raises(ObjectFormatError, match="'CONFIG_A' .* has BTF but no ELF symbol"):
        K.layout(btf, ds, {})
    btf, ds = _btf(("MY_VALUE", U32))
    with pytest.raises(ObjectFormatError, match="'MY_VALUE' .*only CONFIG_\\* .* and LINUX_"):
        K.layout(btf, ds, {"MY_VALUE": True})
    for bad in (T.Int("int3", size=3, encoding=T.BTF_INT_SIGNED, bits=24),
                T.Float("double", size=8), T.Enum("other", size=4, values=[]),
                T.Int("_Bool4", size=4, encoding=T.BTF_INT_BOOL, bits=32)):
        btf, ds = _btf(("CONFIG_A", bad))
        with pytest.raises(ObjectFormatError, match="'CONFIG_A' .*unsupported type"):
            K.layout(btf, ds, {"CONFIG_A": False})


def test_version_code():
    assert K._version("6.18.44-fc-v1252") == (6 << 16) + (18 << 8) + 44
    assert K._version("4.19.260-1 (2022-09-29)") == (4 << 16) + (19 << 8) + 255
    assert K._version("6.1") == 0 and K._version("Linux") == 0
