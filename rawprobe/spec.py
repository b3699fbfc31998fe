"""ELF object -> kernel-independent specs: ObjectSpec, ProgramSpec, MapSpec, VariableSpec.

Parsing never touches the kernel: the same object gives the same spec on every
machine.  What this module does, following libbpf's object model:

* programs: every global STT_FUNC symbol in an executable section other than
  ``.text``; the section name gives type and attach target (:mod:`.sections`);
  several programs may share a section.
* static linking: a program's ``insns`` are its own function followed by every
  ``.text`` subprogram it reaches through calls (``call pc+N``, BPF_PSEUDO_CALL)
  or callback references (``ld_imm64`` of a function, BPF_PSEUDO_FUNC, e.g. for
  ``bpf_loop``), transitively, each appended once, with the call offsets fixed.
  func_info / line_info / CO-RE relocations from ``.BTF.ext`` follow their
  functions to the new layout (func_info/line_info offsets in instructions, as
  BPF_PROG_LOAD wants them; CO-RE relocation offsets stay in bytes).
  A global subprogram of hidden visibility (``__hidden``) gets a static BTF
  FUNC, as libbpf gives it, so the kernel verifies it in its callers' context.
* maps: BTF-defined maps in ``.maps`` (``__uint``/``__type``/``__array``), and one
  single-entry array map per global-data section (``.rodata``, ``.data``, ``.bss``,
  ``.rodata.*``, ``.data.*``; string literals in ``.rodata.str1.1`` included),
  whose DATASEC variables become :class:`VariableSpec`.
* relocations: every ``ld_imm64`` of a map or global is pre-encoded in ``insns``
  (src_reg BPF_PSEUDO_MAP_FD, or BPF_PSEUDO_MAP_VALUE with the offset into the
  value in the second slot's imm) and listed in ``ProgramSpec.map_relocs``; the
  loader only writes each map's fd into the first slot's imm.

* ``__kconfig`` externs: placed in a ``.kconfig`` map as libbpf places them
  (:mod:`.kconfig`), referenced like global data; the loader fills their values.
* ``__ksym`` externs (kernel variables and kfuncs, :mod:`.ksyms`): each call
  or ``ld_imm64`` of one is listed in ``ProgramSpec.ksym_relocs`` (calls
  already marked kfunc calls); the loader resolves them against the kernel.

Not supported (rejected with a clear ObjectFormatError): the legacy ``maps``
section (``struct bpf_map_def``), calls between program sections, static
programs.  Listed here but refused at load (NotSupportedError): struct_ops
maps (``.struct_ops``, ``.struct_ops.link``) and their ``struct_ops/``
programs, ``freplace/`` programs (their target is another BPF program).
"""
from __future__ import annotations

import errno as _errno
import os
from bisect import bisect_left

from . import elf as E
from . import insn as I
from ._records import RecordTuple
from .errors import (BTFError, InvalidValueError, NotFoundError, ObjectFormatError,
                     PermissionDeniedError, RawprobeError, SyscallError)
from .kconfig import SECTION as KCONFIG_SECTION
from .ksyms import SECTION as KSYMS_SECTION, KsymReloc
from .names import sanitize
from .sections import ProgType, program_section
from .uapi import BPF_OBJ_NAME_LEN, MAP_IN_MAP_TYPES, MapFlags, MapType

# No run-time ``typing`` (it imports re, enum, collections...: several ms of start-up).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .btf.ext import BTFExt, CoreRelo, FuncInfo, LineInfo
    from .btf.parse import BTFSpec
    from .kconfig import KconfigVar
    from .ksyms import Ksym


# the ``pinning`` map attribute (libbpf's enum libbpf_pin_type)
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1

_MAX_DATA_SIZE = 1 << 29       # far above KMALLOC_MAX_SIZE, the kernel's limit
_UINT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                "pinning", "map_extra")


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
        try:
            return _Parser(data, name).parse()
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


# ----------------------------------------------------------------------------------
# the parser

def _object_name(name: str) -> str:
    """The object's name as libbpf takes it: the file name up to its first dot."""
    return os.path.basename(name).split(".", 1)[0]


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


def _is_data_section(s: E.Section) -> bool:
    if s.flags & E.SHF_EXECINSTR or not s.flags & E.SHF_ALLOC:
        return False
    if s.type == E.SHT_NOBITS:
        return s.name == ".bss" or s.name.startswith(".bss.")
    if s.type != E.SHT_PROGBITS:
        return False
    n = s.name
    return n in (".data", ".rodata") or n.startswith((".data.", ".rodata."))


