"""uprobes and uretprobes: a program run when a process executes a file offset.

Minimum kernel: 4.17 for the uprobe PMU (``/sys/bus/event_source/devices/uprobe``),
which :func:`attach_uprobe` uses: ``perf_event_open`` with that PMU's type,
``config1`` = pointer to the path, ``config2`` = the *file* offset, and the
retprobe bit (from ``format/retprobe``) in ``config``.  Older kernels (3.5+)
get a tracefs ``uprobe_events`` entry instead (see :mod:`.tracefs`).

The kernel places uprobes on (inode, file offset), not on addresses, so a
symbol is turned into a file offset here: its ``st_value`` (a virtual address
in the ELF's own address space; for PIE executables and shared libraries that
space starts near 0) is mapped through the ``PT_LOAD`` segment that contains
it: ``offset = st_value - p_vaddr + p_offset``.  This is the same for
executables and shared libraries, PIE or not, and does not depend on where the
file is mapped at run time.

``pid=-1`` probes every process that maps the file (one perf event on CPU 0 is
enough: the BPF program hangs off the probe, not off the perf event);
``pid=N`` only that process (the event is bound to task N on any CPU).
"""
from __future__ import annotations

import os
import shutil
from functools import lru_cache

from ..errors import NotFoundError, NotSupportedError, ObjectFormatError
from ..uapi import ProgType

__all__ = ["attach_uprobe", "resolve_binary_path", "symbol_file_offset", "symbol_file_offsets"]


def _library_dirs() -> list[str]:
    import sysconfig
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for base in ("/lib", "/usr/lib", "/usr/local/lib"):
        if multiarch:
            dirs.append(f"{base}/{multiarch}")
    dirs += ["/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"]
    return dirs


def resolve_binary_path(path: str) -> str:
    """An absolute path for ``path``.

    A path containing ``/`` is used as given; a bare name containing ``.so`` is
    searched in ``LD_LIBRARY_PATH`` and the standard library directories, any
    other bare name in ``PATH``.
    """
    if not path:
        raise NotFoundError("uprobe: empty binary path")
    if "/" in path:
        if not os.path.isfile(path):
            raise NotFoundError(f"uprobe: binary {path!r} not found (or not a regular file)")
        return os.path.abspath(path)
    if ".so" in path:
        for d in _library_dirs():
            cand = os.path.join(d, path)
            if os.path.isfile(cand):
                return cand
        raise NotFoundError(
            f"uprobe: library {path!r} not found in LD_LIBRARY_PATH or the standard "
            "library directories; pass its full path")
    found = shutil.which(path)
    if found is None:
        raise NotFoundError(f"uprobe: executable {path!r} not found in PATH; pass its full path")
    return os.path.abspath(found)


def symbol_file_offset(path: str, symbol: str) -> int:
    """File offset of function ``symbol`` in ELF file ``path``.

    Looks in ``.symtab`` first (not stripped), then ``.dynsym`` (exported).
    ``name@VERSION`` / ``name@@VERSION`` are accepted and versioned names
    match their bare name.  Raises NotFoundError when absent or ambiguous.
    """
    st = os.stat(path)
    return _symbol_file_offset(path, st.st_dev, st.st_ino, st.st_mtime_ns, symbol)


def symbol_file_offsets(path: str, pattern: str) -> list[tuple[str, int]]:
    """``(name, file offset)`` of the functions in ELF file ``path`` whose names
    match glob ``pattern`` (``*``, ``?``: :func:`rawprobe.names.glob_match`), as
    libbpf resolves a uprobe.multi pattern: defined ``STT_FUNC`` symbols of
    ``.symtab`` and ``.dynsym`` (IFUNC resolvers are not functions to probe),
    a versioned ``name@VER`` matched by its name, each offset once (aliases and
    versions of one function share it: the first name found is given), in
    offset order.  Empty when none match."""
    st = os.stat(path)
    return list(_symbol_file_offsets(path, st.st_dev, st.st_ino, st.st_mtime_ns, pattern))


