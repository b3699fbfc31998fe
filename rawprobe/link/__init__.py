"""Attaching loaded programs to kernel and user events: one module per kind.

=================  ======================================  =======================
kind               function (module)                       minimum kernel
=================  ======================================  =======================
tracepoint         :func:`attach_tracepoint` (tracepoint)  4.7; BPF link 5.15
raw_tracepoint     :func:`attach_raw_tracepoint`           4.17
tp_btf             :func:`attach_tp_btf` (raw_tracepoint)  5.5
kprobe/kretprobe   :func:`attach_kprobe` (kprobe)          4.17 PMU, tracefs before
kprobe.multi       :func:`attach_kprobe_multi`             5.18 with CONFIG_FPROBE
kretprobe.multi    (kprobe_multi)
kprobe.session     :func:`attach_kprobe_multi`             6.10
ksyscall           :func:`attach_kprobe` on                as kprobes
                   :func:`~.kprobe.ksyscall_symbol`
fentry/fexit       :func:`attach_fentry` (tracing)         5.5 (x86-64), 6.0 (arm64)
uprobe/uretprobe   :func:`attach_uprobe` (uprobe)          4.17 PMU, tracefs before
usdt               :func:`attach_usdt` (usdt)              4.17; semaphores 4.20;
                                                           BPF cookie 5.15
uprobe.multi       :func:`attach_uprobe_multi`             6.6
uretprobe.multi    (uprobe_multi)
iter               :func:`attach_iter` (iter), then        5.8
                   :func:`~.iter.read_iter`
lsm                :func:`attach_lsm` (lsm)                5.7, the BPF LSM active
lsm_cgroup         :func:`attach_lsm_cgroup` (lsm)         6.0
=================  ======================================  =======================

Every function returns a :class:`Link`, which owns what the attachment needs
(a BPF link fd, a perf event fd, a tracefs probe event) and undoes it on
``close()``.  :func:`attach` picks the kind and target from the program's ELF
section name, spelled the way libbpf spells them (``SEC("kprobe/ksys_write+0x10")``,
``SEC("tracepoint/syscalls/sys_enter_write")``, ``SEC("uprobe//bin/bash:readline")``).

A program is anything with ``.fd`` (an FD or int), ``.name``, ``.type`` and
``.spec`` (its ProgramSpec: ``.section``, and the attach kind, target and
direction parsed from it); :class:`rawprobe.Program`
delegates its ``attach*`` methods here.  The per-kind modules are imported on
first use, so ``import rawprobe.link`` is cheap.
"""
from __future__ import annotations

from ..errors import ClosedError, NotSupportedError, ObjectFormatError

# No run-time ``typing`` (it imports re, enum, collections...: several ms).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    import weakref
    from typing import Any

__all__ = [
    "Link", "attach", "attach_tracepoint", "attach_raw_tracepoint", "attach_tp_btf",
    "attach_kprobe", "attach_kprobe_multi", "attach_fentry", "attach_uprobe",
    "attach_uprobe_multi", "attach_usdt", "attach_iter", "read_iter",
    "attach_lsm", "attach_lsm_cgroup",
    "resolve_syscall_symbol",
]


