"""Reading a clang-built BPF ELF object into an :class:`~rawprobe.spec.ObjectSpec`.

Kernel-independent: the same object gives the same spec on every machine.
Following libbpf's object model, :class:`Reader`:

* reads the license, ``version``, ``.BTF`` and ``.BTF.ext``, and fills the
  DATASEC sizes and offsets clang leaves 0 (as libbpf does before
  BPF_BTF_LOAD);
* makes the maps: BTF-defined ones in ``.maps`` (``__uint``/``__type``/
  ``__array``, initial program-array and map-in-map slots), one single-entry
  array per global-data section (``.rodata``, ``.data``, ``.bss``,
  ``.rodata.*``, ``.data.*``; string literals in ``.rodata.str1.1`` included)
  whose DATASEC variables become VariableSpecs, and the ``.kconfig`` map of
  the ``__kconfig`` externs (:mod:`.kconfig`); collects ``__ksym`` externs
  (:mod:`.ksyms`) and lists struct_ops maps;
* splits each code section into functions and classifies each relocated
  instruction as a reference (:mod:`.linker`'s records); a global ``.text``
  function of hidden visibility (``__hidden``) gets a static BTF FUNC, as
  libbpf gives it, so the kernel verifies it in its callers' context;
* makes a ProgramSpec of every global function in an executable section other
  than ``.text`` (its section name gives type and attach target,
  :mod:`.sections`; several may share a section) and links it (:mod:`.linker`).

Refused with a clear ObjectFormatError: the legacy ``maps`` section (``struct
bpf_map_def``), calls between program sections, static programs, externs
that are neither ``__kconfig`` nor ``__ksym``.
"""
from __future__ import annotations

import os

from . import elf as E
from . import insn as I
from .errors import BTFError, ObjectFormatError, RawprobeError
from .kconfig import SECTION as KCONFIG_SECTION
from .ksyms import SECTION as KSYMS_SECTION, KsymReloc
from .linker import Func, Linker, MapRef, SubprogRef
from .sections import program_section
from .spec import (LIBBPF_PIN_BY_NAME, LIBBPF_PIN_NONE, MapSpec, ObjectSpec, ProgramSpec,
                   VariableSpec, _kernel_name)
from .uapi import MAP_IN_MAP_TYPES, MapFlags, MapType

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .btf.ext import BTFExt
    from .btf.parse import BTFSpec
    from .kconfig import KconfigVar
    from .ksyms import Ksym

__all__ = ["Reader"]

_MAX_DATA_SIZE = 1 << 29       # far above KMALLOC_MAX_SIZE, the kernel's limit
_UINT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                "pinning", "map_extra")


def _object_name(name: str) -> str:
    """The object's name as libbpf takes it: the file name up to its first dot."""
    return os.path.basename(name).split(".", 1)[0]


def _insn(ref: Any) -> int:
    return ref.insn


def _is_data_section(s: E.Section) -> bool:
    if s.flags & E.SHF_EXECINSTR or not s.flags & E.SHF_ALLOC:
        return False
    if s.type == E.SHT_NOBITS:
        return s.name == ".bss" or s.name.startswith(".bss.")
    if s.type != E.SHT_PROGBITS:
        return False
    n = s.name
    return n in (".data", ".rodata") or n.startswith((".data.", ".rodata."))


class Reader:
    """One object file read into an ObjectSpec (:meth:`parse`)."""

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
        self.funcs: dict[tuple[int, int], Func] = {}  # (shndx, start insn) -> func
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
                f = Func(s.name, sec, s.value // 8, s.size // 8, s.bind, s.visibility)
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

    def _func_of(self, funcs: list[Func], idx: int) -> Func | None:
        for f in funcs:
            if f.start <= idx < f.start + f.count:
                return f
        return None

    def _classify(self, sec: E.Section, funcs: list[Func]) -> None:
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

            def where(f: Func = f, idx: int = idx) -> str:   # only on error: disasm costs
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
                f.refs.append(SubprogRef(local, target.index, dest, False))
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
                    f.refs.append(SubprogRef(local, target.index, off // 8, True))
                elif target.name == ".maps":
                    name = self.map_at.get(off)
                    if name is None:
                        raise self.err(f"{where()}: no map at offset {off} of .maps",
                                       sec.name)
                    f.refs.append(MapRef(local, name, 0, False))
                elif target.name in self.maps:
                    f.refs.append(MapRef(local, target.name, off, True))
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
                    f.refs.append(SubprogRef(i - f.start, sec.index, i + imm + 1, False))
            pos = code.find(needle, pos + 1)
        for f in funcs:                 # in instruction order, as the linker walks them
            f.refs.sort(key=_insn)

    def _extern_ref(self, name: str, ins: I.Insn, rtype: int, local: int, has_next: bool,
                    where: Any, section: str) -> MapRef | KsymReloc:
        """The reference of an instruction to the extern ``name``."""
        kv = self.kconfig.get(name)
        if kv is not None:
            if ins.is_ld_imm64() and rtype == E.R_BPF_64_64 and has_next:
                return MapRef(local, KCONFIG_SECTION, kv.offset + ins.imm, True)
        elif name in self.ksyms:
            if ins.is_call() and rtype == E.R_BPF_64_32:
                if self.ksyms[name].kind != "kfunc":
                    raise self.err(f"{where()}: calls {name!r}, a __ksym variable", section)
                return KsymReloc(local, name, True)
            if ins.is_ld_imm64() and rtype == E.R_BPF_64_64 and has_next:
                return KsymReloc(local, name, False)
        else:
            raise self.err(f"{where()}: refers to extern {name!r}, which is neither "
                           f"__kconfig nor __ksym (declare it with one, or define it)",
                           section)
        raise self.err(f"{where()}: unexpected relocation type {rtype} to extern {name!r}",
                       section)

    def _link_programs(self, spec: ObjectSpec) -> dict[str, ProgramSpec]:
        linker = Linker(self.elf, self.funcs, self.btf_ext, self.err)
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
            linker.link(prog, f)
            programs[f.name] = prog
        return programs