def _file_offset(elf, path: str, symbol: str, vaddr: int) -> int:
    from ..userelf import vaddr_to_offset
    offset = vaddr_to_offset(elf, vaddr)
    if offset is None:
        raise ObjectFormatError(f"uprobe: {symbol!r} in {path} has address {vaddr:#x}, "
                                "outside every loaded segment")
    return offset


@lru_cache(maxsize=64)
def _symbol_file_offset(path: str, _dev: int, _ino: int, _mtime: int, symbol: str) -> int:
    from ..userelf import open_elf
    with open_elf(path, "uprobe") as elf:
        return _file_offset(elf, path, symbol, _lookup(elf, path, symbol))


@lru_cache(maxsize=16)
def _symbol_file_offsets(path: str, _dev: int, _ino: int, _mtime: int,
                         pattern: str) -> tuple[tuple[str, int], ...]:
    from ..names import glob_match
    from ..userelf import open_elf

    found: dict[int, str] = {}
    with open_elf(path, "uprobe") as elf:
        for secname in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(secname)
            if sec is None or sec["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
                continue
            strtab = elf.get_section(sec["sh_link"]).data()
            for name_off, kind, shndx, value in _function_symbols(elf, sec):
                end = strtab.find(b"\0", name_off)
                name = strtab[name_off:end if end >= 0 else None].decode(errors="replace")
                name = name.partition("@")[0]
                if glob_match(name, pattern):
                    found.setdefault(_file_offset(elf, path, name, value), name)
    return tuple((name, off) for off, name in sorted(found.items()))


def _split_version(symbol: str) -> tuple[str, str | None, bool]:
    """``name@@VER`` -> (name, VER, True); ``name@VER`` -> (name, VER, False)."""
    name, at, ver = symbol.partition("@")
    if not at:
        return name, None, False
    if ver.startswith("@"):
        return name, ver[1:], True
    return name, ver, False


def _matching_symbols(elf, sec, name: bytes):
    """(index, bind, type, shndx, value) of every symbol of ``sec`` named ``name``.

    Scans the raw table with struct instead of building a pyelftools Symbol
    per entry: a large .symtab has ~100k entries and that is 50x faster.
    """
    strtab = elf.get_section(sec["sh_link"]).data()
    # Offsets at which the string is ``name`` (possibly the tail of a longer
    # string: linkers share suffixes) or a versioned ``name@VER`` (.symtab).
    offsets = set()
    for needle in (name + b"\0", name + b"@"):
        i = strtab.find(needle)
        while i >= 0:
            offsets.add(i)
            i = strtab.find(needle, i + 1)
    if not offsets:
        return
    for idx, name_off, info, shndx, value in _raw_symbols(elf, sec):
        if name_off in offsets:
            yield idx, info >> 4, info & 0xF, shndx, value


_STT_FUNC, _STT_GNU_IFUNC, _STB_GLOBAL = 2, 10, 1


def _raw_symbols(elf, sec):
    """(index, name offset, info, shndx, value) of every symbol of ``sec``,
    unpacked with struct (see :func:`_matching_symbols`)."""
    import struct
    end = "<" if elf.little_endian else ">"
    if elf.elfclass == 64:
        fmt, name_i, info_i, shndx_i, value_i = end + "IBBHQQ", 0, 1, 3, 4
    else:
        fmt, name_i, info_i, shndx_i, value_i = end + "IIIBBH", 0, 3, 5, 1
    entsize = struct.calcsize(fmt)
    data = sec.data()
    for idx, ent in enumerate(struct.iter_unpack(fmt, data[: len(data) // entsize * entsize])):
        yield idx, ent[name_i], ent[info_i], ent[shndx_i], ent[value_i]


def _function_symbols(elf, sec):
    """(name offset, type, shndx, value) of the functions ``sec`` defines
    (``STT_FUNC``; SHN_UNDEF, 0, is an import defined elsewhere)."""
    for _idx, name_off, info, shndx, value in _raw_symbols(elf, sec):
        if info & 0xF == _STT_FUNC and shndx != 0:
            yield name_off, info & 0xF, shndx, value


def _versions(elf, sec) -> tuple[list[int], dict[int, str]]:
    """Raw .gnu.version entries (bit 15 = hidden) and version index -> name."""
    import struct
    versym = elf.get_section_by_name(".gnu.version")
    verdef = elf.get_section_by_name(".gnu.version_d")
    if versym is None or verdef is None or sec.name != ".dynsym":
        return [], {}
    end = "<" if elf.little_endian else ">"
    raw = versym.data()
    entries = [v for (v,) in struct.iter_unpack(end + "H", raw[: len(raw) // 2 * 2])]
    names = {}
    for vd, aux in verdef.iter_versions():
        first = next(iter(aux), None)
        if first is not None:
            names[vd["vd_ndx"]] = first.name
    return entries, names


def _lookup(elf, path: str, symbol: str) -> int:
    name, version, default_only = _split_version(symbol)
    for secname in (".symtab", ".dynsym"):
        sec = elf.get_section_by_name(secname)
        if sec is None or sec["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM"):
            continue
        hits = []
        for idx, bind, kind, shndx, value in _matching_symbols(elf, sec, name.encode()):
            # SHN_UNDEF (0) is an import, defined in another object.
            if shndx != 0 and kind in (_STT_FUNC, _STT_GNU_IFUNC):
                hits.append((idx, bind, value, kind))
        if not hits:
            continue
        versym, vernames = _versions(elf, sec)
        if versym:
            def ver(i):
                return vernames.get(versym[i] & 0x7FFF) if i < len(versym) else None

            def hidden(i):
                return i < len(versym) and bool(versym[i] & 0x8000)
            if version is not None:
                hits = [h for h in hits if ver(h[0]) == version
                        and not (default_only and hidden(h[0]))]
            elif len({h[2] for h in hits}) > 1:
                # Several versions: the default one (not hidden) is what a
                # program linking today calls.
                hits = [h for h in hits if not hidden(h[0])] or hits
        if any(h[3] == _STT_GNU_IFUNC for h in hits):
            raise NotSupportedError(
                f"uprobe: {symbol!r} in {path} is an IFUNC: its address is a "
                "resolver that picks the real implementation at load time; probe "
                "the implementation (e.g. __strlen_avx2) or pass an offset")
        values = {h[2] for h in hits}
        if len(values) > 1:
            # Aliases share an address; distinct addresses are local duplicates:
            # prefer the one global definition if there is one.
            glob = {h[2] for h in hits if h[1] == _STB_GLOBAL}
            if len(glob) != 1:
                raise NotFoundError(
                    f"uprobe: symbol {symbol!r} is ambiguous in {path}: addresses "
                    + ", ".join(hex(v) for v in sorted(values))
                    + "; pass name@VERSION or an explicit offset")
            values = glob
        if values:
            return values.pop()
    raise NotFoundError(f"uprobe: function {symbol!r} not found in {path} (.symtab/.dynsym)")


# -- attaching -------------------------------------------------------------


def _has_pmu() -> bool:
    return os.path.exists("/sys/bus/event_source/devices/uprobe/type")


def _open_pmu(path: str, file_offset: int, pid: int, retprobe: bool, ref_ctr_offset: int = 0):
    """A uprobe PMU perf event; ``ref_ctr_offset`` (4.20+, the PMU's
    ``ref_ctr_offset`` format field) is the file offset of a 16-bit counter the
    kernel raises while the probe exists: a USDT semaphore."""
    from .._sys import perf
    attr = {"type": perf.pmu_type("uprobe"), "uprobe_path": path.encode(),
            "probe_offset": file_offset, "sample_period": 1, "wakeup_events": 1}
    config = 0
    if retprobe:
        config |= 1 << perf.retprobe_bit("uprobe")
    if ref_ctr_offset:
        field, lo, hi = perf.pmu_format("uprobe", "ref_ctr_offset")
        if field != "config" or ref_ctr_offset >> (hi - lo + 1):
            raise NotSupportedError(f"uprobe {path}: cannot pass reference counter offset "
                                    f"{ref_ctr_offset:#x} in {field}:{lo}-{hi}")
        config |= ref_ctr_offset << lo
    if config:
        attr["config"] = config
    return perf.perf_event_open(attr, pid=pid if pid >= 0 else -1, cpu=-1 if pid >= 0 else 0)


def _translate(err, target: str, pid: int) -> Exception:
    import errno
    if err.errno == errno.ESRCH:
        return NotFoundError(f"uprobe {target}: no process with pid {pid}")
    if err.errno == errno.ENOENT:
        return NotFoundError(f"uprobe {target}: the kernel cannot find the file")
    if err.errno == errno.EINVAL:
        from ..errors import SyscallError
        return SyscallError(f"uprobe {target}", err.errno,
                            "the offset may lie beyond the end of the file, or the "
                            "file is not a regular file")
    return err


def attach_uprobe(prog, path: str, symbol: str | None = None, offset: int = 0,
                  pid: int = -1, retprobe: bool = False, *, via: str = "auto"):
    """Attach a uprobe program to ``path`` at ``symbol+offset`` (or at file offset
    ``offset`` when ``symbol`` is None), for process ``pid`` or every process (-1).

    ``path`` may be a bare executable name (searched in PATH) or library name
    (``"libc.so.6"``).  ``retprobe`` fires at the function's return.  ``via`` is
    ``"auto"`` (PMU, else tracefs), ``"pmu"`` or ``"tracefs"``.
    """
    from ..errors import InvalidValueError, SyscallError
    from . import _attach, tracefs
    # uprobe programs are BPF_PROG_TYPE_KPROBE too
    _attach.check_type(prog, (ProgType.KPROBE,), "a uprobe", 'SEC("uprobe/<path>:<function>")')
    if via not in ("auto", "pmu", "tracefs"):
        raise InvalidValueError(f"via must be 'auto', 'pmu' or 'tracefs', not {via!r}")
    if offset < 0:
        raise ObjectFormatError(f"uprobe {path}: negative offset {offset}")
    if symbol is None and offset == 0:
        raise ObjectFormatError(f"uprobe {path}: give a function name or a file offset")
    path = resolve_binary_path(path)
    file_offset = offset
    if symbol:
        file_offset += symbol_file_offset(path, symbol)
    target = f"{path}:{symbol or ''}" + (f"+{offset:#x}" if symbol and offset
                                         else "" if symbol else f"{offset:#x}")
    kind = "uretprobe" if retprobe else "uprobe"
    if via == "pmu" or (via == "auto" and _has_pmu()):
        try:
            pfd = _open_pmu(path, file_offset, pid, retprobe)
        except SyscallError as e:
            raise _translate(e, target, pid) from None
        return _attach.attach(prog, pfd, kind, target)

    if any(c.isspace() for c in path):
        raise NotSupportedError(f"uprobe {target}: without the uprobe PMU the path goes "
                                "through tracefs uprobe_events, which cannot take spaces")
    event = tracefs.create_event("uprobe_events", "r" if retprobe else "p",
                                 f"{path}:{file_offset:#x}",
                                 symbol or os.path.basename(path))
    try:
        from .tracepoint import open_tracepoint_event
        pfd = open_tracepoint_event(event.id(), pid)
    except SyscallError as e:
        event.remove_quietly()
        raise _translate(e, target, pid) from None
    except BaseException:
        event.remove_quietly()
        raise
    return _attach.attach(prog, pfd, kind, target, event=event)
