"""Turning an :class:`~rawprobe.spec.ObjectSpec` into kernel objects.

Order of work, each step owning what it made until the Collection does:

1. program BTF -> ``BPF_BTF_LOAD`` (sanitised for the running kernel only
   when the plain blob is refused, so the common case probes nothing);
2. maps -> ``BPF_MAP_CREATE``; global-data maps get their initial contents and
   ``.rodata`` is frozen;
3. each program: a copy of its linked instructions gets map fds written into
   its ``ld_imm64`` slots and its CO-RE relocations applied against the
   running kernel's BTF, then ``BPF_PROG_LOAD`` -- first without a verifier
   log (cheap), and only on failure again with a log, to build a VerifierError;
4. program-array slots declared in the object are filled.

If any step fails, everything created so far is closed before the error
propagates.  Kernel BTF is only opened when a program needs it (CO-RE
relocations, or a ``tp_btf``/``fentry``/``lsm`` target).
"""
from __future__ import annotations

import errno as _errno
import mmap
import os
import struct

from ._sys import bpf as _bpf
from ._sys.fd import FD
from .errors import (ENOTSUPP, ClosedError, NotFoundError, NotSupportedError, PermissionDeniedError,
                     PinError, RawprobeError, SyscallError, VerifierError, errno_name)
from .kconfig import SECTION as KCONFIG_SECTION, kernel_version_code
from .ksyms import POISON_KFUNC_CALL
from .maps import Map, possible_cpus
from .names import sanitize
from .pinning import DEFAULT_PIN_PATH
from .programs import USDT_IP_MAP, USDT_SPECS_MAP, Program, UsdtMaps
from .spec import LIBBPF_PIN_BY_NAME
from .uapi import (BPF_OBJ_NAME_LEN, MAP_IN_MAP_TYPES, MAP_TYPES_WITHOUT_BTF,
                   MAP_TYPES_WITHOUT_BTF_VALUE, AttachType, MapFlags, MapType, ProgType)

# No run-time ``typing``: it imports re, enum, collections... (several ms).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterable, Mapping, Optional, Union

    from .link import Link
    from .spec import MapSpec, ObjectSpec, ProgramSpec, VariableSpec

__all__ = ["Collection", "Variable", "load"]

_FUNC_INFO = struct.Struct("<II")
_LINE_INFO = struct.Struct("<IIII")
_IMM = struct.Struct("<i")
# errnos with which the verifier (not a missing feature or privilege) refuses
_VERIFIER_ERRNOS = {_errno.EINVAL, _errno.EACCES, _errno.E2BIG, _errno.ENOSPC, _errno.EFAULT,
                    _errno.ERANGE, ENOTSUPP}
# the programs that run from a BPF trampoline (fentry, fexit, fmod_ret, LSM hooks)
_TRAMPOLINE_ATTACH = (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT,
                      AttachType.MODIFY_RETURN, AttachType.LSM_MAC, AttachType.LSM_CGROUP)
_LOG_START = 1 << 18           # 256 KiB; grown up to _LOG_MAX on ENOSPC
_LOG_MAX = 1 << 28            # the kernel caps log_size near 2^30 - 1


def load(path: Union[str, os.PathLike[str]], variables: Optional[Mapping[str, Any]] = None,
         **kwargs: Any) -> Collection:
    """Parse ``path``, set ``variables`` (name -> bytes | int), and load it."""
    from .spec import ObjectSpec
    spec = ObjectSpec.from_file(path)
    for name, value in (variables or {}).items():
        _variable_spec(spec, name).set(value)
    return Collection.from_spec(spec, **kwargs)


def _variable_spec(spec: ObjectSpec, name: str) -> VariableSpec:
    try:
        return spec.variables[name]
    except KeyError:
        known = ", ".join(sorted(spec.variables)) or "none"
        raise NotFoundError(f"{spec.name}: no global variable {name!r} (it has: {known})") \
            from None


