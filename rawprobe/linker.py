"""Static linking: a program's code and every subprogram it reaches, as one.

The ELF reader (:mod:`rawprobe.elf_reader`) splits each code section into
:class:`Func` records, each with the references its instructions make, in
instruction order:

* :class:`SubprogRef` -- a call (``call pc+N``, BPF_PSEUDO_CALL) of a
  subprogram, or the address of one taken as a callback (``ld_imm64`` of a
  function: BPF_PSEUDO_FUNC, e.g. for ``bpf_loop``);
* :class:`MapRef` -- an ``ld_imm64`` of a map (BPF_PSEUDO_MAP_FD) or of an
  address inside a global-data or ``.kconfig`` map's value (BPF_PSEUDO_MAP_VALUE);
* a :class:`~rawprobe.ksyms.KsymReloc` -- a kfunc call or an ``ld_imm64`` of
  a ``__ksym`` extern.

:meth:`Linker.link` lays a program out as libbpf does -- the program, then
each function where it is first reached, walking references in instruction
order, depth first -- so that both loaders give the kernel the same program
(and tag).  It fixes the call offsets, pre-encodes map and extern
references for the loader (``ProgramSpec.map_relocs``, ``ksym_relocs``), and
moves the ``.BTF.ext`` records of every function to the new layout:
func_info/line_info offsets in instructions (as BPF_PROG_LOAD wants them),
CO-RE relocation offsets in bytes.
"""
from __future__ import annotations

from bisect import bisect_left

from . import elf as E
from . import insn as I
from ._records import RecordTuple
from .ksyms import KsymReloc
from .spec import MapReloc

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable, Union

    from .btf.ext import BTFExt
    from .errors import ObjectFormatError
    from .spec import ProgramSpec

    Ref = Union["SubprogRef", "MapRef", KsymReloc]

__all__ = ["Func", "SubprogRef", "MapRef", "Linker"]


class SubprogRef(RecordTuple):
    """Instruction ``insn`` (counted from its function's start) calls the
    function starting at instruction ``start`` of section ``section`` (an
    index), or with ``callback`` loads its address."""
    __slots__ = ()
    _fields = ("insn", "section", "start", "callback")
    if TYPE_CHECKING:  # pragma: no cover
        insn: int
        section: int
        start: int
        callback: bool


class MapRef(RecordTuple):
    """Instruction ``insn`` loads map ``map``'s fd, or with ``value`` the
    address ``offset`` bytes into its value (global data, ``__kconfig``)."""
    __slots__ = ()
    _fields = ("insn", "map", "offset", "value")
    if TYPE_CHECKING:  # pragma: no cover
        insn: int
        map: str
        offset: int
        value: bool


class Func:
    """A function in a code section: ``start`` and ``count`` in instructions,
    ``bind`` and ``visibility`` its symbol's STB_* and STV_*, ``refs`` its
    references in instruction order."""
    __slots__ = ("name", "sec", "start", "count", "bind", "visibility", "refs")

    def __init__(self, name: str, sec: E.Section, start: int, count: int, bind: int,
                 visibility: int = E.STV_DEFAULT) -> None:
        self.name, self.sec, self.start, self.count, self.bind = name, sec, start, count, bind
        self.visibility = visibility
        self.refs: list[Ref] = []


class Linker:
    """Links the programs of one object.  ``funcs``: every function, by
    (section index, start instruction); ``err`` makes the reader's errors."""

    def __init__(self, elf: E.ElfFile, funcs: dict[tuple[int, int], Func],
                 btf_ext: BTFExt | None,
                 err: Callable[[str, str], ObjectFormatError]) -> None:
        self.elf = elf
        self.funcs = funcs
        self.btf_ext = btf_ext
        self.err = err
        self._ext_index: dict[str, tuple] = {}     # section -> its .BTF.ext records

    def link(self, prog: ProgramSpec, main: Func) -> None:
        """Lay out ``main`` and every function it reaches into ``prog``: its
        instructions, relocation records, functions and .BTF.ext records."""
        layout = self._layout(main)
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
            for r in f.refs:
                at = base + r.insn
                if type(r) is SubprogRef:
                    callee = self.funcs[(r.section, r.start)]
                    I.set_imm(buf, at, start_of[id(callee)] - at - 1)
                    if r.callback:
                        I.set_src_reg(buf, at, I.BPF_PSEUDO_FUNC)
                        I.set_imm(buf, at + 1, 0)
                elif type(r) is MapRef:
                    I.set_src_reg(buf, at, I.BPF_PSEUDO_MAP_VALUE if r.value
                                  else I.BPF_PSEUDO_MAP_FD)
                    I.set_imm(buf, at, 0)                   # the loader writes the fd
                    I.set_imm(buf, at + 1, r.offset)
                    prog.map_relocs.append(MapReloc(at, r.map, r.offset))
                else:                                       # KsymReloc
                    if r.call:
                        I.set_src_reg(buf, at, I.BPF_PSEUDO_KFUNC_CALL)
                    else:
                        I.set_imm(buf, at + 1, 0)
                    I.set_imm(buf, at, 0)                   # the loader resolves it
                    prog.ksym_relocs.append(KsymReloc(at, r.name, r.call))
        prog.insns = bytes(buf)
        prog.map_relocs.sort()
        prog.ksym_relocs.sort()
        prog.functions = [(f.name, start_of[id(f)], f.count) for f in layout]
        if self.btf_ext is not None:
            self._rebase_ext(prog, layout, start_of)

    def _layout(self, main: Func) -> list[Func]:
        """``main``, then each function where a depth-first walk of the
        references, in instruction order, first reaches it (libbpf's order)."""
        layout = [main]
        seen = {id(main)}
        stack = [(main, iter(main.refs))]
        while stack:
            f, refs = stack[-1]
            for r in refs:
                if type(r) is not SubprogRef:
                    continue
                callee = self.funcs.get((r.section, r.start))
                if callee is None:
                    code = self.elf.contents(f.sec)
                    raise self.err(f"function {f.name!r}, {I.disasm(code, f.start + r.insn)}: "
                                   f"target instruction {r.start} is not the start of a "
                                   f"function", f.sec.name)
                if id(callee) not in seen:
                    seen.add(id(callee))
                    layout.append(callee)
                    stack.append((callee, iter(callee.refs)))
                    break
            else:
                stack.pop()
        return layout

    # -- .BTF.ext -------------------------------------------------------------------

    def _ext_records(self, sec: str) -> tuple:
        """This section's .BTF.ext records, indexed for slicing by byte offset."""
        idx = self._ext_index.get(sec)
        if idx is None:
            ext = self.btf_ext
            assert ext is not None
            funcs = {r.insn_off: r for r in ext.func_infos.get(sec, ())}
            lines = sorted(ext.line_infos.get(sec, ()), key=lambda r: r.insn_off)
            cores = sorted(ext.core_relos.get(sec, ()), key=lambda r: r.insn_off)
            idx = (funcs, [r.insn_off for r in lines], lines, [r.insn_off for r in cores], cores)
            self._ext_index[sec] = idx
        return idx

    def _rebase_ext(self, prog: ProgramSpec, layout: list[Func],
                    start_of: dict[int, int]) -> None:
        from .btf.ext import CoreRelo, FuncInfo, LineInfo
        any_func_info = bool(self.btf_ext and self.btf_ext.func_infos)
        for f in layout:
            base = start_of[id(f)]
            lo, hi = f.start * 8, (f.start + f.count) * 8
            funcs, line_offs, lines, core_offs, cores = self._ext_records(f.sec.name)
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
        # (_ext_records) and the functions sit at increasing, disjoint ranges.
