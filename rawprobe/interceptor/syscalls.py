"""Syscall names <-> numbers for the running architecture.

The table is generated ahead (tools/gen_syscall_table.py) because a minimal container
has no kernel headers.  Names are accepted as ``write``, ``sys_write`` or the arch entry
symbol ``__x64_sys_write`` / ``__arm64_sys_write``; a decimal number is accepted too.
"""
from __future__ import annotations

import os

from ..errors import RawprobeError
from ..kallsyms import SYSCALL_PREFIX

# Entry-point symbols carry an arch prefix (since 4.17 on x86_64 and 5.0 on arm64).
ENTRY_PREFIX = {arch: prefix + "sys_" for arch, prefix in SYSCALL_PREFIX.items()}

# Per-syscall tracepoints are named after the kernel function, which differs from the
# syscall's name for a few old calls (sys_enter_newfstat traces fstat).
TRACEPOINT_NAME = {
    "stat": "newstat", "lstat": "newlstat", "fstat": "newfstat", "uname": "newuname",
    "sendfile": "sendfile64", "umount2": "umount",
}
_TRACEPOINT_BACK = {v: k for k, v in TRACEPOINT_NAME.items()}


class UnknownSyscallError(RawprobeError):
    """A syscall name or number the table does not know for this architecture."""


def machine() -> str:
    return os.uname().machine


def table(arch: str | None = None) -> dict[str, int]:
    arch = arch or machine()
    from . import syscall_table
    try:
        return getattr(syscall_table, arch.upper())
    except AttributeError:
        raise UnknownSyscallError(
            f"no syscall table for architecture {arch!r} (have x86_64, aarch64); "
            "use --kprobe SYMBOL instead of --syscall") from None


def _strip(name: str) -> str:
    for prefix in (*ENTRY_PREFIX.values(), "sys_enter_", "sys_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def resolve(name: str, arch: str | None = None) -> tuple[str, int]:
    """``"write"`` -> ``("write", 1)`` on x86_64.  Raises UnknownSyscallError."""
    arch = arch or machine()
    tab = table(arch)
    text = name.strip()
    if text.isdigit():
        nr = int(text)
        sname = name_of(nr, arch)
        if not sname.startswith("syscall_"):
            return sname, nr
        raise UnknownSyscallError(f"syscall number {nr} is not a syscall on {arch}")
    base = _strip(text.lower())
    base = _TRACEPOINT_BACK.get(base, base)
    if base in tab:
        return base, tab[base]
    import difflib
    close = difflib.get_close_matches(base, tab, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownSyscallError(f"unknown syscall {name!r} on {arch}{hint}")


_NAMES: dict[str, dict[int, str]] = {}


def name_of(nr: int, arch: str | None = None) -> str:
    """Number -> name, or ``"syscall_<nr>"`` when the table does not know it."""
    arch = arch or machine()
    names = _NAMES.get(arch)
    if names is None:
        names = _NAMES[arch] = {snr: sname for sname, snr in table(arch).items()}
    return names.get(nr, f"syscall_{nr}")


def tracepoint_for(name: str) -> str:
    """The per-syscall tracepoint (in group ``syscalls``) for a syscall name."""
    return "sys_enter_" + TRACEPOINT_NAME.get(name, name)


def entry_symbol(name: str, arch: str | None = None) -> str:
    """The kernel function a kprobe/fentry on this syscall attaches to."""
    arch = arch or machine()
    return ENTRY_PREFIX.get(arch, "sys_") + TRACEPOINT_NAME.get(name, name)