class Variable:
    """A global variable after load.

    ``.data``/``.bss`` variables are read and written through an mmap of their
    map (5.5+, ``BPF_F_MMAPABLE``), so a program's writes are seen at once;
    ``.rodata`` ones are constants: readable, not settable after load.
    """

    def __init__(self, spec: VariableSpec, map: Map, view: Optional[memoryview]) -> None:
        self.spec = spec
        self.name = spec.name
        self.map = map
        self.offset = spec.offset
        self.size = spec.size
        self.const = spec.const
        self._view = view

    def _check_open(self) -> None:
        if self.map.closed:     # its mmap went with it
            raise ClosedError(f"variable {self.name!r}: its map {self.map.name!r} is closed "
                              f"(the Collection was closed)")

    def get(self) -> bytes:
        self._check_open()
        if self._view is not None:
            return bytes(self._view[self.offset:self.offset + self.size])
        value = self.map.lookup(0)
        if value is None:  # pragma: no cover - an array always has slot 0
            raise RawprobeError(f"variable {self.name!r}: map {self.map.name!r} is empty")
        return value[self.offset:self.offset + self.size]

    def get_int(self, signed: bool = False) -> int:
        return int.from_bytes(self.get(), "little", signed=signed)

    def set(self, value: Union[bytes, bytearray, memoryview, int]) -> None:
        if self.const:
            raise RawprobeError(f"variable {self.name!r} is const (.rodata, frozen at "
                                f"load): set it on the ObjectSpec before load")
        data = self.spec.encode(value)      # the same checks as before load
        self._check_open()
        if self._view is not None:
            self._view[self.offset:self.offset + self.size] = data
            return
        old = self.map.lookup(0) or bytes(self.map.value_size)
        self.map.update(0, old[:self.offset] + data + old[self.offset + self.size:])

    def __repr__(self) -> str:
        return f"<Variable {self.name!r} in {self.map.name!r} at {self.offset}+{self.size}>"