class Link:
    """One attachment of a program; ``close()`` detaches it.

    ``kind`` is what was attached (``"tracepoint"``, ``"raw_tracepoint"``,
    ``"tp_btf"``, ``"kprobe"``, ``"kretprobe"``, ``"kprobe_multi"``,
    ``"kretprobe_multi"``, ``"kprobe_session"``, ``"fentry"``, ``"fexit"``,
    ``"fmod_ret"``, ``"uprobe"``, ``"uretprobe"``, ``"uprobe_multi"``,
    ``"uretprobe_multi"``, ``"usdt"``, ``"lsm"``, ``"lsm_cgroup"``);
    ``target`` names where
    (``"syscalls/sys_enter_write"``, ``"ksys_write+0x10"``, ``"/bin/bash:readline"``);
    ``mechanism`` how (``"bpf_link"``, ``"perf_link"`` = a BPF link over a perf
    event, ``"perf_ioctl"`` = PERF_EVENT_IOC_SET_BPF, with ``+tracefs`` when a
    tracefs probe event was created).

    The Link owns its file descriptors and any tracefs event: ``close()``
    releases them in order (BPF link, perf event, then the tracefs event, which
    the kernel refuses to delete while a perf event uses it).  ``close()`` is
    idempotent; a Link also closes when collected and at interpreter exit.
    """

    __slots__ = ("kind", "target", "mechanism", "program", "_fds", "_event", "__weakref__")

    def __init__(self, kind: str, target: str, mechanism: str, fds: list,
                 event: Any = None, program: str = "") -> None:
        self.kind = kind
        self.target = target
        self.mechanism = mechanism
        self.program = program
        self._fds = list(fds)       # FDs, closed first to last
        self._event = event         # tracefs.DynamicEvent or None
        if event is not None:
            _register_tracefs_link(self)

    @property
    def closed(self) -> bool:
        return self._fds is None

    def fileno(self) -> int:
        """The BPF link fd if there is one, else the perf event fd."""
        if self._fds is None:
            raise ClosedError(f"{self!r}: link is closed")
        return self._fds[0].fileno()

    @property
    def perf_event_fd(self) -> int | None:
        """The perf event's fd for perf-based links, else None."""
        if self._fds is None or not self.mechanism.startswith("perf"):
            return None
        return self._fds[-1].fileno()

    def close(self) -> None:
        """Detach: close the fds, then delete the tracefs event if there is one."""
        fds, self._fds = self._fds, None
        if fds is None:
            return
        for fd in fds:
            fd.close()
        event, self._event = self._event, None
        if event is not None:
            event.remove()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to report to at collection time
            pass

    def __repr__(self) -> str:
        state = "closed" if self._fds is None else f"fd={self._fds[0].fileno()}"
        prog = f" {self.program!r}" if self.program else ""
        return f"<Link {self.kind}:{self.target}{prog} via {self.mechanism} {state}>"


# Links that own a tracefs event, closed before the atexit hook of tracefs
# deletes leftover events (a perf fd still open keeps its event busy).  Made
# by the first such Link: most programs never create a tracefs event.
_tracefs_links: weakref.WeakSet[Link] | None = None


def _register_tracefs_link(link: Link) -> None:
    global _tracefs_links
    from . import tracefs
    if _tracefs_links is None:
        import weakref
        _tracefs_links = weakref.WeakSet()
    if not _tracefs_links and _close_tracefs_links not in tracefs._before_exit_cleanup:
        tracefs._before_exit_cleanup.append(_close_tracefs_links)
    _tracefs_links.add(link)


def _close_tracefs_links() -> None:
    for link in list(_tracefs_links or ()):
        try:
            link.close()
        except Exception:  # noqa: BLE001 - interpreter exit, best effort
            pass


