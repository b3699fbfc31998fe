"""The kernel-independent specs of a BPF object: ObjectSpec, ProgramSpec, MapSpec,
VariableSpec.

A spec is what an object file says, read without touching the kernel: the
same object gives the same spec on every machine.  :meth:`ObjectSpec.from_file`
reads one (:mod:`.elf_reader`, which links each program with :mod:`.linker`);
its maps' attributes, variables' initial values and programs may be changed
before :meth:`ObjectSpec.load` (:mod:`.collection`) makes kernel objects of it.

A ProgramSpec's ``insns`` are linked (the program, then each subprogram it
reaches) with every ``ld_imm64`` of a map or global pre-encoded (src_reg
BPF_PSEUDO_MAP_FD, or BPF_PSEUDO_MAP_VALUE with the offset into the value in
the second slot's imm) and listed in ``map_relocs``: the loader only writes
each map's fd into the first slot's imm.  ``__ksym`` references are listed in
``ksym_relocs`` (:mod:`.ksyms`), ``.BTF.ext`` records moved to the linked
layout.

Listed but refused at load (NotSupportedError): struct_ops maps
(``.struct_ops``, ``.struct_ops.link``) and their ``struct_ops/`` programs,
``freplace/`` programs (their target is another BPF program).
"""
from __future__ import annotations

import errno as _errno
import os

from . import insn as I
from ._records import RecordTuple
from .errors import (InvalidValueError, NotFoundError, ObjectFormatError,
                     PermissionDeniedError, RawprobeError, SyscallError)
from .names import sanitize
from .uapi import BPF_OBJ_NAME_LEN, MapType, ProgType  # noqa: F401 - ``type`` fields' enums

# No run-time ``typing`` (it imports re, enum, collections...: several ms of start-up).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .btf.ext import BTFExt, CoreRelo, FuncInfo, LineInfo
    from .btf.parse import BTFSpec
    from .kconfig import KconfigVar
    from .ksyms import Ksym, KsymReloc


# the ``pinning`` map attribute (libbpf's enum libbpf_pin_type)
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1

class MapReloc(RecordTuple):
    """An ``ld_imm64`` at instruction ``insn`` that must receive map ``map``'s fd.

    ``offset`` is 0 for a map reference (BPF_PSEUDO_MAP_FD) and the byte offset
    into the value for a global variable (BPF_PSEUDO_MAP_VALUE); both src_reg and
    offset are already encoded in ``ProgramSpec.insns``.
    """
    __slots__ = ()
    _fields = ("insn", "map", "offset")
    if TYPE_CHECKING:  # pragma: no cover
        insn: int
        map: str
        offset: int


class _Record:
    """repr() from the public ``__slots__``.  Plain classes rather than dataclasses:
    each dataclass costs 1-2 ms of import time generating its methods."""
    __slots__ = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if k[0] != "_")
        return f"{type(self).__name__}({args})"


class MapSpec(_Record):
    """A map to create: BPF_MAP_CREATE's attributes with the kernel's names.

    ``type`` is the kernel's map type number (compare with :data:`MapType`).
    ``max_entries`` 0 on a PERF_EVENT_ARRAY means "one per possible CPU" (the
    loader fills it in).  ``contents`` is the initial value of a global-data map
    (its single entry; None for other maps); ``frozen`` maps are BPF_MAP_FREEZE'd
    after it is written (``.rodata``).  ``inner`` is the template of a map-in-map's
    inner maps; ``values`` the initial slots of a PROG_ARRAY (slot -> program
    name) or map-in-map (slot -> map name).  ``section`` is ``.maps`` or the
    global-data section; ``kernel_name`` what BPF_MAP_CREATE's map_name gets.
    ``pinning``: LIBBPF_PIN_BY_NAME maps are pinned (or a pin reused) by the
    loader (:mod:`rawprobe.pinning`).
    """
    __slots__ = ("name", "type", "key_size", "value_size", "max_entries", "map_flags",
                 "btf_key_type_id", "btf_value_type_id", "pinning", "map_extra",
                 "numa_node", "contents", "frozen", "inner", "values", "section",
                 "kernel_name")

    def __init__(self, name: str, type: int, key_size: int = 0, value_size: int = 0,
                 max_entries: int = 0, map_flags: int = 0, btf_key_type_id: int = 0,
                 btf_value_type_id: int = 0, pinning: int = LIBBPF_PIN_NONE,
                 map_extra: int = 0, numa_node: int = 0, contents: bytes | None = None,
                 frozen: bool = False, inner: MapSpec | None = None,
                 values: dict[int, str] | None = None, section: str = ".maps",
                 kernel_name: str = "") -> None:
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.btf_key_type_id = btf_key_type_id
        self.btf_value_type_id = btf_value_type_id
        self.pinning = pinning
        self.map_extra = map_extra
        self.numa_node = numa_node
        self.contents = contents
        self.frozen = frozen
        self.inner = inner
        self.values = {} if values is None else values
        self.section = section
        self.kernel_name = kernel_name or _kernel_name(name)

    @property
    def is_global_data(self) -> bool:
        """A ``.rodata``/``.data``/``.bss``-like map: referenced with BPF_PSEUDO_MAP_VALUE."""
        return self.section != ".maps"


