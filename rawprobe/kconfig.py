"""``__kconfig`` externs: their place in the ``.kconfig`` map, and their values.

An object may declare ``extern <type> NAME __kconfig;`` (``__weak`` optional)
and read it like a constant.  libbpf's convention, which this module follows:

* names: ``CONFIG_*`` come from the kernel's build configuration; ``LINUX_*``
  are "virtual", computed by the loader (``LINUX_KERNEL_VERSION``,
  ``LINUX_HAS_BPF_COOKIE``, ``LINUX_HAS_SYSCALL_WRAPPER``; see
  ``rawprobe.collection``).  Any other name is an error.
* types: ``bool`` (1 byte), ``char`` (any 1-byte integer), integers of 2, 4
  or 8 bytes, ``enum libbpf_tristate`` (TRI_NO 0, TRI_YES 1, TRI_MODULE 2),
  and ``char[N]`` strings.
* layout: one ARRAY map ``.kconfig`` with a single value holding every
  extern, ordered by alignment (largest first), then size (smallest first),
  then name, each at the next offset its alignment allows; the value is the
  sum, unpadded.  The map is read-only for programs (BPF_F_RDONLY_PROG),
  mmapable, and frozen once filled.  Its BTF value type is the object's
  ``.kconfig`` DATASEC with those offsets and the VARs made "allocated"
  (the kernel refuses extern VARs).
* values: ``CONFIG_X=y|n|m`` for bool/tristate/char, ``"..."`` for strings (cut
  to N-1 bytes and a NUL), numbers (C syntax: decimal, 0x hex, 0 octal) for
  integers and chars; ``# CONFIG_X is not set`` means absent.  An absent
  ``__weak`` extern reads 0; an absent strong one fails the load.

The configuration comes from ``/proc/config.gz`` (CONFIG_IKCONFIG_PROC),
else ``/boot/config-$(uname -r)``: the running kernel's own first, where
libbpf reads ``/boot`` first.  Everything here but :func:`read_system_config`
and :func:`kernel_version_code` is kernel-independent.
"""
from __future__ import annotations

import os

from ._records import RecordTuple
from .errors import InvalidValueError, NotSupportedError, ObjectFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Union

    from .btf.parse import BTFSpec

__all__ = ["KconfigVar", "layout", "parse_config", "encode", "read_system_config",
           "kernel_version_code", "config_paths", "TRI_NO", "TRI_YES", "TRI_MODULE"]

SECTION = ".kconfig"
# enum libbpf_tristate
TRI_NO, TRI_YES, TRI_MODULE = 0, 1, 2
_TRISTATE_ENUM = "libbpf_tristate"
_KINDS = ("bool", "char", "int", "tristate", "string")


class KconfigVar(RecordTuple):
    """One ``__kconfig`` extern: ``offset`` and ``size`` in the ``.kconfig``
    map's value; ``kind`` one of bool, char, int, tristate, string; ``signed``
    for ints and chars; ``weak`` if declared ``__weak``."""
    __slots__ = ()
    _fields = ("name", "offset", "size", "kind", "signed", "weak")
    if TYPE_CHECKING:  # pragma: no cover
        name: str
        offset: int
        size: int
        kind: str
        signed: bool
        weak: bool


def config_paths() -> tuple[str, ...]:
    """Where the running kernel's configuration is looked for, in order."""
    return ("/proc/config.gz", f"/boot/config-{os.uname().release}")


# -- layout (kernel-independent) ------------------------------------------------------

def _kind(btf: BTFSpec, type_id: int) -> tuple[str, bool, int]:
    """(kind, signed, alignment) of an extern's type, or ("", False, 0)."""
    from .btf import types as T
    t = btf.type_by_id(btf.resolve(type_id))
    if isinstance(t, T.Int):
        if t.encoding & T.BTF_INT_BOOL:
            return ("bool" if t.size == 1 else ""), False, 1
        if t.size == 1:
            return "char", t.signed, 1
        if t.size in (2, 4, 8):
            return "int", t.signed, t.size
        return "", False, 0
    if isinstance(t, (T.Enum, T.Enum64)) and t.name == _TRISTATE_ENUM and \
            (t.size == 4 or isinstance(t, T.Enum64)):
        return "tristate", False, min(t.size, 8)
    if isinstance(t, T.Array) and t.nelems > 0 and _kind(btf, t.type)[0] == "char":
        return "string", False, 1
    return "", False, 0


