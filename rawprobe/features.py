"""What the running kernel supports, probed by trying it; each answer cached.

Every probe returns a :class:`Feature` (``supported``, ``detail``; truthy when
supported) and runs at most once per process (its result is cached;
``probe.cache_clear()`` forgets it).  Probes
that need a program load a tiny hand-encoded one (``r0 = 0; exit`` or a single
helper call) straight through ``_sys.bpf.prog_load``: no object file, no
compiler.  Everything a probe creates is closed before it returns; a probe that
attaches (raw tracepoint, tp_btf, fentry) attaches a program that does nothing,
to a target where that is harmless, for the duration of the probe.

``fentry_on``, ``kprobe_on`` and ``tracepoint`` answer for one target (a
function, a tracepoint) and are not cached.

``python -m rawprobe features`` prints :func:`report`, one line per feature.

An EPERM answer means "not supported here" but has two different causes, and
the detail says which: this process lacks privileges (CAP_BPF / CAP_PERFMON /
CAP_SYS_ADMIN, read from /proc/self/status), or it has them and the kernel
refuses anyway (kernel lockdown, an LSM such as the BPF LSM, or a sandbox
policy): no amount of privilege in the process changes the latter.
"""
from __future__ import annotations

import errno
import os
import sys

from ._records import RecordTuple
from .caps import why_refused
from .errors import (ENOTSUPP, NotFoundError, NotSupportedError, PermissionDeniedError,
                     RawprobeError, SyscallError, errno_name)

# No run-time ``typing`` or ``functools``: start-up time (re, enum, collections...).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable

__all__ = [
    "Feature", "report", "main_features", "PROBES",
    "kprobe_pmu", "kprobe_events", "uprobe_pmu", "uprobe_events", "btf",
    "raw_tracepoint", "tp_btf", "fentry", "ringbuf", "send_signal", "bpf_cookie",
    "syscall_wrapper", "pidfd",
    "link_perf_tracepoint", "link_perf_kprobe", "link_perf_uprobe", "link_tp_btf",
    "link_tracing", "kprobe_multi", "uprobe_multi", "bpf_lsm", "fmod_ret_security", "pid_namespaces", "fentry_on",
    "kprobe_on", "tracepoint",
]

PMU_ROOT = "/sys/bus/event_source/devices"


class Feature(RecordTuple):
    """One probe's answer (``name``, ``supported``, and a one-line ``detail``
    saying why), truthy when supported.  A named tuple, not a dataclass:
    importing dataclasses costs ~25 ms."""
    __slots__ = ()
    _fields = ("name", "supported", "detail")
    name: str
    supported: bool
    detail: str

    def __bool__(self) -> bool:
        return self.supported


def _once(probe: Callable[[], Feature]) -> Callable[[], Feature]:
    """``functools.cache`` for a probe (no arguments), with ``cache_clear()``."""
    result: list[Feature] = []

    def cached() -> Feature:
        if not result:
            result.append(probe())
        return result[0]
    cached.__name__ = cached.__qualname__ = probe.__name__
    cached.__doc__ = probe.__doc__
    cached.__wrapped__ = probe              # type: ignore[attr-defined]
    cached.cache_clear = result.clear       # type: ignore[attr-defined]
    return cached


# -- tiny programs -----------------------------------------------------------

def _insns(*parts: bytes) -> bytes:
    return b"".join(parts)


def _ret0() -> bytes:
    from .insn import BPF_ALU64, BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV, encode
    return encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=0) + encode(BPF_JMP | BPF_EXIT)


def _call(helper: int, r1: int | None = 0) -> bytes:
    """Call ``helper`` with ``r1`` set to a constant, or (None) still the context."""
    from .insn import BPF_ALU64, BPF_CALL, BPF_JMP, BPF_K, BPF_MOV, encode
    set_r1 = b"" if r1 is None else encode(BPF_ALU64 | BPF_MOV | BPF_K, 1, imm=r1)
    return set_r1 + encode(BPF_JMP | BPF_CALL, imm=helper)


def _load(prog_type: int, code: bytes, **kw):
    from ._sys import bpf
    return bpf.prog_load(prog_type, code, b"GPL", **kw)