class Collection:
    """The kernel objects made from one ObjectSpec: ``programs``, ``maps``,
    ``variables`` and the links attached through its programs.

    ``close()`` (or leaving a ``with`` block) detaches the links and closes
    every program and map fd; the kernel frees what nothing else holds.
    """

    def __init__(self) -> None:
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        self.variables: dict[str, Variable] = {}
        self.links: list[Link] = []
        self._btf_fd: Optional[FD] = None
        self._mmaps: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        self._pinned_here: list[str] = []     # pins this load made
        self.spec: Optional[ObjectSpec] = None

    # -- building ----------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: ObjectSpec, *,
                  programs: Union[str, Iterable[str], None] = None,
                  kernel_btf: Any = None, log_level: int = 0,
                  pin_path: Union[str, os.PathLike[str], None] = None) -> Collection:
        """Load ``spec``.  ``programs`` limits which programs are loaded: one
        name, or several (all by default; maps are always all created).
        ``kernel_btf`` overrides the running kernel's BTF for CO-RE (a KernelBTF
        or BTFSpec).  ``log_level`` > 0 always asks the verifier for a log (kept
        in ``Program.log``).  ``pin_path``: the bpffs directory of the maps
        pinned by name (default /sys/fs/bpf; :mod:`rawprobe.pinning`)."""
        coll = cls()
        coll.spec = spec
        try:
            _Loader(coll, spec, kernel_btf, log_level, pin_path).run(programs)
        except BaseException:
            for path in coll._pinned_here:      # as libbpf: only what this load pinned
                try:
                    os.unlink(path)
                except OSError:
                    pass
            coll.close()
            raise
        return coll

    def _add_link(self, link: Link) -> None:
        self.links.append(link)

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Detach every link, close every program and map (pinned maps stay
        pinned).  Idempotent."""
        for link in reversed(self.links):
            link.close()
        self.links.clear()
        for view in self._views:
            view.release()
        self._views.clear()
        for m in self._mmaps:
            m.close()
        self._mmaps.clear()
        for p in self.programs.values():
            p.close()
        for mp in self.maps.values():
            mp.close()
        if self._btf_fd is not None:
            self._btf_fd.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = self.spec.name if self.spec is not None else "?"
        return (f"<Collection {name!r}: {len(self.programs)} programs, {len(self.maps)} "
                f"maps, {len(self.links)} links>")


class _Loader:
    """One load of one spec into one Collection (kept apart to keep state local)."""

    def __init__(self, coll: Collection, spec: ObjectSpec, kernel_btf: Any,
                 log_level: int, pin_path: Union[str, os.PathLike[str], None]) -> None:
        self.coll = coll
        self.spec = spec
        self.pin_path = DEFAULT_PIN_PATH if pin_path is None else os.fspath(pin_path)
        self._pin_dir_ready = False
        self._kernel_btf = kernel_btf
        self._own_kernel = kernel_btf is None     # the running kernel's BTF, not given
        self.log_level = log_level
        self._relocator: Any = None
        self._core_cache: Any = False      # not looked at yet; None: not used
        self._ksyms: Any = None            # KsymResolver, once a program needs it
        self._usdt: Optional[UsdtMaps] = None

    def run(self, only: Union[str, Iterable[str], None]) -> None:
        spec = self.spec
        if isinstance(only, str):       # one name, not its letters
            only = (only,)
        wanted = list(spec.programs) if only is None else list(only)
        for name in wanted:
            if name not in spec.programs:
                known = ", ".join(sorted(spec.programs)) or "none"
                raise NotFoundError(f"{spec.name}: no program {name!r} (it has: {known})")
        if spec.struct_ops:
            maps = ", ".join(f"{n!r} ({sec})" for n, sec in spec.struct_ops.items())
            raise NotSupportedError(
                f"{spec.name}: struct_ops maps ({maps}) and their struct_ops/ programs "
                f"are not supported by rawprobe: it cannot register a kernel struct_ops "
                f"(use libbpf for this object)")
        for name in wanted:
            _check_loadable(spec.programs[name])
        self._load_btf([spec.programs[n] for n in wanted])
        for name, mspec in spec.maps.items():
            self.coll.maps[name] = self._create_map(mspec)
        self._variables()
        maps = self.coll.maps
        if USDT_SPECS_MAP in maps and USDT_IP_MAP in maps:
            self._usdt = UsdtMaps(maps[USDT_SPECS_MAP], maps[USDT_IP_MAP])
        try:
            for name in wanted:
                self.coll.programs[name] = self._load_program(spec.programs[name])
        finally:
            if self._ksyms is not None:
                self._ksyms.close()     # each program holds the module BTFs it uses
        if self._core_cache:
            self._core_cache.save()
        self._fill_prog_arrays()

    # -- kernel BTF ------------------------------------------------------------------

    def kernel_btf(self) -> Any:
        if self._kernel_btf is None:
            from .btf.kernel import KernelBTF
            try:
                self._kernel_btf = KernelBTF.load()
            except FileNotFoundError:
                raise NotSupportedError(
                    "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing; "
                    "CONFIG_DEBUG_INFO_BTF is off): CO-RE and BTF-typed attach points "
                    "need it") from None
        return self._kernel_btf

    # -- program BTF -----------------------------------------------------------------

    def _load_btf(self, programs: list[ProgramSpec]) -> None:
        btf = self.spec.btf
        if btf is None:
            return
        # The object's own blob with the DATASEC fix-ups patched in: the common
        # case needs no re-encoding (nor importing marshal, which needs dataclasses).
        blob = btf.load_blob()
        if blob is None:
            from .btf import marshal
            blob = marshal.encode(btf)
        try:
            self.coll._btf_fd = _bpf.btf_load(blob)
            return
        except PermissionDeniedError:
            raise
        except SyscallError as first:
            from .btf import marshal
            feats = _btf_features()
            if feats is not None:
                try:
                    self.coll._btf_fd = _bpf.btf_load(marshal.encode(btf, kernel_features=feats))
                    return
                except SyscallError:
                    pass
            # Like libbpf: programs without BTF still load when nothing needs it.
            if any(p.attach_btf or _has_global_subprograms(p, btf) for p in programs):
                log = bytearray(1 << 20)
                try:
                    _bpf.btf_load(blob, log_buf=log)
                except SyscallError:
                    pass
                text = log.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
                raise NotSupportedError(
                    f"{self.spec.name}: the kernel refused the object's BTF ({first}); "
                    f"its programs need it. Kernel BTF log: {text[-500:] or 'empty'}") \
                    from None

    # -- maps ------------------------------------------------------------------------

    def _create_map(self, m: MapSpec) -> Map:
        max_entries = m.max_entries
        if m.type == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = possible_cpus()
        if m.pinning == LIBBPF_PIN_BY_NAME:
            return self._pinned_map(m, max_entries)
        return Map(m.name, self._new_map(m, max_entries), m.type, m.key_size, m.value_size,
                   max_entries, m.map_flags, spec=m)

    def _pinned_map(self, m: MapSpec, max_entries: int) -> Map:
        """The map pinned at <pin_path>/<name> if it matches ``m``, else a new map
        pinned there (:mod:`rawprobe.pinning`)."""
        from . import pinning
        if not self._pin_dir_ready:
            pinning.prepare_dir(self.pin_path)
            self._pin_dir_ready = True
        path = pinning.pin_file(self.pin_path, m.name)
        for _ in range(2):     # a second look if another loader pins first
            fd = pinning.open_pinned(path, m.name)
            if fd is not None:
                try:
                    pinning.check_reusable(fd, m, max_entries, path)
                except BaseException:
                    fd.close()
                    raise
                return Map(m.name, fd, m.type, m.key_size, m.value_size, max_entries,
                           m.map_flags, spec=m, pin_path=path, reused=True)
            fd = self._new_map(m, max_entries)
            try:
                pinned = pinning.pin(fd, path, m.name)
            except BaseException:
                fd.close()
                raise
            if pinned:
                self.coll._pinned_here.append(path)
                return Map(m.name, fd, m.type, m.key_size, m.value_size, max_entries,
                           m.map_flags, spec=m, pin_path=path)
            fd.close()
        raise PinError(f"map {m.name!r}: something was pinned at {path} and gone again "
                       f"before it could be opened; load again")

    def _new_map(self, m: MapSpec, max_entries: int) -> FD:
        """BPF_MAP_CREATE for ``m``, with its initial contents, frozen if it asks."""
        inner_fd: Optional[FD] = None
        btf_fd = self.coll._btf_fd
        try:
            if m.type in MAP_IN_MAP_TYPES:
                if m.inner is None:
                    raise RawprobeError(f"map {m.name!r}: a map of maps needs an inner "
                                        f"map definition (__array(values, struct ...))")
                inner_fd = self._raw_map(m.inner, m.inner.max_entries, None)
            contents = self._kconfig_value() if m.section == KCONFIG_SECTION else m.contents
            fd = self._raw_map(m, max_entries, inner_fd, btf_fd)
            if contents is not None:
                _bpf.map_update_elem(fd, b"\0\0\0\0", contents)
            if m.frozen:
                _bpf.map_freeze(fd)
        finally:
            if inner_fd is not None:
                inner_fd.close()
        return fd

    def _raw_map(self, m: MapSpec, max_entries: int, inner_fd: Optional[FD],
                 btf_fd: Optional[FD] = None) -> FD:
        name = (m.kernel_name or m.name).encode()
        kw = dict(map_flags=m.map_flags, map_name=name,
                  inner_map_fd=inner_fd.fileno() if inner_fd is not None else 0,
                  map_extra=m.map_extra, numa_node=m.numa_node)
        key_id, value_id = _map_btf_ids(m) if btf_fd is not None else (0, 0)
        try:
            if key_id or value_id:
                try:
                    return _bpf.map_create(m.type, m.key_size, m.value_size, max_entries,
                                           btf_fd=btf_fd.fileno(),  # type: ignore[union-attr]
                                           btf_key_type_id=key_id, btf_value_type_id=value_id,
                                           **kw)
                except SyscallError as e:
                    # A kernel that refuses the BTF type ids (older ones reject some
                    # types, e.g. a DATASEC value before 5.2; a map type may not take
                    # them) makes the same map without, as libbpf does.  Nothing is
                    # lost but bpftool's typed dumps -- unless the value holds a
                    # spin lock, timer or kptr, and then the verifier says so.
                    if isinstance(e, PermissionDeniedError) or \
                            e.errno not in (_errno.EINVAL, ENOTSUPP):
                        raise
            return _bpf.map_create(m.type, m.key_size, m.value_size, max_entries, **kw)
        except SyscallError as e:
            if e.errno in (_errno.EINVAL, ENOTSUPP) and not isinstance(e, PermissionDeniedError):
                raise NotSupportedError(
                    f"map {m.name!r} (type {_map_type_name(m.type)}, key {m.key_size} B, "
                    f"value {m.value_size} B, {max_entries} entries, flags "
                    f"{m.map_flags:#x}): the kernel refused it ({errno_name(e.errno)}): "
                    f"this map type or flag needs a newer kernel, or the definition is "
                    f"invalid") from None
            raise type(e)(f"{e.call} of map {m.name!r}", e.errno, e.hint) from None

    def _kconfig_value(self) -> bytes:
        """The ``.kconfig`` map's value: each ``__kconfig`` extern from the
        kernel's configuration or, for ``LINUX_*``, computed here as libbpf
        computes it; an absent weak extern stays 0 (:mod:`rawprobe.kconfig`)."""
        from . import kconfig
        spec = self.spec
        value = bytearray(spec.maps[KCONFIG_SECTION].value_size)
        path, config = "", {}
        if any(n.startswith("CONFIG_") for n in spec.kconfig):
            path, config = kconfig.read_system_config()
        for name, var in spec.kconfig.items():
            if name.startswith("CONFIG_"):
                raw: Any = config.get(name)
                source = path
            else:
                raw = _linux_value(name)
                source = "the running kernel"
            if raw is None:
                if var.weak:
                    continue            # libbpf's default for an absent weak extern
                where = (f"is not set in {path}" if name.startswith("CONFIG_") else
                         "is not one rawprobe computes (LINUX_KERNEL_VERSION, "
                         "LINUX_HAS_BPF_COOKIE, LINUX_HAS_SYSCALL_WRAPPER)")
                raise NotFoundError(f"{spec.name}: extern {name!r} (__kconfig) {where}; "
                                    f"declare it __weak to read 0 when absent")
            value[var.offset:var.offset + var.size] = kconfig.encode(
                var, raw, f"{spec.name}: {source}")
        return bytes(value)

    def _variables(self) -> None:
        coll = self.coll
        views: dict[str, Optional[memoryview]] = {}
        for name, vs in self.spec.variables.items():
            mp = coll.maps[vs.map_name]
            if vs.map_name not in views:
                views[vs.map_name] = self._map_view(mp)
            coll.variables[name] = Variable(vs, mp, views[vs.map_name])

    def _map_view(self, mp: Map) -> Optional[memoryview]:
        if not mp.map_flags & MapFlags.MMAPABLE or mp.value_size == 0:
            return None
        size = (mp.value_size + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1)
        writable = not (mp.spec is not None and mp.spec.frozen)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            mm = mmap.mmap(mp.fd, size, flags=mmap.MAP_SHARED, prot=prot)
        except OSError:
            return None     # fall back to lookup/update
        self.coll._mmaps.append(mm)
        view = memoryview(mm)[:mp.value_size]
        self.coll._views.append(view)
        return view

    # -- programs --------------------------------------------------------------------

    def _load_program(self, p: ProgramSpec) -> Program:
        insns = self._relocated(p)      # CO-RE first: the cache keys on fd-free code
        maps = self.coll.maps
        for r in p.map_relocs:
            mp = maps.get(r.map)
            if mp is None:
                raise RawprobeError(f"program {p.name!r}: instruction {r.insn} refers to "
                                    f"map {r.map!r}, which the object does not define")
            _IMM.pack_into(insns, r.insn * 8 + 4, mp.fd)
        fd_array: list[int] = []
        if p.ksym_relocs:
            resolver = self._ksym_resolver()
            resolver.patch(insns, p.ksym_relocs, self.spec.ksyms)
            fd_array = resolver.fd_array
        attach_btf_id = self._attach_btf_id(p) if p.attach_btf else 0
        btf_fd = self.coll._btf_fd
        kw: dict[str, Any] = dict(
            expected_attach_type=p.expected_attach_type,
            prog_name=_prog_name(p.name),
            prog_flags=p.prog_flags,
            kern_version=p.kern_version or kernel_version_code(),
            attach_btf_id=attach_btf_id,
        )
        if fd_array:
            kw["fd_array"] = fd_array
        if btf_fd is not None:
            kw["prog_btf_fd"] = btf_fd.fileno()
            if p.func_info:
                pack = _FUNC_INFO.pack
                kw["func_info"] = b"".join([pack(f.insn_off, f.type_id)
                                            for f in p.func_info])
                kw["func_info_rec_size"] = _FUNC_INFO.size
            if p.line_info:
                pack = _LINE_INFO.pack
                kw["line_info"] = b"".join([
                    pack(li.insn_off, li.file_name_off, li.line_off, li.line_col)
                    for li in p.line_info])
                kw["line_info_rec_size"] = _LINE_INFO.size
        license = (p.license or self.spec.license or "").encode()
        log_text = ""
        try:
            if self.log_level:
                fd, log_text = self._load_with_log(p, insns, license, kw, self.log_level)
            else:
                fd = _bpf.prog_load(int(p.type), insns, license, **kw)
        except PermissionDeniedError as e:
            if p.expected_attach_type in _TRAMPOLINE_ATTACH and os.geteuid() == 0:
                # a kprobe observes as an fentry does; nothing stands in for a deny
                instead = "" if p.expected_attach_type in (
                    AttachType.LSM_MAC, AttachType.LSM_CGROUP, AttachType.MODIFY_RETURN) \
                    else "; use a kprobe or tracepoint instead"
                raise NotSupportedError(
                    f"program {p.name!r} (section {p.section!r}): this kernel refuses "
                    f"BPF trampoline programs (fentry/fexit/fmod_ret/lsm) even to root "
                    f"({errno_name(e.errno)}): it lacks the support (e.g. no ftrace direct "
                    f"calls) or a lockdown/LSM policy forbids them{instead}") from None
            raise
        except SyscallError as e:
            if e.errno not in _VERIFIER_ERRNOS and not (
                    e.errno == _errno.ENOENT and self._uses_typed_ksyms(p)):
                raise
            # Only now pay for a log: it turns the failure into a VerifierError.
            fd, log_text = self._load_with_log(p, insns, license, kw, 1)
        prog = Program(p.name, fd, p, on_link=self.coll._add_link, usdt=self._usdt)
        prog.log = log_text  # type: ignore[attr-defined]
        return prog

    def _uses_typed_ksyms(self, p: ProgramSpec) -> bool:
        return any(self.spec.ksyms[r.name].kind == "typed" for r in p.ksym_relocs)

    def _explained(self, e: VerifierError) -> VerifierError:
        """``e`` with a hint when the verifier reached a call to an absent weak
        kfunc (libbpf's marker, which the log shows as ``unknown#2002000NNN``),
        or the kernel found no address for a typed ``__ksym``."""
        if "failed to find the address for kernel symbol" in e.log:
            return VerifierError(
                e.program, e.errno, e.log,
                "the kernel lists no address for a typed __ksym variable in kallsyms: "
                "kernels list data symbols only with CONFIG_KALLSYMS_ALL=y")
        for ks in self.spec.ksyms.values():
            if f"unknown#{POISON_KFUNC_CALL + ks.index}" in e.log:
                return VerifierError(
                    e.program, e.errno, e.log,
                    f"it calls kfunc {ks.name!r}, which this kernel lacks (it is __weak): "
                    f"guard the call with if (bpf_ksym_exists({ks.name}))")
        return e

    def _ksym_resolver(self) -> Any:
        if self._ksyms is None:
            from .ksyms_kernel import KsymResolver
            kb = self.kernel_btf()
            modules: Any = ()
            if self._own_kernel:
                from .btf.kernel import ModuleBTFs
                modules = ModuleBTFs(kb)
            self._ksyms = KsymResolver(self.spec.name, self.spec.btf, kb, modules)
        return self._ksyms

    def _load_with_log(self, p: ProgramSpec, insns: bytearray, license: bytes,
                       kw: dict[str, Any], level: int) -> tuple[FD, str]:
        """Load with a verifier log, growing the buffer until the log fits.
        Returns (fd, log) on success; raises VerifierError with the log on failure."""
        size = _LOG_START
        while True:
            buf = bytearray(size)
            try:
                fd = _bpf.prog_load(int(p.type), insns, license, log_level=level,
                                    log_buf=buf, **kw)
                return fd, _log_text(buf)
            except PermissionDeniedError:
                raise
            except SyscallError as e:
                need = getattr(e, "log_true_size", 0)
                if e.errno == _errno.ENOSPC and size < _LOG_MAX:
                    size = max(size * 4, need + 1) if need else size * 4
                    continue
                raise self._explained(VerifierError(p.name, e.errno, _log_text(buf))) \
                    from None

    def _relocated(self, p: ProgramSpec) -> bytearray:
        """``p``'s instructions with its CO-RE relocations applied: from the
        CO-RE cache (:mod:`rawprobe.corecache`) when it has them for this kernel,
        else computed (and offered to the cache)."""
        insns = bytearray(p.insns)
        if not p.core_relos:
            return insns
        if self._core_cache is False:
            self._core_cache = None
            if self._own_kernel and self.spec.btf is not None:
                from .corecache import CoreCache
                self._core_cache = CoreCache.open(self.spec.name, self.spec.btf.raw)
        cache = self._core_cache
        if cache is not None:
            hit = cache.get(p)
            if hit is not None:
                return bytearray(hit)
        self._apply_core(p, insns)
        if cache is not None:
            # A type looked for in the modules' BTF: the answer changes with them
            dep = self._relocator.module_dependent
            cache.put(p, insns, modules=any(r.type_id in dep for r in p.core_relos))
        return insns

    def _apply_core(self, p: ProgramSpec, insns: bytearray) -> None:
        if self._relocator is None:
            from .btf.core import CoreRelocator
            kb = self.kernel_btf()
            modules: Any = ()
            if self._own_kernel:
                from .btf.kernel import ModuleBTFs
                modules = ModuleBTFs(kb)
            self._relocator = CoreRelocator(self.spec.btf, kb, modules)
        from .btf.core import apply
        for relo in p.core_relos:
            idx = relo.insn_off // 8       # ProgramSpec keeps these in bytes
            res = self._relocator.compute(relo, section=p.section, program=p.name,
                                          insn_idx=idx)
            apply(insns, idx, res, program=p.name, path=res.local_path)

    def _attach_btf_id(self, p: ProgramSpec) -> int:
        """The kernel BTF id of a tp_btf/fentry/fexit/fmod_ret/lsm/iter target."""
        from .btf import types as T
        target = p.attach_to
        if not target:
            raise NotFoundError(f"program {p.name!r}: section {p.section!r} names no "
                                f"attach target")
        kind_name, want = _btf_target(p)
        kbtf = self.kernel_btf()
        for tid in kbtf.types_by_name(want):
            t = kbtf.type_by_id(tid)
            if (kind_name == "func" and isinstance(t, T.Func)) or \
               (kind_name == "typedef" and isinstance(t, T.Typedef)):
                return tid
        if want.startswith("bpf_lsm_") and not any(
                isinstance(kbtf.type_by_id(t), T.Func) for t in kbtf.types_by_name("bpf_lsm_file_open")):
            raise NotSupportedError(f"program {p.name!r} (section {p.section!r}): the kernel "
                                    "is built without the BPF LSM (CONFIG_BPF_LSM is not set)")
        raise NotFoundError(f"program {p.name!r}: the kernel has no {kind_name} {want!r} "
                            f"in its BTF (target of section {p.section!r})")

    def _fill_prog_arrays(self) -> None:
        coll = self.coll
        for name, m in self.spec.maps.items():
            if not m.values:
                continue
            mp = coll.maps[name]
            if mp.reused and m.type != MapType.PROG_ARRAY:
                continue      # a pinned map of maps keeps its slots (libbpf's rule)
            for slot, target in sorted(m.values.items()):
                obj = coll.programs.get(target) if m.type == MapType.PROG_ARRAY \
                    else coll.maps.get(target)
                if obj is None:
                    continue      # a program not selected for loading
                mp.update(slot, obj.fd.to_bytes(4, "little"))


def _check_loadable(p: ProgramSpec) -> None:
    """NotSupportedError for a program rawprobe cannot load whatever the
    kernel: said before anything is made, not left to the verifier."""
    if p.type == ProgType.STRUCT_OPS:
        raise NotSupportedError(
            f"program {p.name!r} (section {p.section!r}) is a struct_ops callback: "
            f"rawprobe does not load struct_ops programs (they belong to a struct_ops "
            f"map, which it cannot create); use libbpf for this object")
    if p.type == ProgType.EXT:
        raise NotSupportedError(
            f"program {p.name!r} (section {p.section!r}) is an freplace program: its "
            f"target {p.attach_to or '(unnamed)'!r} is a function of another loaded BPF "
            f"program, not of the kernel, and rawprobe does not load freplace programs")


def _btf_target(p: ProgramSpec) -> tuple[str, str]:
    """(BTF kind, name) of the kernel type a BTF-attached program targets, by
    its attach type: a tracepoint's ``btf_trace_<name>`` typedef, the LSM
    hook's ``bpf_lsm_<name>`` and the iterator's ``bpf_iter_<name>``
    functions, else the function itself."""
    target, at = p.attach_to, p.expected_attach_type
    if at == AttachType.TRACE_RAW_TP:
        return "typedef", "btf_trace_" + target
    if at in (AttachType.LSM_MAC, AttachType.LSM_CGROUP):
        return "func", "bpf_lsm_" + target
    if at == AttachType.TRACE_ITER:
        return "func", "bpf_iter_" + target
    return "func", target


def _linux_value(name: str) -> Optional[int]:
    """The value of a virtual ``LINUX_*`` kconfig extern, None if unknown."""
    from . import features
    if name == "LINUX_KERNEL_VERSION":
        code = kernel_version_code()
        if not code:
            raise NotSupportedError(f"LINUX_KERNEL_VERSION: the kernel release "
                                    f"{os.uname().release!r} does not read a.b.c")
        return code
    if name == "LINUX_HAS_BPF_COOKIE":
        return int(features.bpf_cookie().supported)
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        return int(features.syscall_wrapper().supported)
    return None


def _map_btf_ids(m: MapSpec) -> tuple[int, int]:
    """The BTF key and value type ids BPF_MAP_CREATE takes for ``m``'s map type."""
    if m.type in MAP_TYPES_WITHOUT_BTF:
        return 0, 0
    if m.type in MAP_TYPES_WITHOUT_BTF_VALUE:
        return m.btf_key_type_id, 0
    return m.btf_key_type_id, m.btf_value_type_id


def _map_type_name(type: int) -> str:
    try:
        return MapType(type).name
    except ValueError:
        return str(type)


def _has_global_subprograms(p: ProgramSpec, btf: Any) -> bool:
    """Whether a subprogram of ``p`` is a global function: the kernel verifies
    those on their own (5.6+), from the program's BTF."""
    from .btf import types as T
    for name, _, _ in p.functions[1:]:
        for tid in btf.types_by_name(name):
            t = btf.types[tid]
            if isinstance(t, T.Func) and t.linkage == T.BTF_FUNC_GLOBAL:
                return True
    return False


def _log_text(buf: bytearray) -> str:
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace")


def _prog_name(name: str) -> bytes:
    return sanitize(name[:BPF_OBJ_NAME_LEN - 1]).encode()


def _btf_features() -> Any:
    """Which BTF kinds this kernel accepts, probed with tiny blobs: asked only
    when the kernel refused an object's BTF, once per load that needs it."""
    from .btf import marshal
    try:
        from dataclasses import fields
        values = {}
        for f in fields(marshal.BTFFeatures):
            try:
                _bpf.btf_load(marshal.probe_blob(f.name)).close()
                values[f.name] = True
            except SyscallError:
                values[f.name] = False
        return marshal.BTFFeatures(**values)
    except RawprobeError:
        return None
