"""USDT probes: a ``usdt.bpf.h`` program on every site of ``provider:name`` in a binary.

Minimum kernel: 4.17 (the uprobe PMU); semaphores need 4.20 (the PMU's
``ref_ctr_offset``); BPF cookies 5.15.  The convention is libbpf's, so objects
written against its ``usdt.bpf.h`` work unchanged:

* each site becomes one uprobe (:mod:`.uprobe`'s PMU path) at the site's file
  offset, with the probe's semaphore, if any, as ``ref_ctr_offset``;
* each site's argument specs (:mod:`rawprobe.stapsdt`) are written to a free
  slot of the object's ``__bpf_usdt_specs`` map, one slot per distinct spec
  string within one attach (sites with the same specs share it), together
  with ``cookie`` (``bpf_usdt_cookie()``);
* the program finds its slot by the BPF cookie of the uprobe's link (5.15+,
  ``LINUX_HAS_BPF_COOKIE``), else by the probe's run-time address in
  ``__bpf_usdt_ip_to_spec_id``: the address is the ELF's own for a non-PIE
  executable, and for a PIE or library is read from ``/proc/PID/maps``, so
  that case needs a pid (as in libbpf).

Closing the Link detaches every uprobe, removes its address entries and gives
the spec slots back to the object.
"""
from __future__ import annotations

import errno
import os

from ..errors import NotFoundError, NotSupportedError, ObjectFormatError, SyscallError
from ..uapi import UpdateFlags, ProgType
from . import Link

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from ..programs import UsdtMaps

__all__ = ["attach_usdt", "UsdtLink"]


class UsdtLink(Link):
    """A USDT attachment: the uprobe of each site, and the spec slots and
    address entries they use, released by ``close()``."""

    __slots__ = ("_usdt", "_spec_ids", "_ips", "sites")

    def __init__(self, target: str, mechanism: str, fds: list, program: str,
                 usdt: UsdtMaps, spec_ids: list[int], ips: list[int], sites: int) -> None:
        super().__init__("usdt", target, mechanism, fds, program=program)
        self._usdt = usdt
        self._spec_ids = spec_ids
        self._ips = ips
        self.sites = sites          # how many uprobes

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        _release(self._usdt, self._spec_ids, self._ips)
        self._spec_ids, self._ips = [], []


def _release(usdt: UsdtMaps, spec_ids: list[int], ips: list[int]) -> None:
    ip_map = usdt.ip_to_spec_id
    if not ip_map.closed:
        for ip in ips:
            ip_map.delete(ip.to_bytes(8, "little", signed=True))
    usdt.free_ids.extend(spec_ids)


def _vma_address(pid: int, path: str, file_offset: int) -> int:
    """Where ``file_offset`` of ``path`` is mapped in process ``pid``.  A mapping
    is the file's by its path (as libbpf matches it) or by device and inode (a
    path seen differently by the process, e.g. through a bind mount)."""
    st = os.stat(path)
    real = os.path.realpath(path)
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise NotFoundError(f"usdt {path}: no process with pid {pid}") from None
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        span, _perms, off, dev, inode = fields[:5]
        start, _, end = span.partition("-")
        major, _, minor = dev.partition(":")
        same_file = fields[5] == real or (
            int(inode) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev)
        if not same_file:
            continue
        start_i, end_i, off_i = int(start, 16), int(end, 16), int(off, 16)
        if off_i <= file_offset < off_i + end_i - start_i:
            return start_i - off_i + file_offset
    raise NotFoundError(f"usdt {path}: process {pid} has no mapping of file offset "
                        f"{file_offset:#x} (does it use this binary?)")