# -- explaining failures -----------------------------------------------------

def _why(exc: BaseException) -> str:
    """A one-line explanation of a failed probe step."""
    err = getattr(exc, "errno", None)
    if err in (errno.EPERM, errno.EACCES) and isinstance(exc, SyscallError):
        return f"{exc.call}: EPERM, {why_refused(advice=False)}"
    if isinstance(exc, SyscallError):
        return f"{exc.call}: {errno_name(exc.errno)}" + (
            " (unknown to this kernel)" if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP)
            else "")
    return str(exc).split("\n")[0]


def _probe(name: str, fn: Callable[[], str]) -> Feature:
    try:
        return Feature(name, True, fn())
    except (RawprobeError, OSError) as e:
        return Feature(name, False, _why(e))


def _btf_id(name: str, kind: str) -> int:
    from .btf import types
    from .btf.kernel import KernelBTF
    return KernelBTF.load().id_of(name, getattr(types, kind))


# -- the probes ----------------------------------------------------------------

def _pmu(name: str) -> str:
    path = f"{PMU_ROOT}/{name}/type"
    try:
        with open(path) as f:
            return f"PMU type {int(f.read())} ({path})"
    except FileNotFoundError:
        raise NotSupportedError(f"no {PMU_ROOT}/{name}") from None


def _tracefs_root() -> str:
    from .link import tracefs
    try:
        return tracefs.tracefs_path(mount=False)
    except NotSupportedError:
        raise NotSupportedError(
            "tracefs is not mounted, cannot tell (rawprobe mounts it when it attaches)"
        ) from None
    except PermissionDeniedError as e:   # not the bpf(2) EPERM that _why explains
        raise NotSupportedError(f"cannot tell: {e.hint}") from None


def _tracefs_file(name: str, config: str) -> str:
    path = os.path.join(_tracefs_root(), name)
    if not os.path.exists(path):
        raise NotSupportedError(f"no {path} ({config} is off)")
    return path


@_once
def kprobe_pmu() -> Feature:
    """The kprobe PMU (4.17+, CONFIG_KPROBE_EVENTS): kprobes without tracefs."""
    return _probe("kprobe PMU", lambda: _pmu("kprobe"))


@_once
def kprobe_events() -> Feature:
    """tracefs kprobe_events (CONFIG_KPROBE_EVENTS): the pre-4.17 kprobe route."""
    return _probe("tracefs kprobe_events",
                  lambda: _tracefs_file("kprobe_events", "CONFIG_KPROBE_EVENTS"))


@_once
def uprobe_pmu() -> Feature:
    """The uprobe PMU (4.17+, CONFIG_UPROBE_EVENTS)."""
    return _probe("uprobe PMU", lambda: _pmu("uprobe"))


@_once
def uprobe_events() -> Feature:
    """tracefs uprobe_events (CONFIG_UPROBE_EVENTS)."""
    return _probe("tracefs uprobe_events",
                  lambda: _tracefs_file("uprobe_events", "CONFIG_UPROBE_EVENTS"))


_MIN_BTF = (
    # struct btf_header: magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
    b"\x9f\xeb\x01\x00" + (24).to_bytes(4, "little") + (0).to_bytes(4, "little")
    + (16).to_bytes(4, "little") + (16).to_bytes(4, "little") + (5).to_bytes(4, "little")
    # one type: "int", BTF_KIND_INT, size 4, encoding signed, 32 bits
    + (1).to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + (4).to_bytes(4, "little")
    + ((1 << 24) | 32).to_bytes(4, "little")
    + b"\0int\0"
)


@_once
def btf() -> Feature:
    """BPF_BTF_LOAD (4.18+) of a one-type blob, and kernel BTF (5.4+)."""
    def run() -> str:
        from ._sys import bpf
        bpf.btf_load(_MIN_BTF).close()
        vmlinux = os.path.exists("/sys/kernel/btf/vmlinux")
        return "BPF_BTF_LOAD works; kernel BTF " + (
            "at /sys/kernel/btf/vmlinux" if vmlinux else "MISSING (CO-RE needs it)")
    return _probe("BTF", run)