def attach(prog: Any) -> Link:
    """Attach ``prog`` where its section name says, the way libbpf does.

    ``tracepoint/<group>/<name>``, ``tp/...``, ``raw_tracepoint/<name>``,
    ``raw_tp/...``, ``tp_btf/<name>``, ``kprobe/<symbol>[+<offset>]``,
    ``kretprobe/<symbol>``, ``ksyscall/<syscall>`` and ``kretsyscall/<syscall>``
    (a kprobe on the syscall's entry point, :func:`~.kprobe.ksyscall_symbol`),
    ``fentry/<function>``, ``fexit/...``, ``fmod_ret/...``,
    ``uprobe/<path>:<function>[+<offset>]``, ``uretprobe/...``,
    ``kprobe.multi/<pattern>``, ``kretprobe.multi/...``, ``kprobe.session/...``,
    ``uprobe.multi/<path>:<pattern>``, ``uretprobe.multi/...``,
    ``usdt/<path>:<provider>:<name>``, ``iter/<target>``,
    ``lsm/<hook>``, ``lsm.s/<hook>``.  A section without a target (``SEC("kprobe")``)
    needs the explicit ``attach_*`` call, and so does ``lsm_cgroup/<hook>`` (a cgroup).
    """
    from .. import sections
    from ..uapi import AttachType
    spec = getattr(prog, "spec", None)
    section = getattr(spec, "section", None)
    name = getattr(prog, "name", "?")
    if not section:
        raise ObjectFormatError(f"program {name!r}: no section name to attach by; "
                                "use an explicit attach_* function")
    # what the section name says, as the ProgramSpec parsed it
    kind, target, retprobe = spec.attach_kind, spec.attach_to, spec.retprobe  # type: ignore[union-attr]
    if not kind:
        raise NotSupportedError(
            f"program {name!r}: section {section!r} has no automatic attachment in "
            "rawprobe (supported: tracepoint, raw_tp, tp_btf, kprobe, kretprobe, ksyscall, "
            "kretsyscall, kprobe.multi, kretprobe.multi, kprobe.session, fentry, fexit, "
            "fmod_ret, uprobe, uretprobe, uprobe.multi, uretprobe.multi, usdt, iter, lsm)")
    if kind == "tracing":
        if spec.expected_attach_type == AttachType.TRACE_RAW_TP:   # type: ignore[union-attr]
            from .raw_tracepoint import attach_tp_btf
            return attach_tp_btf(prog)
        from .tracing import attach_fentry
        return attach_fentry(prog)
    if kind == "lsm":
        from .lsm import attach_lsm
        return attach_lsm(prog)
    if kind == "lsm_cgroup":
        raise ObjectFormatError(f"program {name!r}: section {section!r} attaches to a "
                                "cgroup: call attach_lsm_cgroup(<cgroup directory>)")
    if not target:
        call = {"ksyscall": "kprobe", "kprobe_session": "kprobe_multi"}.get(kind, kind)
        raise ObjectFormatError(
            f"program {name!r}: section {section!r} names no target; call "
            f"attach_{call}(...) with one")
    if kind == "tracepoint":
        from .tracepoint import attach_tracepoint
        group, tp = sections.parse_tracepoint_target(target)
        return attach_tracepoint(prog, group, tp)
    if kind == "raw_tracepoint":
        from .raw_tracepoint import attach_raw_tracepoint
        return attach_raw_tracepoint(prog, target)
    if kind in ("kprobe", "ksyscall"):
        from .kprobe import attach_kprobe, ksyscall_symbol
        if kind == "ksyscall":
            return attach_kprobe(prog, ksyscall_symbol(target), retprobe=retprobe)
        symbol, offset = sections.parse_kprobe_target(target, retprobe)
        return attach_kprobe(prog, symbol, offset, retprobe=retprobe)
    if kind in ("kprobe_multi", "kprobe_session"):
        from .kprobe_multi import attach_kprobe_multi
        return attach_kprobe_multi(prog, target, retprobe=retprobe)
    if kind == "uprobe_multi":
        from .uprobe_multi import attach_uprobe_multi
        path, pattern = sections.parse_uprobe_multi_target(target)
        return attach_uprobe_multi(prog, path, pattern, retprobe=retprobe)
    if kind == "iter":
        from .iter import attach_iter
        return attach_iter(prog)
    if kind == "uprobe":
        from .uprobe import attach_uprobe
        path, func, offset = sections.parse_uprobe_target(target)
        return attach_uprobe(prog, path, func or None, offset, retprobe=retprobe)
    if kind == "usdt":
        from .usdt import attach_usdt
        return attach_usdt(prog, *sections.parse_usdt_target(target))
    raise NotSupportedError(f"program {name!r}: attach kind {kind!r} (section "
                            f"{section!r}) is not implemented by rawprobe")


_FUNCS = {
    "attach_tracepoint": "tracepoint",
    "attach_raw_tracepoint": "raw_tracepoint",
    "attach_tp_btf": "raw_tracepoint",
    "attach_kprobe": "kprobe",
    "attach_kprobe_multi": "kprobe_multi",
    "attach_uprobe_multi": "uprobe_multi",
    "resolve_syscall_symbol": "kprobe",
    "attach_fentry": "tracing",
    "attach_uprobe": "uprobe",
    "attach_usdt": "usdt",
    "attach_iter": "iter",
    "read_iter": "iter",
    "attach_lsm": "lsm",
    "attach_lsm_cgroup": "lsm",
}


def __getattr__(name: str) -> Any:
    # Each kind's module is imported on first use (PEP 562).
    modname = _FUNCS.get(name)
    if modname is None:
        raise AttributeError(f"module 'rawprobe.link' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{modname}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FUNCS))