def _first(ref: tuple) -> int:
    return ref[0]


class _Func:
    """A function in a code section, with its relocations in local insn indices.

    ``refs``, in instruction order: (local idx, kind, payload); kind
    "call"/"func" -> (section index, insn index) of the target, "map" -> map
    name, "data" -> (map name, offset).
    ``bind`` and ``visibility`` are the symbol's STB_* and STV_*.
    """
    __slots__ = ("name", "sec", "start", "count", "bind", "visibility", "refs")

    def __init__(self, name: str, sec: E.Section, start: int, count: int, bind: int,
                 visibility: int = E.STV_DEFAULT) -> None:
        self.name, self.sec, self.start, self.count, self.bind = name, sec, start, count, bind
        self.visibility = visibility
        self.refs: list[tuple[int, str, Any]] = []


class _Parser:
    def __init__(self, data: bytes, name: str) -> None:
        self.name = name
        self.elf = E.ElfFile(data, name)
        self.obj_name = _object_name(name)
        self.btf: BTFSpec | None = None
        self.btf_ext: BTFExt | None = None
        self.maps: dict[str, MapSpec] = {}
        self.map_at: dict[int, str] = {}               # .maps offset -> map name
        self.map_ranges: list[tuple[int, int, str]] = []  # [start, end) in .maps
        self.values_off: dict[str, int] = {}           # map -> offset of its values
        self.funcs: dict[tuple[int, int], _Func] = {}  # (shndx, start insn) -> func
        self.ext_index: dict[str, tuple] = {}          # section -> .BTF.ext records
        self.kconfig: dict[str, KconfigVar] = {}       # __kconfig externs
        self.ksyms: dict[str, Ksym] = {}               # __ksym externs
        # (section index, name) -> data symbol, for DATASEC offsets
        self.data_syms = {(s.shndx, s.name): s for s in reversed(self.elf.symbols)
                          if s.name and s.type in (E.STT_OBJECT, E.STT_NOTYPE)}

    def err(self, msg: str, section: str | None = None) -> ObjectFormatError:
        return self.elf.error(msg, section)

    # -- top level -------------------------------------------------------------------

    def parse(self) -> ObjectSpec:
        elf = self.elf
        if not elf.symbols:
            raise self.err("has no symbol table; was it stripped? rawprobe needs the "
                           "object exactly as clang -c wrote it")
        spec = ObjectSpec(name=self.name)
        spec.license = self._license()
        spec.kern_version = self._kern_version()
        self._parse_btf()
        spec.btf, spec.btf_ext = self.btf, self.btf_ext
        if self.btf is not None:
            self._fix_datasecs()
        legacy = elf.section_by_name.get("maps")
        if legacy is not None and legacy.type in (E.SHT_PROGBITS, E.SHT_NOBITS):
            raise self.err("legacy map definitions (struct bpf_map_def in SEC(\"maps\")) "
                           "are not supported; declare maps the BTF way in SEC(\".maps\") "
                           "with __uint(type, ...), __type(key, ...), __type(value, ...)",
                           "maps")
        maps_sec = elf.section_by_name.get(".maps")
        if maps_sec is not None and maps_sec.type == E.SHT_PROGBITS:
            self._parse_btf_maps(maps_sec)
        spec.variables = self._parse_data_maps()
        spec.struct_ops = self._struct_ops()
        if self.btf is not None:
            self._parse_kconfig()
            self._parse_ksyms()
        spec.maps, spec.kconfig, spec.ksyms = self.maps, self.kconfig, self.ksyms
        self._collect_functions()
        if self.btf is not None:
            self._hidden_subprograms_static()
        programs = self._link_programs(spec)
        spec.programs = programs
        if maps_sec is not None and maps_sec.type == E.SHT_PROGBITS:
            self._parse_map_values(maps_sec, programs)
        return spec

    def _license(self) -> str:
        s = self.elf.section_by_name.get("license")
        if s is None:
            return ""
        return self.elf.contents(s).split(b"\0", 1)[0].decode("ascii", "replace")

    def _kern_version(self) -> int:
        s = self.elf.section_by_name.get("version")
        if s is None:
            return 0
        data = self.elf.contents(s)
        if len(data) != 4:
            raise self.err(f"must hold one u32 (LINUX_VERSION_CODE), has {len(data)} bytes",
                           "version")
        return int.from_bytes(data, "little")

    def _parse_btf(self) -> None:
        s = self.elf.section_by_name.get(".BTF")
        if s is None:
            return
        from .btf.parse import BTFSpec
        try:
            self.btf = BTFSpec.from_bytes(self.elf.contents(s))
        except BTFError as e:
            raise BTFError(f"{self.name}: section '.BTF': {e}") from None
        ext = self.elf.section_by_name.get(".BTF.ext")
        if ext is not None:
            from .btf.ext import BTFExt
            try:
                self.btf_ext = BTFExt.from_bytes(self.elf.contents(ext), self.btf)
            except BTFError as e:
                raise BTFError(f"{self.name}: section '.BTF.ext': {e}") from None

    def _fix_datasecs(self) -> None:
        """Fill in DATASEC sizes and variable offsets, as libbpf does before
        BPF_BTF_LOAD: clang leaves them 0 for the linker, and the ELF symbols know."""
        from .btf import types as T
        btf = self.btf
        assert btf is not None
        secs = self.elf.section_by_name
        for t in btf.types:
            if not isinstance(t, T.Datasec):
                continue
            sec = secs.get(t.name)
            if sec is None:     # .kconfig/.ksyms externs: laid out by their modules
                continue
            t.size = sec.size
            for vs in t.vars:
                var = btf.type_by_id(vs.type)
                if not isinstance(var, T.Var):
                    continue
                sym = self.data_syms.get((sec.index, var.name))
                if sym is not None:
                    vs.offset = sym.value
                elif var.linkage != T.BTF_VAR_STATIC:
                    raise self.err(f"BTF variable {var.name!r} has no ELF symbol", t.name)
                if vs.offset + vs.size > sec.size:
                    raise self.err(f"variable {var.name!r} ({vs.size} bytes at "
                                   f"{vs.offset}) lies outside the {sec.size}-byte section",
                                   t.name)
            t.vars.sort(key=lambda v: v.offset)

    def _datasec(self, name: str) -> tuple[int, Any]:
        """(type id, Datasec) of the DATASEC called ``name``, or (0, None)."""
        from .btf import types as T
        if self.btf is None:
            return 0, None
        for i in self.btf.types_by_name(name):
            t = self.btf.types[i]
            if isinstance(t, T.Datasec):
                return i, t
        return 0, None

    # -- BTF-defined maps ------------------------------------------------------------

    def _parse_btf_maps(self, sec: E.Section) -> None:
        from .btf import types as T
        btf = self.btf
        if btf is None:
            raise self.err("BTF-defined maps need the object's BTF, but there is no .BTF "
                           "section; compile with clang -g", ".maps")
        _, ds = self._datasec(".maps")
        if ds is None:
            raise self.err("no BTF DATASEC describes the maps; compile with clang -g",
                           ".maps")
        for vs in ds.vars:
            var = btf.type_by_id(vs.type)
            if not isinstance(var, T.Var):
                raise self.err(f"DATASEC entry {vs.type} is a {var.kind.name}, not a VAR",
                               ".maps")
            name = var.name
            if name in self.maps:
                raise self.err(f"map {name!r} is defined twice", ".maps")
            struct = btf.type_by_id(btf.resolve(var.type))
            if not isinstance(struct, T.Struct):
                raise self.err(f"map {name!r} must be a struct of __uint/__type fields, "
                               f"is a {struct.kind.name.lower()}", ".maps")
            m = self._map_def(name, struct)
            m.kernel_name = _kernel_name(name)
            self.maps[name] = m
            self.map_at[vs.offset] = name
            self.map_ranges.append((vs.offset, vs.offset + vs.size, name))

    def _map_def(self, name: str, struct: Any, inner: bool = False) -> MapSpec:
        from .btf import types as T
        btf = self.btf
        assert btf is not None
        what = f"inner map of {name[:-6]!r}" if inner else f"map {name!r}"
        vals: dict[str, int] = {}
        key = value = None
        values_member = None
        for m in struct.members:
            t = btf.type_by_id(btf.resolve(m.type))
            if m.name in _UINT_FIELDS:
                arr = btf.type_by_id(t.type) if isinstance(t, T.Ptr) else None
                if not isinstance(arr, T.Array):
                    raise self.err(f"{what}: field {m.name!r} must be declared with "
                                   f"__uint({m.name}, N)", ".maps")
                vals[m.name] = arr.nelems
            elif m.name in ("key", "value"):
                if not isinstance(t, T.Ptr):
                    raise self.err(f"{what}: field {m.name!r} must be declared with "
                                   f"__type({m.name}, T)", ".maps")
                try:
                    size = btf.size_of(t.type)
                except RawprobeError as e:
                    raise self.err(f"{what}: {m.name} type has no size: {e}", ".maps") \
                        from None
                if m.name == "key":
                    key = (t.type, size)
                else:
                    value = (t.type, size)
            elif m.name == "values":
                values_member = (m, t)
            else:
                raise self.err(f"{what}: unknown field {m.name!r}", ".maps")
        if "type" not in vals:
            raise self.err(f"{what} has no __uint(type, ...)", ".maps")
        spec = MapSpec(name=name, type=vals["type"],
                       max_entries=vals.get("max_entries", 0),
                       map_flags=vals.get("map_flags", 0), pinning=vals.get("pinning", 0),
                       map_extra=vals.get("map_extra", 0), numa_node=vals.get("numa_node", 0))
        if spec.pinning not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME):
            raise self.err(f"{what}: pinning {spec.pinning} is neither LIBBPF_PIN_NONE nor "
                           f"LIBBPF_PIN_BY_NAME", ".maps")
        if inner and "pinning" in vals:
            raise self.err(f"{what}: an inner map cannot be pinned", ".maps")
        for label, pair in (("key", key), ("value", value)):
            sized = vals.get(f"{label}_size")
            if pair is not None:
                if sized is not None and sized != pair[1]:
                    raise self.err(f"{what}: {label}_size {sized} contradicts "
                                   f"sizeof({label}) = {pair[1]}", ".maps")
                setattr(spec, f"btf_{label}_type_id", pair[0])
                setattr(spec, f"{label}_size", pair[1])
            elif sized is not None:
                setattr(spec, f"{label}_size", sized)
        if values_member is not None:
            m, t = values_member
            elem = btf.type_by_id(btf.resolve(t.type)) if isinstance(t, T.Array) else None
            target = btf.type_by_id(btf.resolve(elem.type)) if isinstance(elem, T.Ptr) \
                else None
            if inner:
                raise self.err(f"{what}: an inner map cannot have values", ".maps")
            if isinstance(target, T.Struct):
                if spec.type not in MAP_IN_MAP_TYPES:
                    raise self.err(f"{what}: __array(values, struct ...) needs "
                                   f"ARRAY_OF_MAPS or HASH_OF_MAPS", ".maps")
                spec.inner = self._map_def(name + ".inner", target, inner=True)
                spec.inner.kernel_name = _kernel_name(name + ".inner")
            elif isinstance(target, T.FuncProto):
                if spec.type != MapType.PROG_ARRAY:
                    raise self.err(f"{what}: __array(values, <function>) needs "
                                   f"PROG_ARRAY", ".maps")
            else:
                raise self.err(f"{what}: values must be __array(values, struct <map>) or "
                               f"__array(values, int (void *))", ".maps")
            if spec.value_size not in (0, 4):
                raise self.err(f"{what}: value_size of a map of maps/programs must be 4",
                               ".maps")
            spec.value_size = 4
            spec.btf_value_type_id = 0
            self.values_off[name] = m.offset // 8
        return spec

    def _parse_map_values(self, sec: E.Section, programs: dict[str, ProgramSpec]) -> None:
        """``.values = { [i] = &prog_or_map }``: R_BPF_64_ABS64 relocations in .maps."""
        elf = self.elf
        for r in elf.relocations(sec.index):
            owner, start = next(((n, lo) for lo, hi, n in self.map_ranges
                                 if lo <= r.offset < hi), (None, 0))
            if owner is None or owner not in self.values_off:
                raise self.err(f"relocation at {r.offset:#x} is not inside a map's "
                               f"values", ".maps")
            m = self.maps[owner]
            rel = r.offset - start - self.values_off[owner]
            if rel < 0 or rel % 8:
                raise self.err(f"map {owner!r}: misplaced values relocation at "
                               f"{r.offset:#x}", ".maps")
            slot = rel // 8
            if slot >= m.max_entries:
                raise self.err(f"map {owner!r}: initial value for slot {slot} but "
                               f"max_entries is {m.max_entries}", ".maps")
            sym = elf.symbols[r.sym]
            if m.type == MapType.PROG_ARRAY:
                if sym.name not in programs:
                    raise self.err(f"map {owner!r}: slot {slot} refers to {sym.name!r}, "
                                   f"which is not a program", ".maps")
            elif sym.shndx != sec.index or sym.name not in self.maps:
                raise self.err(f"map {owner!r}: slot {slot} refers to {sym.name!r}, "
                               f"which is not a map in .maps", ".maps")
            m.values[slot] = sym.name

    # -- global data -----------------------------------------------------------------

    def _parse_data_maps(self) -> dict[str, VariableSpec]:
        from .btf import types as T
        variables: dict[str, VariableSpec] = {}
        for sec in self.elf.sections:
            if not _is_data_section(sec) or sec.size == 0:
                continue
            readonly = sec.name.startswith(".rodata")
            if sec.size > _MAX_DATA_SIZE:
                raise self.err(f"{sec.size} bytes of global data is more than any kernel "
                               f"accepts as one map value", sec.name)
            if sec.type == E.SHT_NOBITS:
                contents = bytes(sec.size)
            else:
                contents = self.elf.contents(sec)
            ds_id, ds = self._datasec(sec.name)
            flags = MapFlags.MMAPABLE | (MapFlags.RDONLY_PROG if readonly else 0)
            m = MapSpec(name=sec.name, type=int(MapType.ARRAY), key_size=4, value_size=sec.size,
                        max_entries=1, map_flags=flags, btf_value_type_id=ds_id,
                        contents=contents, frozen=readonly, section=sec.name,
                        kernel_name=_kernel_name(sec.name, self.obj_name))
            if sec.name in self.maps:
                raise self.err("a map of the same name already exists", sec.name)
            self.maps[sec.name] = m
            if ds is None:
                continue
            for vs in ds.vars:
                var = self.btf.type_by_id(vs.type)  # type: ignore[union-attr]
                if not isinstance(var, T.Var):
                    continue
                key = var.name if var.name not in variables else f"{sec.name}/{var.name}"
                variables[key] = VariableSpec(var.name, sec.name, vs.offset, vs.size,
                                              var.type, readonly, m, self.btf)
        return variables

    def _struct_ops(self) -> dict[str, str]:
        """The struct_ops map variables: name -> section (libbpf's section names)."""
        found = {}
        for sec in self.elf.sections:
            if sec.name.lstrip("?") in (".struct_ops", ".struct_ops.link"):
                for sym in self.elf.symbols:
                    if sym.shndx == sec.index and sym.type == E.STT_OBJECT and sym.name:
                        found[sym.name] = sec.name
        return found

    def _parse_kconfig(self) -> None:
        """The ``__kconfig`` externs: laid out as libbpf lays them out, in a
        ``.kconfig`` map (read-only for programs) that the loader fills."""
        from . import kconfig
        ds_id, ds = self._datasec(KCONFIG_SECTION)
        if ds is None or not ds.vars:
            return
        self.kconfig = kconfig.layout(self.btf, ds_id,  # type: ignore[arg-type]
                                      self._undefined_weak(),
                                      where=f"{self.name}: ")
        if KCONFIG_SECTION in self.maps:
            raise self.err("a map of the same name already exists", KCONFIG_SECTION)
        self.maps[KCONFIG_SECTION] = MapSpec(
            name=KCONFIG_SECTION, type=int(MapType.ARRAY), key_size=4, value_size=ds.size,
            max_entries=1, map_flags=MapFlags.MMAPABLE | MapFlags.RDONLY_PROG,
            btf_value_type_id=ds_id, frozen=True, section=KCONFIG_SECTION,
            kernel_name=_kernel_name(KCONFIG_SECTION, self.obj_name))

    def _undefined_weak(self) -> dict[str, bool]:
        """Each undefined (extern) ELF symbol: is it weak?"""
        return {s.name: s.bind == E.STB_WEAK for s in self.elf.symbols
                if s.shndx == E.SHN_UNDEF and s.name}

    def _parse_ksyms(self) -> None:
        """The ``__ksym`` externs, and the BTF rewritten for them as libbpf does."""
        from . import ksyms
        ds_id, ds = self._datasec(KSYMS_SECTION)
        if ds is None or not ds.vars:
            return
        self.ksyms = ksyms.collect(self.btf, ds_id,  # type: ignore[arg-type]
                                   self._undefined_weak(), len(self.kconfig),
                                   where=f"{self.name}: ")

    # -- code ------------------------------------------------------------------------

    def _collect_functions(self) -> None:
        """Split every code section into functions and classify its relocations."""
        elf = self.elf
        by_sec: dict[int, list[E.Symbol]] = {}
        for s in elf.symbols:
            if s.type == E.STT_FUNC and 0 < s.shndx < len(elf.sections):
                by_sec.setdefault(s.shndx, []).append(s)
        for sec in elf.sections:
            if not sec.is_code or sec.size == 0:
                continue
            if sec.size % I.INSN_SIZE:
                raise self.err(f"size {sec.size} is not a whole number of instructions",
                               sec.name)
            syms = sorted(by_sec.get(sec.index, ()), key=lambda s: s.value)
            if not syms:
                raise self.err("holds code but no function symbol", sec.name)
            funcs = []
            end = 0
            for s in syms:
                if s.value % 8 or s.size % 8 or not s.size or s.value + s.size > sec.size:
                    raise self.err(f"function {s.name!r} ({s.size} bytes at {s.value}) is "
                                   f"not a whole number of instructions inside the section",
                                   sec.name)
                if s.value < end:
                    raise self.err(f"function {s.name!r} overlaps the previous one",
                                   sec.name)
                end = s.value + s.size
                f = _Func(s.name, sec, s.value // 8, s.size // 8, s.bind, s.visibility)
                self.funcs[(sec.index, f.start)] = f
                funcs.append(f)
            self._classify(sec, funcs)

    def _hidden_subprograms_static(self) -> None:
        """Give each global ``.text`` function of hidden (or internal) visibility
        -- ``__hidden``, as USDT's and other libraries' helpers are -- a static
        BTF FUNC, as libbpf does before BPF_BTF_LOAD.  The kernel then verifies
        it at each call, knowing its caller's arguments, rather than alone
        (5.6+ verifies global functions alone, assuming any argument may be
        NULL or anything)."""
        from .btf import types as T
        btf = self.btf
        assert btf is not None
        text = self.elf.section_by_name.get(".text")
        hidden = {f.name for f in self.funcs.values()
                  if text is not None and f.sec.index == text.index and
                  f.bind != E.STB_LOCAL and f.visibility in (E.STV_HIDDEN, E.STV_INTERNAL)}
        for name in hidden:
            for tid in btf.types_by_name(name):
                t = btf.types[tid]
                if isinstance(t, T.Func) and t.linkage == T.BTF_FUNC_GLOBAL:
                    t.linkage = T.BTF_FUNC_STATIC
                    break

    def _func_of(self, funcs: list[_Func], idx: int) -> _Func | None:
        for f in funcs:
            if f.start <= idx < f.start + f.count:
                return f
        return None

    def _classify(self, sec: E.Section, funcs: list[_Func]) -> None:
        elf = self.elf
        code = elf.contents(sec)
        n = len(code) // 8
        text = elf.section_by_name.get(".text")
        text_idx = text.index if text is not None and text.is_code else -1
        relocated: set[int] = set()
        for r in elf.relocations(sec.index):
            idx, rem = divmod(r.offset, 8)
            if rem or idx >= n:
                raise self.err(f"relocation at byte {r.offset} is not at an instruction",
                               sec.name)
            f = self._func_of(funcs, idx)
            if f is None:
                continue                       # code outside any function: never loaded
            sym = elf.symbols[r.sym]
            ins = I.decode(code, idx)

            def where(f: _Func = f, idx: int = idx) -> str:   # only on error: disasm costs
                return f"function {f.name!r}, {I.disasm(code, idx)}"
            if sym.shndx == E.SHN_UNDEF:
                relocated.add(idx)
                f.refs.append(self._extern_ref(sym.name, ins, r.type, idx - f.start,
                                               idx + 1 < n, where, sec.name))
                continue
            if not sym.shndx < len(elf.sections):
                raise self.err(f"{where()}: symbol {sym.name!r} has special section index "
                               f"{sym.shndx:#x}", sec.name)
            target = elf.sections[sym.shndx]
            relocated.add(idx)
            local = idx - f.start
            if ins.is_call():
                if r.type != E.R_BPF_64_32 or ins.src_reg != I.BPF_PSEUDO_CALL:
                    raise self.err(f"{where()}: unexpected relocation type {r.type} on a call",
                                   sec.name)
                if target.index != text_idx:
                    raise self.err(f"{where()}: calls {sym.name!r} in section "
                                   f"{target.name!r}; subprograms must be in .text",
                                   sec.name)
                dest = sym.value // 8 + ins.imm + 1
                f.refs.append((local, "call", (target.index, dest)))
            elif ins.is_ld_imm64():
                if r.type != E.R_BPF_64_64 or idx + 1 >= n:
                    raise self.err(f"{where()}: unexpected relocation type {r.type} on "
                                   f"ld_imm64", sec.name)
                off = sym.value + ins.imm
                if target.is_code:
                    if target.index != text_idx or off % 8:
                        raise self.err(f"{where()}: takes the address of {sym.name!r} in "
                                       f"{target.name!r}; callbacks must be in .text",
                                       sec.name)
                    f.refs.append((local, "func", (target.index, off // 8)))
                elif target.name == ".maps":
                    name = self.map_at.get(off)
                    if name is None:
                        raise self.err(f"{where()}: no map at offset {off} of .maps",
                                       sec.name)
                    f.refs.append((local, "map", name))
                elif target.name in self.maps:
                    f.refs.append((local, "data", (target.name, off)))
                else:
                    raise self.err(f"{where()}: refers to {sym.name!r} in section "
                                   f"{target.name!r}, which is neither a map, global data "
                                   f"nor code", sec.name)
            else:
                raise self.err(f"{where()}: relocation type {r.type} on an instruction that "
                               f"is neither ld_imm64 nor call", sec.name)
        # bpf-to-bpf calls the compiler resolved itself (same section, no relocation):
        # code 0x85 with src_reg BPF_PSEUDO_CALL and dst_reg 0, found by bytes.find
        needle = bytes((I.CALL, I.BPF_PSEUDO_CALL << 4))
        pos = code.find(needle)
        while pos >= 0:
            i = pos // 8
            if pos % 8 == 0 and i not in relocated:
                f = self._func_of(funcs, i)
                if f is not None:
                    if sec.index != text_idx:
                        raise self.err(f"function {f.name!r}, {I.disasm(code, i)}: call "
                                       f"without relocation outside .text", sec.name)
                    imm = I.decode(code, i).imm
                    f.refs.append((i - f.start, "call", (sec.index, i + imm + 1)))
            pos = code.find(needle, pos + 1)
        for f in funcs:                 # in instruction order, as _link walks them
            f.refs.sort(key=_first)

    def _extern_ref(self, name: str, ins: I.Insn, rtype: int, local: int, has_next: bool,
                    where: Any, section: str) -> tuple:
        """The reference of an instruction to the extern ``name``."""
        kv = self.kconfig.get(name)
        if kv is not None:
            if ins.is_ld_imm64() and rtype == E.R_BPF_64_64 and has_next:
                return (local, "data", (KCONFIG_SECTION, kv.offset + ins.imm))
        elif name in self.ksyms:
            if ins.is_call() and rtype == E.R_BPF_64_32:
                if self.ksyms[name].kind != "kfunc":
                    raise self.err(f"{where()}: calls {name!r}, a __ksym variable", section)
                return (local, "kfunc", name)
            if ins.is_ld_imm64() and rtype == E.R_BPF_64_64 and has_next:
                return (local, "ksym", name)
        else:
            raise self.err(f"{where()}: refers to extern {name!r}, which is neither "
                           f"__kconfig nor __ksym (declare it with one, or define it)",
                           section)
        raise self.err(f"{where()}: unexpected relocation type {rtype} to extern {name!r}",
                       section)

    def _link_programs(self, spec: ObjectSpec) -> dict[str, ProgramSpec]:
        programs: dict[str, ProgramSpec] = {}
        text = self.elf.section_by_name.get(".text")
        for (shndx, _start), f in self.funcs.items():
            if text is not None and shndx == text.index:
                continue
            info = program_section(f.sec.name, self.name)
            if f.bind == E.STB_LOCAL:
                raise self.err(f"program {f.name!r} is static; programs must be global "
                               f"functions (drop 'static')", f.sec.name)
            if f.name in programs:
                raise self.err(f"two programs are called {f.name!r}", f.sec.name)
            prog = ProgramSpec(
                name=f.name, section=f.sec.name, type=info.prog_type,
                expected_attach_type=info.expected_attach_type, attach_to=info.attach_to,
                sleepable=info.sleepable, prog_flags=info.prog_flags,
                attach_kind=info.attach_kind, retprobe=info.retprobe,
                attach_btf=info.attach_btf, license=spec.license,
                kern_version=spec.kern_version)
            self._link(prog, f)
            programs[f.name] = prog
        return programs

    def _link(self, prog: ProgramSpec, main: _Func) -> None:
        """Lay out ``main`` and every function it reaches; fix calls; rebase records.

        The layout is libbpf's, so that both loaders give the kernel the same
        program (and tag): each function is appended where it is first reached,
        walking calls and callback references in instruction order, depth first.
        """
        layout = [main]
        seen = {id(main)}
        stack = [(main, iter(main.refs))]
        while stack:
            f, refs = stack[-1]
            for local, kind, payload in refs:
                if kind not in ("call", "func"):
                    continue
                callee = self.funcs.get(payload)
                if callee is None:
                    code = self.elf.contents(f.sec)
                    raise self.err(f"function {f.name!r}, {I.disasm(code, f.start + local)}: "
                                   f"target instruction {payload[1]} is not the start of a "
                                   f"function", f.sec.name)
                if id(callee) not in seen:
                    seen.add(id(callee))
                    layout.append(callee)
                    stack.append((callee, iter(callee.refs)))
                    break
            else:
                stack.pop()
        start_of = {}
        size = 0
        for f in layout:
            start_of[id(f)] = size
            size += f.count
        buf = bytearray()
        for f in layout:
            base = start_of[id(f)]
            code = self.elf.contents(f.sec)
            buf += code[f.start * 8:(f.start + f.count) * 8]
            for local, kind, payload in f.refs:
                at = base + local
                if kind in ("call", "func"):
                    I.set_imm(buf, at, start_of[id(self.funcs[payload])] - at - 1)
                    if kind == "func":
                        I.set_src_reg(buf, at, I.BPF_PSEUDO_FUNC)
                        I.set_imm(buf, at + 1, 0)
                elif kind == "kfunc":
                    I.set_src_reg(buf, at, I.BPF_PSEUDO_KFUNC_CALL)
                    I.set_imm(buf, at, 0)
                    prog.ksym_relocs.append(KsymReloc(at, payload, True))
                elif kind == "ksym":
                    I.set_imm(buf, at, 0)
                    I.set_imm(buf, at + 1, 0)
                    prog.ksym_relocs.append(KsymReloc(at, payload, False))
                elif kind == "map":
                    I.set_src_reg(buf, at, I.BPF_PSEUDO_MAP_FD)
                    I.set_imm(buf, at, 0)
                    I.set_imm(buf, at + 1, 0)
                    prog.map_relocs.append(MapReloc(at, payload, 0))
                else:                                   # global data
                    name, off = payload
                    I.set_src_reg(buf, at, I.BPF_PSEUDO_MAP_VALUE)
                    I.set_imm(buf, at, 0)
                    I.set_imm(buf, at + 1, off)
                    prog.map_relocs.append(MapReloc(at, name, off))
        prog.insns = bytes(buf)
        prog.map_relocs.sort()
        prog.ksym_relocs.sort()
        prog.functions = [(f.name, start_of[id(f)], f.count) for f in layout]
        if self.btf_ext is not None:
            self._rebase_ext(prog, layout, start_of)

    def _ext_index(self, sec: str) -> tuple:
        """This section's .BTF.ext records, indexed for slicing by byte offset."""
        idx = self.ext_index.get(sec)
        if idx is None:
            ext = self.btf_ext
            assert ext is not None
            funcs = {r.insn_off: r for r in ext.func_infos.get(sec, ())}
            lines = sorted(ext.line_infos.get(sec, ()), key=lambda r: r.insn_off)
            cores = sorted(ext.core_relos.get(sec, ()), key=lambda r: r.insn_off)
            idx = (funcs, [r.insn_off for r in lines], lines, [r.insn_off for r in cores], cores)
            self.ext_index[sec] = idx
        return idx

    def _rebase_ext(self, prog: ProgramSpec, layout: list[_Func],
                    start_of: dict[int, int]) -> None:
        from .btf.ext import CoreRelo, FuncInfo, LineInfo
        any_func_info = bool(self.btf_ext and self.btf_ext.func_infos)
        for f in layout:
            base = start_of[id(f)]
            lo, hi = f.start * 8, (f.start + f.count) * 8
            funcs, line_offs, lines, core_offs, cores = self._ext_index(f.sec.name)
            fi = funcs.get(lo)
            if fi is not None:
                prog.func_info.append(FuncInfo(base, fi.type_id))
            elif any_func_info:
                raise self.err(f"function {f.name!r} has no func_info in .BTF.ext",
                               f.sec.name)
            d = base * 8 - lo       # insn_off (bytes, >= lo) -> instruction in the program
            prog.line_info += [
                LineInfo((r.insn_off + d) >> 3, r.file_name_off, r.line_off, r.line_col)
                for r in lines[bisect_left(line_offs, lo):bisect_left(line_offs, hi)]]
            for r in cores[bisect_left(core_offs, lo):bisect_left(core_offs, hi)]:
                prog.core_relos.append(CoreRelo(             # these stay in bytes
                    insn_off=base * 8 + r.insn_off - lo, type_id=r.type_id,
                    access_str_off=r.access_str_off, kind=r.kind, access_str=r.access_str))
        # Sorted by insn_off as they are: each function's records are sorted
        # (_ext_index) and the functions sit at increasing, disjoint ranges.