def layout(btf: BTFSpec, datasec_id: int, weak: dict[str, bool],
           where: str = "") -> dict[str, KconfigVar]:
    """Place the externs of DATASEC ``.kconfig`` (type ``datasec_id``) as libbpf
    does, and write the layout into the BTF: the DATASEC's size and variable
    offsets (sorted), each VAR's linkage "allocated".  ``weak`` maps each
    extern symbol's name to whether it is weak.  Raises ObjectFormatError for
    an extern this module cannot fill."""
    from .btf import types as T
    ds = btf.types[datasec_id]
    found = []
    for vs in ds.vars:
        var = btf.type_by_id(vs.type)
        if not isinstance(var, T.Var):
            raise ObjectFormatError(f"{where}.kconfig lists BTF type {vs.type}, which is "
                                    f"not a variable")
        name = var.name
        if name not in weak:
            raise ObjectFormatError(f"{where}extern {name!r} (__kconfig) has BTF but no "
                                    f"ELF symbol")
        if not name.startswith(("CONFIG_", "LINUX_")):
            raise ObjectFormatError(f"{where}extern {name!r} (__kconfig): only CONFIG_* "
                                    f"(kernel configuration) and LINUX_* (computed by the "
                                    f"loader) names exist")
        kind, signed, align = _kind(btf, var.type)
        if not kind:
            raise ObjectFormatError(
                f"{where}extern {name!r} (__kconfig) has an unsupported type: use bool, "
                f"char, an integer of 1, 2, 4 or 8 bytes, enum libbpf_tristate or a char "
                f"array")
        size = btf.size_of(var.type)
        found.append((-align, size, name, align, kind, signed, vs))
    found.sort(key=lambda e: e[:3])
    out: dict[str, KconfigVar] = {}
    off = 0
    for _, size, name, align, kind, signed, vs in found:
        off = (off + align - 1) // align * align
        out[name] = KconfigVar(name, off, size, kind, signed, weak[name])
        vs.offset = off
        btf.type_by_id(vs.type).linkage = T.BTF_VAR_GLOBAL_ALLOCATED  # type: ignore[attr-defined]
        off += size
    ds.size = off
    ds.vars.sort(key=lambda v: v.offset)
    return out


# -- values ---------------------------------------------------------------------------