@_once
def raw_tracepoint() -> Feature:
    """BPF_RAW_TRACEPOINT_OPEN (4.17+): a no-op program on sys_enter."""
    def run() -> str:
        from ._sys import bpf
        from .uapi import ProgType
        with _load(ProgType.RAW_TRACEPOINT, _ret0()) as prog:
            bpf.raw_tracepoint_open(b"sys_enter", prog).close()
        return "raw_tracepoint_open(sys_enter) works"
    return _probe("raw tracepoints", run)


def _load_tp_btf():
    from .uapi import AttachType, ProgType
    return _load(ProgType.TRACING, _ret0(), expected_attach_type=AttachType.TRACE_RAW_TP,
                 attach_btf_id=_btf_id("btf_trace_sched_switch", "Typedef"))


@_once
def tp_btf() -> Feature:
    """BTF-typed raw tracepoints (5.5+): load on sched_switch and attach."""
    def run() -> str:
        from ._sys import bpf
        with _load_tp_btf() as prog:
            bpf.raw_tracepoint_open(None, prog).close()
        return "loaded and attached to sched_switch"
    return _probe("tp_btf", run)


_FENTRY_TARGETS = ("bpf_fentry_test1", "do_nanosleep")


def _load_fentry():
    from .uapi import AttachType, ProgType
    last: Exception = NotFoundError("no fentry target in the kernel's BTF")
    for name in _FENTRY_TARGETS:
        try:
            btf_id = _btf_id(name, "Func")
        except NotFoundError as e:
            last = e
            continue
        return name, _load(ProgType.TRACING, _ret0(),
                           expected_attach_type=AttachType.TRACE_FENTRY,
                           attach_btf_id=btf_id)
    raise last


@_once
def fentry() -> Feature:
    """fentry/fexit (BPF trampolines, 5.5+): load on bpf_fentry_test1 and attach."""
    def run() -> str:
        from ._sys import bpf
        name, prog = _load_fentry()
        with prog:
            bpf.raw_tracepoint_open(None, prog).close()
        return f"loaded and attached to {name}"
    return _probe("fentry/fexit", run)


@_once
def ringbuf() -> Feature:
    """BPF_MAP_TYPE_RINGBUF (5.8+)."""
    def run() -> str:
        from ._sys import bpf
        from .uapi import MapType
        bpf.map_create(MapType.RINGBUF, 0, 0, 4096).close()
        return "created a 4 KiB ring buffer map"
    return _probe("ring buffer map", run)


@_once
def send_signal() -> Feature:
    """The bpf_send_signal helper (5.3+), in a tracepoint program."""
    def run() -> str:
        from .uapi import BpfFunc, ProgType
        _load(ProgType.TRACEPOINT, _call(BpfFunc.send_signal) + _ret0()).close()
        return "a tracepoint program calling it loads"
    return _probe("bpf_send_signal", run)


@_once
def bpf_cookie() -> Feature:
    """The bpf_get_attach_cookie helper (5.15+), in a tracepoint program: what
    libbpf's LINUX_HAS_BPF_COOKIE says."""
    def run() -> str:
        from .uapi import BpfFunc, ProgType
        _load(ProgType.TRACEPOINT, _call(BpfFunc.get_attach_cookie, r1=None)
              + _ret0()).close()
        return "a tracepoint program calling bpf_get_attach_cookie loads"
    return _probe("BPF cookie", run)


@_once
def syscall_wrapper() -> Feature:
    """Syscalls entered through a wrapper that takes the user's registers as a
    ``struct pt_regs *`` (``__x64_sys_bpf``; x86-64 4.17+, arm64 5.7+): what
    LINUX_HAS_SYSCALL_WRAPPER says.  Looked up in /proc/kallsyms, where libbpf
    tries a kprobe on the symbol (and so answers no where kprobes are missing)."""
    def run() -> str:
        from .kallsyms import KALLSYMS, syscall_prefix
        from .link.kprobe import kernel_symbol_exists
        symbol = syscall_prefix() + "sys_bpf"
        if not syscall_prefix() or not kernel_symbol_exists(symbol):
            raise NotFoundError(f"no {symbol} in {KALLSYMS}")
        return f"{symbol} in {KALLSYMS}"
    return _probe("syscall wrapper", run)


