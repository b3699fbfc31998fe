"""kprobes and kretprobes: a program run when the kernel executes ``symbol+offset``.

Two mechanisms, tried in order:

1. The kprobe PMU (4.17+): ``perf_event_open`` with the type read from
   ``/sys/bus/event_source/devices/kprobe/type``, ``config1`` = pointer to the
   symbol name, ``config2`` = the offset into it, and the retprobe bit (its
   position read from ``format/retprobe``) set in ``config`` for kretprobes.
   The kernel copies the name during the call and deletes the probe when the
   perf event is closed: nothing can be left behind.
2. tracefs ``kprobe_events`` (2.6.33+): a line ``p:rawprobe_<pid>_<n>/<name>
   symbol+offset`` creates a probe event whose tracepoint id is then opened
   with ``PERF_TYPE_TRACEPOINT``.  The event is global kernel state, so it is
   deleted on close and on every failure after its creation (see
   :mod:`.tracefs`).

Then the BPF program is attached to the perf event, with a BPF perf link
(``BPF_LINK_CREATE``, 5.15+) when the kernel has it, else
``PERF_EVENT_IOC_SET_BPF``, and the event is enabled.

Offsets.  ``config2`` may point anywhere inside the function as long as it is
an instruction boundary; on x86 the kernel decodes the function from its start
and refuses other offsets with EILSEQ.  A kretprobe takes no offset (the kernel
hooks the return address at entry).

Syscalls.  Since 4.17 on x86-64 (5.7 arm64, 5.12 riscv...) a syscall ``write``
is the symbol ``__x64_sys_write`` (``__arm64_sys_write``, ...), which takes a
``struct pt_regs *`` holding the user's registers; older kernels call it
``sys_write``.  :func:`resolve_syscall_symbol` finds whichever exists, and
:func:`attach_kprobe` applies it to names starting with ``sys_``.
"""
from __future__ import annotations

import os

from .. import kallsyms
from ..errors import NotFoundError, NotSupportedError, ObjectFormatError
from ..kallsyms import KALLSYMS, SYSCALL_PREFIX, syscall_prefix
from ..names import is_symbol
from ..uapi import ProgType

__all__ = ["attach_kprobe", "resolve_syscall_symbol", "ksyscall_symbol",
           "kernel_symbol_exists", "syscall_prefix"]

def _read_kallsyms() -> bytes:
    return kallsyms.read("kprobes: kernel symbols cannot be checked")


def kernel_symbol_exists(symbol: str) -> bool:
    """Whether ``symbol`` is a function in ``/proc/kallsyms`` (kernel or module)."""
    return symbol in kallsyms.functions(_read_kallsyms(), [symbol])


def resolve_syscall_symbol(name: str) -> str:
    """The kernel symbol to kprobe for a syscall or syscall-like routine.

    ``"write"``, ``"sys_write"`` and ``"__x64_sys_write"`` all give
    ``"__x64_sys_write"`` on x86-64 kernels with syscall wrappers and
    ``"sys_write"`` on those without.  A name that is itself a kernel function
    (``"ksys_write"``) is returned unchanged.  Raises NotFoundError naming every
    spelling tried.
    """
    if not is_symbol(name):
        raise ObjectFormatError(f"syscall symbol {name!r}: not a kernel symbol name")
    prefix = syscall_prefix()
    bare = name
    for p in {prefix, *SYSCALL_PREFIX.values()} - {""}:
        if bare.startswith(p + "sys_"):
            bare = bare[len(p):]
            break
    if bare.startswith("sys_"):
        candidates = [prefix + bare, bare] if prefix else [bare]
    else:
        # "ksys_write", "do_sys_open" ... as given; "write" as a syscall name.
        candidates = [name] + ([prefix + "sys_" + name] if prefix else []) + ["sys_" + name]
    if name not in candidates:
        candidates.insert(0, name)
    found = kallsyms.functions(_read_kallsyms(), candidates)
    for cand in candidates:
        if cand in found:
            return cand
    raise NotFoundError(f"kernel symbol {name!r} not found in {KALLSYMS} (tried "
                        + ", ".join(dict.fromkeys(candidates)) + ")")


def ksyscall_symbol(name: str) -> str:
    """The kernel function ``SEC("ksyscall/<name>")`` probes, by libbpf's rule:
    the architecture's wrapper (``__x64_sys_<name>``) on kernels that wrap
    syscalls, else ``__se_sys_<name>`` (the function every SYSCALL_DEFINE
    makes).  Which of the two is what the program's ``BPF_KSYSCALL`` reads
    its arguments by (LINUX_HAS_SYSCALL_WRAPPER)."""
    from .. import features
    if not is_symbol(name):
        raise ObjectFormatError(f"ksyscall {name!r}: not a syscall name")
    if features.syscall_wrapper().supported:
        return f"{syscall_prefix()}sys_{name}"
    return f"__se_sys_{name}"


# -- attaching -------------------------------------------------------------

_NO_KPROBES = ("kprobes: this kernel has neither the kprobe PMU "
               "(/sys/bus/event_source/devices/kprobe) nor tracefs kprobe_events "
               "(CONFIG_KPROBES is off); kprobe programs cannot be attached here. "
               "Use a tracepoint, raw tracepoint or tp_btf program instead, or a "
               "kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y")