def parse_config(text: str, source: str = "kernel config") -> dict[str, str]:
    """``CONFIG_NAME`` -> its raw value (``y``, ``250``, ``"text"`` with quotes)
    for each ``CONFIG_NAME=value`` line; comments ("is not set") are skipped.
    A CONFIG_ line without a value is an error, as in libbpf."""
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.startswith("CONFIG_"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not value:
            raise InvalidValueError(f"{source}, line {n}: {line!r} has no value")
        values.setdefault(name, value)
    return values


_DIGITS = {16: "0123456789abcdefABCDEF", 10: "0123456789", 8: "01234567"}


def _number(raw: str) -> int:
    """strtoull(raw, 0): decimal, 0x hex or 0 octal, '-' wrapping to 64 bits."""
    s = raw.strip()
    neg = s.startswith("-")
    if s[:1] in ("+", "-"):
        s = s[1:]
    base = 16 if s[:2] in ("0x", "0X") else 8 if len(s) > 1 and s[0] == "0" else 10
    digits = s[2:] if base == 16 else s
    if not digits or not all(c in _DIGITS[base] for c in digits):
        raise ValueError(raw)
    v = int(digits, base)
    if v >> 64:
        raise ValueError(raw)
    return (-v) & ((1 << 64) - 1) if neg else v


def _fits(var: KconfigVar, v: int) -> bool:
    bits = var.size * 8
    if bits >= 64:
        return True
    if var.signed:
        return (v + (1 << (bits - 1))) & ((1 << 64) - 1) < (1 << bits)
    return v >> bits == 0


def encode(var: KconfigVar, raw: Union[str, int], source: str = "") -> bytes:
    """``var``'s ``size`` bytes for ``raw``: a configuration value (str, as in
    the file) or a computed one (int).  InvalidValueError when they do not fit."""
    what = f"extern {var.name!r} ({var.kind}, {var.size} bytes)"
    src = f"{source} gives " if source else ""

    def bad(why: str) -> InvalidValueError:
        return InvalidValueError(f"{what}: {src}{raw!r}, which {why}")
    if isinstance(raw, int):
        v = raw & ((1 << 64) - 1)
        if var.kind not in ("int", "char", "bool"):
            raise bad("is a number")
    elif raw[:1] in ("y", "n", "m"):
        c = raw[0]
        if var.kind == "bool":
            if c == "m":
                raise bad("is a module (m): declare it enum libbpf_tristate")
            v = int(c == "y")
        elif var.kind == "tristate":
            v = {"y": TRI_YES, "m": TRI_MODULE, "n": TRI_NO}[c]
        elif var.kind == "char":
            v = ord(c)
        else:
            raise bad("is y/n/m: declare it bool, enum libbpf_tristate or char")
        return v.to_bytes(var.size, "little")
    elif raw[:1] == '"':
        if var.kind != "string":
            raise bad("is a string: declare it a char array")
        if len(raw) < 2 or raw[-1] != '"':
            raise bad("is not a complete \"string\"")
        text = raw[1:-1].encode()[:var.size - 1]          # cut as libbpf does
        return text.ljust(var.size, b"\0")
    else:
        try:
            v = _number(raw)
        except ValueError:
            raise bad("is not a number") from None
        if var.kind not in ("int", "char"):
            raise bad("is a number: declare it an integer")
    if var.kind == "bool" and v > 1:
        raise bad("is not 0 or 1")
    if not _fits(var, v):
        raise bad(f"does not fit {var.size} {'signed ' if var.signed else ''}bytes")
    return (v & ((1 << (var.size * 8)) - 1)).to_bytes(var.size, "little")


# -- the running kernel ---------------------------------------------------------------

def read_system_config() -> tuple[str, dict[str, str]]:
    """(path, values) of the running kernel's configuration (see the module
    docstring for where it is looked for); NotSupportedError if none is readable."""
    tried = []
    for path in config_paths():
        try:
            if path.endswith(".gz"):
                import gzip
                with gzip.open(path, "rt", errors="replace") as f:
                    text = f.read()
            else:
                with open(path, errors="replace") as f:
                    text = f.read()
        except OSError as e:
            tried.append(f"{path} ({e.strerror or e})")
            continue
        return path, parse_config(text, path)
    raise NotSupportedError(
        f"the object reads CONFIG_* __kconfig externs, but the kernel's configuration "
        f"is not readable: tried {', '.join(tried)} (CONFIG_IKCONFIG_PROC gives "
        f"/proc/config.gz)")


def _version(text: str) -> int:
    """KERNEL_VERSION(a, b, c) of the "a.b.c" ``text`` starts with (c capped at
    255, as the kernel's macro does), or 0 if it does not."""
    nums: list[int] = []
    digits = ""
    for ch in text:
        if ch.isdigit():
            digits += ch
        elif ch == "." and digits and len(nums) < 2:
            nums.append(int(digits))
            digits = ""
        else:
            break
    if digits:
        nums.append(int(digits))
    if len(nums) != 3:
        return 0
    a, b, c = nums
    return (a << 16) + (b << 8) + min(c, 255)


_version_code = 0


def kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel, as libbpf computes it: Ubuntu's
    /proc/version_signature ("Ubuntu 5.4.0-12.15-generic 5.4.8": the third
    field), Debian's ``uname -v`` ("... Debian 4.19.260-1 ..."), else
    ``uname -r``; 0 if none reads "a.b.c".  Read once per process."""
    global _version_code
    if not _version_code:
        code = 0
        try:
            with open("/proc/version_signature") as f:
                fields = f.read().split()
            code = _version(fields[2]) if len(fields) >= 3 else 0
        except OSError:
            pass
        uts = os.uname()
        if not code and "Debian " in uts.version:
            code = _version(uts.version.split("Debian ", 1)[1])
        _version_code = code or _version(uts.release)
    return _version_code
