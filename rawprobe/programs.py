"""Loaded programs: a :class:`Program` owns one BPF program fd.

Loading happens in :mod:`rawprobe.collection` (maps must exist first);
attaching is a separate step, delegated to :mod:`rawprobe.link`, one module per
attach kind.  Links made through a Program are registered with its Collection,
which closes them before the program.
"""
from __future__ import annotations

from ._fdowner import FDOwner

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Optional, Sequence, Union

    from ._sys.fd import FD
    from .link import Link
    from .maps import Map
    from .spec import ProgramSpec

__all__ = ["Program", "UsdtMaps"]

# the maps libbpf's usdt.bpf.h declares (weak, so one copy per object)
USDT_SPECS_MAP, USDT_IP_MAP = "__bpf_usdt_specs", "__bpf_usdt_ip_to_spec_id"


class UsdtMaps:
    """One object's USDT state, shared by its programs: the two maps of
    ``usdt.bpf.h`` and which ``__bpf_usdt_specs`` slots are free (as libbpf's
    per-object USDT manager: ids come back when a USDT link closes)."""

    def __init__(self, specs: Map, ip_to_spec_id: Map) -> None:
        self.specs = specs
        self.ip_to_spec_id = ip_to_spec_id
        self.free_ids: list[int] = []
        self.next_id = 0

    def take_id(self) -> int:
        """A free slot of ``__bpf_usdt_specs``; -1 when all are taken."""
        if self.free_ids:
            return self.free_ids.pop()
        if self.next_id >= self.specs.max_entries:
            return -1
        self.next_id += 1
        return self.next_id - 1


class Program(FDOwner):
    """A BPF program in the kernel.

    ``name`` is the ELF function name, ``type`` its ``bpf_prog_type``,
    ``spec`` the :class:`~rawprobe.spec.ProgramSpec` it was loaded from;
    ``.fd``, ``fileno()``, ``closed``, ``close()``, ``with``: see
    :class:`~rawprobe._fdowner.FDOwner`.
    """

    def __init__(self, name: str, fd: FD, spec: ProgramSpec,
                 on_link: Optional[Callable[[Link], None]] = None,
                 usdt: Optional[UsdtMaps] = None) -> None:
        super().__init__(fd)
        self.name = name
        self.spec = spec
        self.type = spec.type
        self._on_link = on_link
        self.usdt = usdt        # the object's usdt.bpf.h maps, None without them

    def __repr__(self) -> str:
        return f"<Program {self.name!r} section={self.spec.section!r} {self._fd_state()}>"

    def info(self) -> dict[str, Any]:
        """BPF_OBJ_GET_INFO_BY_FD: id, tag, run_cnt/run_time_ns (with stats on), ..."""
        from ._sys import bpf
        return bpf.prog_get_info(self._live())

    # -- attaching: thin delegations to rawprobe.link ---------------------------------

    def _keep(self, link: Link) -> Link:
        if self._on_link is not None:
            self._on_link(link)
        return link

    def attach(self) -> Link:
        """Attach where the section name says (``kprobe/ksys_write+0x10``,
        ``tracepoint/syscalls/sys_enter_write``, ``raw_tp/sys_enter``, ...)."""
        from . import link
        return self._keep(link.attach(self))

    def attach_tracepoint(self, group: str, name: str) -> Link:
        from .link.tracepoint import attach_tracepoint
        return self._keep(attach_tracepoint(self, group, name))

    def attach_raw_tracepoint(self, name: str) -> Link:
        from .link.raw_tracepoint import attach_raw_tracepoint
        return self._keep(attach_raw_tracepoint(self, name))

    def attach_tp_btf(self) -> Link:
        from .link.raw_tracepoint import attach_tp_btf
        return self._keep(attach_tp_btf(self))

    def attach_kprobe(self, symbol: str, offset: int = 0, retprobe: bool = False) -> Link:
        from .link.kprobe import attach_kprobe
        return self._keep(attach_kprobe(self, symbol, offset, retprobe))

    def attach_kprobe_multi(self, pattern: Optional[str] = None, *,
                            syms: Optional[Sequence[str]] = None,
                            addrs: Optional[Sequence[int]] = None,
                            cookies: Optional[Sequence[int]] = None,
                            retprobe: bool = False) -> Link:
        """kprobe.multi (5.18+, CONFIG_FPROBE): many kernel functions, one link."""
        from .link.kprobe_multi import attach_kprobe_multi
        return self._keep(attach_kprobe_multi(self, pattern, syms=syms, addrs=addrs,
                                              cookies=cookies, retprobe=retprobe))

    def attach_uprobe_multi(self, path: str, pattern: Optional[str] = None, *,
                            syms: Optional[Sequence[str]] = None,
                            offsets: Optional[Sequence[int]] = None,
                            ref_ctr_offsets: Optional[Sequence[int]] = None,
                            cookies: Optional[Sequence[int]] = None,
                            pid: int = -1, retprobe: bool = False) -> Link:
        """uprobe.multi (6.6+): many functions of one file, one link."""
        from .link.uprobe_multi import attach_uprobe_multi
        return self._keep(attach_uprobe_multi(
            self, path, pattern, syms=syms, offsets=offsets,
            ref_ctr_offsets=ref_ctr_offsets, cookies=cookies, pid=pid, retprobe=retprobe))

    def attach_fentry(self) -> Link:
        """fentry/fexit/fmod_ret: the target was fixed at load time (section name)."""
        from .link.tracing import attach_fentry
        return self._keep(attach_fentry(self))

    def attach_lsm(self) -> Link:
        """lsm/lsm.s: the hook was fixed at load time (section name)."""
        from .link.lsm import attach_lsm
        return self._keep(attach_lsm(self))

    def attach_lsm_cgroup(self, cgroup: Union[str, int]) -> Link:
        """lsm_cgroup: the hook was fixed at load time, the cgroup is given here."""
        from .link.lsm import attach_lsm_cgroup
        return self._keep(attach_lsm_cgroup(self, cgroup))

    def attach_iter(self) -> Link:
        """An ``iter/<target>`` program's link; run it with
        :func:`rawprobe.link.read_iter`."""
        from .link.iter import attach_iter
        return self._keep(attach_iter(self))

    def attach_uprobe(self, path: str, symbol: Optional[str] = None, offset: int = 0,
                      pid: int = -1, retprobe: bool = False) -> Link:
        from .link.uprobe import attach_uprobe
        return self._keep(attach_uprobe(self, path, symbol, offset, pid, retprobe))

    def attach_usdt(self, path: str, provider: str, name: str, pid: int = -1,
                    cookie: int = 0) -> Link:
        """Every site of USDT probe ``provider:name`` in ``path`` (see
        :func:`rawprobe.link.usdt.attach_usdt`)."""
        from .link.usdt import attach_usdt
        return self._keep(attach_usdt(self, path, provider, name, pid, cookie))