@_once
def pidfd() -> Feature:
    """pidfd_open(2) (5.3+) and pidfd_send_signal(2) (5.1+)."""
    def run() -> str:
        from . import pidfd as _pidfd
        fd = _pidfd.open_pidfd(os.getpid())
        try:
            _pidfd.send_signal(fd, 0)
        finally:
            os.close(fd)
        return "pidfd_open + pidfd_send_signal(0) on self work"
    return _probe("pidfd", run)


def _link_create(prog, target_fd: int, attach_type: int) -> None:
    from ._sys import bpf
    bpf.link_create(prog, target_fd, attach_type).close()


@_once
def link_perf_tracepoint() -> Feature:
    """BPF_LINK_CREATE on a tracepoint perf event (5.15+)."""
    def run() -> str:
        from .uapi import AttachType, ProgType
        from .link import tracefs
        from .link.tracepoint import open_tracepoint_event
        tp_id = tracefs.tracepoint_id("syscalls", "sys_enter_getpid", root=_tracefs_root())
        with _load(ProgType.TRACEPOINT, _ret0()) as prog, open_tracepoint_event(tp_id) as pfd:
            _link_create(prog, pfd.fileno(), AttachType.PERF_EVENT)
        return "perf link on syscalls/sys_enter_getpid"
    return _probe("BPF_LINK_CREATE tracepoint", run)


@_once
def link_perf_kprobe() -> Feature:
    """BPF_LINK_CREATE on a kprobe PMU perf event (5.15+; needs kprobes)."""
    def run() -> str:
        if not kprobe_pmu():
            raise NotSupportedError("no kprobe PMU to link to")
        from .uapi import AttachType, ProgType
        from .link.kprobe import _open_pmu, resolve_syscall_symbol
        symbol = resolve_syscall_symbol("getpid")
        with _load(ProgType.KPROBE, _ret0()) as prog, _open_pmu(symbol, 0, False) as pfd:
            _link_create(prog, pfd.fileno(), AttachType.PERF_EVENT)
        return f"perf link on a kprobe at {symbol}"
    return _probe("BPF_LINK_CREATE kprobe", run)


@_once
def link_perf_uprobe() -> Feature:
    """BPF_LINK_CREATE on a uprobe PMU perf event (5.15+)."""
    def run() -> str:
        if not uprobe_pmu():
            raise NotSupportedError("no uprobe PMU to link to")
        from .uapi import AttachType, ProgType
        from .link.uprobe import _open_pmu
        # A uprobe in an unmapped memfd: registered, never hit by anyone.
        mfd = os.memfd_create("rawprobe-probe", os.MFD_CLOEXEC)
        try:
            os.ftruncate(mfd, 4096)
            with _load(ProgType.KPROBE, _ret0()) as prog, \
                    _open_pmu(f"/proc/self/fd/{mfd}", 0, -1, False) as pfd:
                _link_create(prog, pfd.fileno(), AttachType.PERF_EVENT)
        finally:
            os.close(mfd)
        return "perf link on a uprobe"
    return _probe("BPF_LINK_CREATE uprobe", run)


@_once
def link_tp_btf() -> Feature:
    """BPF_LINK_CREATE for a tp_btf program (attach type BPF_TRACE_RAW_TP)."""
    def run() -> str:
        from .uapi import AttachType
        with _load_tp_btf() as prog:
            _link_create(prog, 0, AttachType.TRACE_RAW_TP)
        return "link on sched_switch"
    return _probe("BPF_LINK_CREATE tp_btf", run)


@_once
def link_tracing() -> Feature:
    """BPF_LINK_CREATE for an fentry program (attach type BPF_TRACE_FENTRY)."""
    def run() -> str:
        if not fentry():
            raise NotSupportedError("fentry itself is not supported")
        from .uapi import AttachType
        name, prog = _load_fentry()
        with prog:
            _link_create(prog, 0, AttachType.TRACE_FENTRY)
        return f"link on {name}"
    return _probe("BPF_LINK_CREATE fentry", run)