class VariableSpec(_Record):
    """A global variable of a global-data map, settable before load.

    ``btf_type_id`` is the variable's type (not the VAR record), 0 without BTF;
    ``const`` is True in ``.rodata*`` (frozen after load).
    """
    __slots__ = ("name", "map_name", "offset", "size", "btf_type_id", "const", "_map",
                 "_btf")

    def __init__(self, name: str, map_name: str, offset: int, size: int, btf_type_id: int,
                 const: bool, map: MapSpec, btf: BTFSpec | None = None) -> None:
        self.name = name
        self.map_name = map_name
        self.offset = offset
        self.size = size
        self.btf_type_id = btf_type_id
        self.const = const
        self._map = map
        self._btf = btf

    def get(self) -> bytes:
        """The variable's current initial value."""
        contents = self._map.contents or b""
        return contents[self.offset:self.offset + self.size]

    def set(self, value: bytes | bytearray | memoryview | int) -> None:
        """Write the initial value: bytes (zero-padded to the size) or an int
        (little-endian in the variable's size; signedness from BTF, range-checked)."""
        data = self.encode(value)
        m = self._map
        old = m.contents if m.contents is not None else bytes(m.value_size)
        m.contents = old[:self.offset] + data + old[self.offset + self.size:]

    def encode(self, value: bytes | bytearray | memoryview | int) -> bytes:
        """``value`` as the variable's ``size`` bytes, validated as :meth:`set`
        describes (also what a loaded ``Variable.set`` writes)."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if len(data) > self.size:
                raise InvalidValueError(f"variable {self.name!r} holds {self.size} bytes; "
                                        f"got {len(data)}")
            data = data.ljust(self.size, b"\0")
        elif isinstance(value, int):
            data = self._encode_int(value)
        elif isinstance(value, str):
            raise InvalidValueError(f"variable {self.name!r}: pass bytes, not str "
                                    f"(e.g. {value!r}.encode())")
        else:
            raise InvalidValueError(f"variable {self.name!r}: cannot set a "
                                    f"{type(value).__name__}; pass bytes or int")
        return data

    def _signedness(self) -> bool | None:
        """True/False from BTF; None when unknown.  Raises if the type is not integral."""
        if self._btf is None or not self.btf_type_id:
            return None
        from .btf import types as T
        btf = self._btf
        t = btf.type_by_id(btf.resolve(self.btf_type_id))
        if isinstance(t, (T.Int, T.Enum, T.Enum64)):
            return t.signed
        if isinstance(t, T.Ptr):
            return False
        raise InvalidValueError(f"variable {self.name!r} is a {t.kind.name.lower()}, not an "
                                f"integer; set it with bytes")

    def _encode_int(self, value: int) -> bytes:
        bits = self.size * 8
        signed = self._signedness()
        lo = -(1 << (bits - 1)) if signed in (True, None) else 0
        hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        if not lo <= value <= hi:
            kind = {True: "signed ", False: "unsigned ", None: ""}[signed]
            raise InvalidValueError(f"{value} does not fit variable {self.name!r} "
                                    f"({kind}{self.size} bytes: {lo}..{hi})")
        return (value & ((1 << bits) - 1)).to_bytes(self.size, "little")


class ProgramSpec(_Record):
    """A program ready for BPF_PROG_LOAD but for map fds and CO-RE fixups.

    ``insns`` is the linked code (the program, then its subprograms);
    ``functions`` lists ``(name, first insn, insn count)`` of each part.
    ``func_info``/``line_info``/``core_relos`` are ``.BTF.ext`` records moved to
    the linked layout, each in the unit the kernel uses for it: ``insn_off`` of
    func_info and line_info is an INSTRUCTION index into ``insns`` (as
    BPF_PROG_LOAD wants), ``insn_off`` of core_relos a BYTE offset into ``insns``
    (as ``struct bpf_core_relo`` and ``btf.core.CoreRelocator.relocate`` want).
    ``prog_flags`` holds BPF_F_SLEEPABLE / BPF_F_XDP_HAS_FRAGS as the section
    name asks.  ``ksym_relocs``: the instructions that use ``__ksym`` externs.
    ``attach_btf``: the target is a kernel BTF name, so loading needs
    ``attach_btf_id`` (tp_btf, fentry/fexit, fmod_ret, lsm, iter).
    """
    __slots__ = ("name", "section", "type", "expected_attach_type", "attach_to",
                 "sleepable", "prog_flags", "attach_kind", "retprobe", "attach_btf",
                 "insns", "map_relocs", "ksym_relocs", "func_info", "line_info",
                 "core_relos", "functions", "license", "kern_version")

    def __init__(self, name: str, section: str, type: int, expected_attach_type: int = 0,
                 attach_to: str = "", sleepable: bool = False, prog_flags: int = 0,
                 attach_kind: str = "", retprobe: bool = False, attach_btf: bool = False,
                 insns: bytes = b"", license: str = "", kern_version: int = 0) -> None:
        self.name = name
        self.section = section
        self.type = type
        self.expected_attach_type = expected_attach_type
        self.attach_to = attach_to
        self.sleepable = sleepable
        self.prog_flags = prog_flags
        self.attach_kind = attach_kind
        self.retprobe = retprobe
        self.attach_btf = attach_btf
        self.insns = insns
        self.map_relocs: list[MapReloc] = []
        self.ksym_relocs: list[KsymReloc] = []
        self.func_info: list[FuncInfo] = []
        self.line_info: list[LineInfo] = []
        self.core_relos: list[CoreRelo] = []
        self.functions: list[tuple[str, int, int]] = []
        self.license = license
        self.kern_version = kern_version

    def __repr__(self) -> str:
        return (f"ProgramSpec({self.name!r}, section={self.section!r}, type={self.type!r}, "
                f"insns={self.insn_count}, functions={[f[0] for f in self.functions]}, "
                f"map_relocs={len(self.map_relocs)})")

    @property
    def insn_count(self) -> int:
        return len(self.insns) // I.INSN_SIZE

    def disasm(self, index: int) -> str:
        """One instruction in the verifier log's style, for error messages."""
        return I.disasm(self.insns, index)

    def function_at(self, index: int) -> str:
        """Name of the function that instruction ``index`` belongs to."""
        for name, start, count in self.functions:
            if start <= index < start + count:
                return name
        return "?"