def _is_syscall_name(symbol: str) -> bool:
    return symbol.startswith("sys_") or any(
        symbol.startswith(p + "sys_") for p in SYSCALL_PREFIX.values())


def _has_pmu() -> bool:
    return os.path.exists("/sys/bus/event_source/devices/kprobe/type")


def _open_pmu(symbol: str, offset: int, retprobe: bool):
    from .._sys import perf
    attr = {"type": perf.pmu_type("kprobe"), "kprobe_func": symbol.encode(),
            "probe_offset": offset, "sample_period": 1, "wakeup_events": 1}
    if retprobe:
        attr["config"] = 1 << perf.retprobe_bit("kprobe")
    return perf.perf_event_open(attr, pid=-1, cpu=0)


def _translate(err: "SyscallError", symbol: str, offset: int) -> Exception:
    """A clear error for a failed kprobe creation (PMU or tracefs)."""
    import errno
    from ..errors import SyscallError
    e = err.errno
    target = f"{symbol}+{offset:#x}" if offset else symbol
    if e in (errno.ENOENT, errno.EINVAL):
        try:
            exists = kernel_symbol_exists(symbol)
        except NotSupportedError:      # kallsyms unreadable: cannot tell
            exists = True
        if not exists:
            try:
                hint = f" (did you mean {resolve_syscall_symbol(symbol)!r}?)"
            except NotFoundError:
                hint = ""
            return NotFoundError(
                f"kprobe: kernel function {symbol!r} not found in {KALLSYMS}{hint}")
        if e == errno.EINVAL:
            return SyscallError(
                f"kprobe {target}", e,
                f"{symbol!r} exists but cannot be probed there: it may be on the kprobe "
                "blacklist (/sys/kernel/debug/kprobes/blacklist), not a function, "
                "or the offset lies outside it")
    if e == errno.EILSEQ:
        return SyscallError(
            f"kprobe {target}", e,
            f"offset {offset:#x} is not at an instruction boundary of {symbol}; pick one "
            "from its disassembly (gdb vmlinux, 'disassemble /r'), or use offset 0")
    return err


def attach_kprobe(prog, symbol: str, offset: int = 0, retprobe: bool = False, *,
                  via: str = "auto"):
    """Attach a kprobe program at ``symbol+offset`` (or at the return of ``symbol``).

    ``symbol`` is a kernel function; names of syscalls (``sys_write``,
    ``__x64_sys_write``) are resolved with :func:`resolve_syscall_symbol`.
    ``offset`` must be an instruction boundary (x86 checks, EILSEQ otherwise);
    kretprobes take none.  ``via`` is ``"auto"`` (PMU, else tracefs),
    ``"pmu"`` or ``"tracefs"``.

    Errors: NotFoundError for an unknown symbol; NotSupportedError when the
    kernel has no kprobes at all.
    """
    from ..errors import InvalidValueError, SyscallError
    from . import _attach, tracefs
    _attach.check_type(prog, (ProgType.KPROBE,), "a kprobe", 'SEC("kprobe/<function>")')
    if via not in ("auto", "pmu", "tracefs"):
        raise InvalidValueError(f"via must be 'auto', 'pmu' or 'tracefs', not {via!r}")
    if not is_symbol(symbol):
        raise ObjectFormatError(f"kprobe: {symbol!r} is not a kernel symbol name")
    if offset < 0:
        raise ObjectFormatError(f"kprobe {symbol}: negative offset {offset}")
    if retprobe and offset:
        raise ObjectFormatError(f"kretprobe {symbol}+{offset:#x}: return probes take no "
                                "offset (the kernel hooks the return at entry)")
    if _is_syscall_name(symbol) and not symbol.startswith(syscall_prefix() + "sys_"):
        symbol = resolve_syscall_symbol(symbol)     # sys_write -> __x64_sys_write
    kind = "kretprobe" if retprobe else "kprobe"
    target = f"{symbol}+{offset:#x}" if offset else symbol
    use_pmu = via == "pmu" or (via == "auto" and _has_pmu())
    if use_pmu:
        try:
            pfd = _open_pmu(symbol, offset, retprobe)
        except SyscallError as e:
            raise _translate(e, symbol, offset) from None
        return _attach.attach(prog, pfd, kind, target)

    # tracefs kprobe_events: create the event, open it, attach; undo on failure.
    try:
        root = tracefs.tracefs_path()
    except NotSupportedError as e:
        raise NotSupportedError(f"{_NO_KPROBES} ({e})") from None
    if not os.path.exists(os.path.join(root, "kprobe_events")):
        raise NotSupportedError(_NO_KPROBES)
    try:
        event = tracefs.create_event("kprobe_events", "r" if retprobe else "p",
                                     f"{symbol}+{offset}", symbol)
    except SyscallError as e:
        raise _translate(e, symbol, offset) from None
    try:
        from .tracepoint import open_tracepoint_event
        pfd = open_tracepoint_event(event.id())
    except BaseException:
        event.remove_quietly()
        raise
    return _attach.attach(prog, pfd, kind, target, event=event)