@_once
def kprobe_multi() -> Feature:
    """kprobe.multi links (BPF_TRACE_KPROBE_MULTI: 5.18+ with CONFIG_FPROBE).
    Asked for a function that does not exist: ESRCH or ENOENT (kernels differ) means
    the kernel looked it up, so it has them; EOPNOTSUPP no fprobe; EINVAL an
    older kernel."""
    def run() -> str:
        from ._sys import bpf
        from .uapi import AttachType, ProgType
        with _load(ProgType.KPROBE, _ret0(),
                   expected_attach_type=AttachType.TRACE_KPROBE_MULTI) as prog:
            try:
                bpf.link_create_kprobe_multi(prog, AttachType.TRACE_KPROBE_MULTI,
                                             syms=[b"rawprobe_no_such_function"]).close()
            except SyscallError as e:
                if e.errno in (errno.EOPNOTSUPP, ENOTSUPP):
                    raise NotSupportedError("BPF_LINK_CREATE kprobe_multi: EOPNOTSUPP, "
                                            "no fprobe (CONFIG_FPROBE is off)") from None
                if e.errno not in (errno.ENOENT, errno.ESRCH):
                    raise
        return "BPF_LINK_CREATE kprobe_multi looks symbols up"
    return _probe("kprobe.multi", run)


@_once
def uprobe_multi() -> Feature:
    """uprobe.multi links (BPF_TRACE_UPROBE_MULTI: 6.6+).  Asked for a uprobe
    on "/": EBADF (not a regular file) means the kernel has them; EINVAL an
    older kernel (libbpf's probe)."""
    def run() -> str:
        from ._sys import bpf
        from .uapi import AttachType, ProgType
        with _load(ProgType.KPROBE, _ret0(),
                   expected_attach_type=AttachType.TRACE_UPROBE_MULTI) as prog:
            try:
                bpf.link_create_uprobe_multi(prog, b"/", [0]).close()
            except SyscallError as e:
                if e.errno != errno.EBADF:
                    raise
        return "BPF_LINK_CREATE uprobe_multi checks its path"
    return _probe("uprobe.multi", run)


# What the interceptor's kernel side reads to see pids as a child pid namespace
# sees them (intercept.bpf.c, ns_nr): struct -> members.
PIDNS_FIELDS = {"pid": ("level", "numbers"), "upid": ("nr", "ns"),
                "pid_namespace": ("ns",), "ns_common": ("inum",)}


@_once
def pid_namespaces() -> Feature:
    """Pids as a child pid namespace sees them, in BPF (CO-RE reads of struct
    pid's numbers[], 2.6.24+, and of pid_namespace's ns.inum, 3.19+): the
    structs in the kernel's BTF.  What `watch` needs to run in a container
    without the host's pid namespace."""
    def run() -> str:
        from .btf.kernel import KernelBTF
        kb = KernelBTF.load()
        for struct, fields in PIDNS_FIELDS.items():
            have = {m.name for m in kb.type_by_id(_btf_id(struct, "Struct")).members}
            missing = [f for f in fields if f not in have]
            if missing:
                raise NotSupportedError(f"struct {struct} has no {', '.join(missing)} "
                                        "in the kernel's BTF")
        return "struct pid's numbers[] and pid_namespace's ns.inum in the kernel's BTF"
    return _probe("pid namespace translation", run)


@_once
def bpf_lsm() -> Feature:
    """BPF LSM programs (5.7+, CONFIG_BPF_LSM=y and bpf in lsm=) that run: one
    denies getpgid() of this process, and must (lsms.deny_runs).  Built in but
    not active is not supported, and the detail says how to enable it."""
    def run() -> str:
        from . import lsms
        if not lsms.deny_runs("lsm"):
            raise NotSupportedError(lsms.inactive_reason())
        names = lsms.active().names
        return "an LSM program on task_getpgid ran" + (
            f" (active LSMs: {','.join(names)})" if names else "")
    return _probe("BPF LSM", run)