class ObjectSpec(_Record):
    """Everything in one BPF object file, parsed; no kernel access.

    ``variables`` is keyed by variable name (a static variable whose name
    clashes with an earlier one is keyed ``"<section>/<name>"``).  ``kconfig``:
    the ``__kconfig`` externs, by name, placed in the ``.kconfig`` map whose
    value the loader fills (:mod:`rawprobe.kconfig`).  ``ksyms``: the ``__ksym``
    externs, by name (:mod:`rawprobe.ksyms`).  ``struct_ops``: each struct_ops
    map variable (``SEC(".struct_ops")``) -> its section, which rawprobe
    cannot load.
    """
    __slots__ = ("name", "programs", "maps", "variables", "kconfig", "ksyms", "struct_ops",
                 "license", "kern_version", "btf", "btf_ext")

    def __init__(self, name: str) -> None:
        self.name = name
        self.programs: dict[str, ProgramSpec] = {}
        self.maps: dict[str, MapSpec] = {}
        self.variables: dict[str, VariableSpec] = {}
        self.kconfig: dict[str, KconfigVar] = {}
        self.ksyms: dict[str, Ksym] = {}
        self.struct_ops: dict[str, str] = {}
        self.license = ""
        self.kern_version = 0
        self.btf: BTFSpec | None = None
        self.btf_ext: BTFExt | None = None

    def __repr__(self) -> str:
        return (f"ObjectSpec({self.name!r}, programs={list(self.programs)}, "
                f"maps={list(self.maps)}, variables={list(self.variables)})")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ObjectSpec:
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NotFoundError(f"BPF object {path!r} does not exist") from None
        except PermissionError as e:
            raise PermissionDeniedError(f"open({path!r})", e.errno or _errno.EACCES) \
                from None
        except OSError as e:
            raise SyscallError(f"reading {path!r}", e.errno or _errno.EIO) from None
        return cls.from_bytes(data, name=path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> ObjectSpec:
        """Parse an object held in memory; ``name`` is used in messages and map names."""
        from .elf_reader import Reader
        try:
            return Reader(data, name).parse()
        except RawprobeError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, OverflowError,
                RecursionError, UnicodeError) as e:  # a bug, but never a crash on bad input
            raise ObjectFormatError(f"{name}: malformed object ({type(e).__name__}: {e})") \
                from e

    def load(self, **kwargs: Any) -> Any:
        """Create the maps and load the programs: ``rawprobe.Collection``."""
        from .collection import Collection
        return Collection.from_spec(self, **kwargs)


def _kernel_name(name: str, obj_name: str = "") -> str:
    """A map name the kernel accepts: [A-Za-z0-9_.], at most 15 characters.

    Global-data maps get libbpf's name, so that tools see the same map names
    whichever loader made them: ``<object prefix><section>``, the section given
    at least 7 characters (``spec_bas.rodata``, ``spec_bas.bss``), and sections
    with a second dot (``.rodata.str1.1``) their own name alone."""
    if name.startswith(".") and obj_name:
        sfx_len = min(max(len(name), 7), BPF_OBJ_NAME_LEN - 1)
        pfx_len = 0 if "." in name[1:] else min(BPF_OBJ_NAME_LEN - 1 - sfx_len,
                                                 len(obj_name))
        name = obj_name[:pfx_len] + name
    return sanitize(name[:BPF_OBJ_NAME_LEN - 1])