def attach_usdt(prog: Any, path: str, provider: str, name: str, pid: int = -1,
                cookie: int = 0) -> UsdtLink:
    """Attach ``prog`` (from ``SEC("usdt")``, written against libbpf's
    ``usdt.bpf.h``) to every site of USDT probe ``provider:name`` in ``path``,
    for process ``pid`` (0: this one; -1: every process).  ``cookie`` is what
    ``bpf_usdt_cookie()`` returns.  Kernel 4.17+ (semaphores 4.20+)."""
    from .. import features, stapsdt
    from . import _attach
    from .uprobe import _open_pmu, _translate, resolve_binary_path

    _attach.check_type(prog, (ProgType.KPROBE,), "a USDT probe",
                       'SEC("usdt") or SEC("usdt/<path>:<provider>:<name>")')
    usdt = getattr(prog, "usdt", None)
    if usdt is None:
        raise ObjectFormatError(
            f"program {_attach.prog_label(prog)!r}: its object has no "
            "__bpf_usdt_specs/__bpf_usdt_ip_to_spec_id maps: include <bpf/usdt.bpf.h> "
            "and read arguments with bpf_usdt_arg()")
    if usdt.specs.value_size != stapsdt.SPEC_SIZE:
        raise NotSupportedError(
            f"program {_attach.prog_label(prog)!r}: __bpf_usdt_specs holds "
            f"{usdt.specs.value_size}-byte specs; rawprobe writes libbpf 1.1's "
            f"usdt.bpf.h layout ({stapsdt.SPEC_SIZE} bytes)")
    if pid == 0:
        pid = os.getpid()
    elif pid < 0:
        pid = -1
    path = resolve_binary_path(path)
    target = f"{path}:{provider}:{name}"
    shared, sites = stapsdt.probe_sites(path)
    sites = [s for s in sites if s.note.provider == provider and s.note.name == name]
    if not sites:
        known = sorted({f"{s.note.provider}:{s.note.name}"
                        for s in stapsdt.probe_sites(path)[1]})
        raise NotFoundError(f"usdt {target}: no such probe in {path} (it has: "
                            f"{', '.join(known) or 'no USDT probes'})")
    has_cookie = features.bpf_cookie().supported
    if not has_cookie and shared and pid < 0:
        raise NotSupportedError(
            f"usdt {target}: without BPF cookies (kernel 5.15) a probe in a PIE "
            "executable or shared library is found by its run-time address, which "
            "needs a pid; pass pid=")

    spec_ids: list[int] = []
    ips: list[int] = []
    fds: list[Any] = []
    by_spec: dict[str, int] = {}
    mechanism = "perf_link"
    try:
        for site in sites:
            spec_id = by_spec.get(site.note.args)
            if spec_id is None:
                spec_id = usdt.take_id()
                if spec_id < 0:
                    raise NotSupportedError(
                        f"usdt {target}: __bpf_usdt_specs is full ({usdt.specs.max_entries} "
                        "specs); define BPF_USDT_MAX_SPEC_CNT larger in the BPF program")
                spec_ids.append(spec_id)
                by_spec[site.note.args] = spec_id
                usdt.specs.update(spec_id, stapsdt.encode_spec(site.args, cookie))
            if not has_cookie:
                ip = _vma_address(pid, path, site.offset) if shared else site.ip
                key = ip.to_bytes(8, "little", signed=True)
                try:
                    usdt.ip_to_spec_id.update(key, spec_id, flags=UpdateFlags.NOEXIST)
                except SyscallError as e:
                    if e.errno == errno.EEXIST:
                        raise NotSupportedError(
                            f"usdt {target}: address {ip:#x} is already attached through "
                            "this object (without BPF cookies one address has one spec)") \
                            from None
                    raise
                ips.append(ip)
            try:
                pfd = _open_pmu(path, site.offset, pid, False, site.sema_offset)
            except SyscallError as e:
                raise _translate(e, target, pid) from None
            mechanism, more = _attach.attach_perf(prog, pfd, "usdt", target,
                                                  cookie=spec_id if has_cookie else 0)
            fds.extend(more)
    except BaseException:
        for fd in reversed(fds):
            fd.close()
        _release(usdt, spec_ids, ips)
        raise
    return UsdtLink(target, mechanism, fds, _attach.prog_label(prog), usdt, spec_ids, ips,
                    len(sites))