@_once
def fmod_ret_security() -> Feature:
    """fmod_ret on the LSM framework's security_* functions (5.7+, BPF
    trampolines): a deny that needs neither the BPF LSM active nor
    CONFIG_FUNCTION_ERROR_INJECTION (lsms.deny_runs)."""
    def run() -> str:
        from . import lsms
        if not lsms.deny_runs("fmod_ret"):
            raise NotSupportedError("attached to security_task_getpgid but never ran")
        return "an fmod_ret program on security_task_getpgid made it fail"
    return _probe("fmod_ret on security_*", run)


# -- a given target ---------------------------------------------------------------
# Not cached: the answer depends on the target, and on tracefs being mounted.

def fentry_on(function: str) -> Feature:
    """fentry works here (:func:`fentry`) and ``function`` is a function in the
    kernel's BTF, so an fentry program can be loaded on it."""
    name = f"fentry on {function}"
    f = fentry()
    if not f:
        return Feature(name, False, f"refused here ({f.detail})")
    return _probe(name, lambda: f"{function} is BTF function {_btf_id(function, 'Func')}")


def kprobe_on(symbol: str) -> Feature:
    """kprobes work here (:func:`kprobe_pmu` or :func:`kprobe_events`) and
    ``symbol`` is a kernel function in /proc/kallsyms."""
    name = f"kprobe on {symbol}"
    how = kprobe_pmu() or kprobe_events()
    if not how:
        return Feature(name, False, f"not in this kernel ({kprobe_pmu().detail}; "
                                    f"{kprobe_events().detail})")

    def run() -> str:
        from .link.kprobe import KALLSYMS, kernel_symbol_exists
        if not kernel_symbol_exists(symbol):
            raise NotFoundError(f"no function {symbol} in {KALLSYMS}")
        return f"{symbol} is in {KALLSYMS}; by {how.name}"
    return _probe(name, run)


def tracepoint(group: str, name: str, mount: bool = False) -> Feature:
    """Tracepoint ``group/name`` can be attached: tracefs is reachable (mounted
    first if ``mount`` and it is not, as attaching does) and the event's id is
    readable."""
    from .link import tracefs
    label = f"tracepoint {group}/{name}"
    try:
        root = tracefs.tracefs_path(mount=mount)
        tracefs.tracepoint_id(group, name, root=root)
    except RawprobeError as e:   # not _why: a tracefs EACCES is not bpf(2)'s EPERM
        return Feature(label, False, str(e).split("\n")[0])
    return Feature(label, True, f"{root}/events/{group}/{name}")


PROBES: tuple[Callable[[], Feature], ...] = (
    btf, raw_tracepoint, tp_btf, kprobe_pmu, kprobe_events, uprobe_pmu, uprobe_events,
    fentry, ringbuf, send_signal, bpf_cookie, syscall_wrapper, pidfd,
    link_perf_tracepoint, link_perf_kprobe,
    link_perf_uprobe, link_tp_btf, link_tracing, kprobe_multi, uprobe_multi, bpf_lsm,
    fmod_ret_security, pid_namespaces,
)


def report() -> list[tuple[str, bool, str]]:
    """``(name, supported, detail)`` for every probe, in a stable order."""
    return [(f.name, f.supported, f.detail) for f in (p() for p in PROBES)]


def main_features(argv: list[str] | None = None,
                  extra: list[tuple[str, bool, str]] = ()) -> int:
    """``python -m rawprobe features [--json]``: print what this kernel supports, the
    ``extra`` rows after the probes' (the caller's conclusions), then what the place
    this process runs in (a container) takes away."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from . import container
    rows = report() + list(extra)
    here = container.report(bpf_works=btf().supported)
    if "--json" in argv:
        import json
        print(json.dumps([{"name": n, "supported": s, "detail": d, "kind": kind}
                          for kind, part in (("kernel", rows), ("process", here))
                          for n, s, d in part], indent=1))
        return 0
    width = max(len(n) for n, _, _ in rows + here)
    print(f"kernel {os.uname().release} ({os.uname().machine})")
    for name, ok, detail in rows:
        print(f"{name:<{width}}  {'yes' if ok else 'no ':<3}  {detail}")
    print(f"this process (uid {os.getuid()})")
    for name, ok, detail in here:
        print(f"{name:<{width}}  {'ok ' if ok else 'no ':<3}  {detail}")
    return 0
