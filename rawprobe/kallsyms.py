"""``/proc/kallsyms``: which kernel symbols exist, and where; what syscalls' entry
points are called.

Each line is ``<address> <type> <name>[\\t[<module>]]``.  Addresses read 0
unless ``kernel.kptr_restrict`` shows them to this process (root with
kptr_restrict 0 or 1).  Data symbols are listed only with CONFIG_KALLSYMS_ALL.
The file is searched with ``bytes.find``: ~50x faster than a regex or than
splitting its 100,000+ lines.

Syscall entry points.  A kernel whose architecture wraps syscalls
(CONFIG_ARCH_HAS_SYSCALL_WRAPPER: x86-64 4.17+, arm64 5.0+, s390 5.0+, riscv
5.19+, powerpc 6.1+) enters ``write`` through ``__x64_sys_write`` (the
prefix per architecture below, libbpf's list), which takes the user's
registers as a ``struct pt_regs *``; others through ``sys_write``.  The one
table of those prefixes: kprobes, ``ksyscall/``, the syscall-wrapper feature
probe and the interceptor read it.
"""
from __future__ import annotations

import os

from .errors import NotSupportedError

__all__ = ["KALLSYMS", "FUNCTION_TYPES", "SYSCALL_PREFIX", "read", "entries", "functions",
           "syscall_prefix"]

KALLSYMS = "/proc/kallsyms"
FUNCTION_TYPES = "tTwW"         # text and weak symbols

# uname machine -> the syscall wrapper prefix of its kernels (``__x64_`` +
# ``sys_write``); machines missing here have no wrapper.
SYSCALL_PREFIX = {
    "x86_64": "__x64_", "i386": "__ia32_", "i686": "__ia32_",
    "aarch64": "__arm64_", "s390x": "__s390x_",
    "armv7l": "__arm_", "armv6l": "__arm_", "mips": "__mips_", "mips64": "__mips_",
    "riscv64": "__riscv_", "riscv32": "__riscv_",
    "ppc": "__powerpc_", "ppc64": "__powerpc_", "ppc64le": "__powerpc_",
}


def syscall_prefix(machine: str | None = None) -> str:
    """The syscall wrapper prefix of ``machine`` (default: this one's, ``__x64_``
    on x86-64), or ``""``."""
    return SYSCALL_PREFIX.get(machine or os.uname().machine, "")


def read(purpose: str) -> bytes:
    """The whole file; NotSupportedError saying what could not be done without it."""
    try:
        with open(KALLSYMS, "rb") as f:
            return f.read()
    except OSError as e:
        raise NotSupportedError(f"{purpose}: cannot read {KALLSYMS} ({e.strerror})") \
            from None


def entries(text: bytes, name: str, *, llvm_data: bool = False) -> list[tuple[int, str]]:
    """``(address, type)`` of each symbol called ``name`` in kallsyms ``text``.
    ``llvm_data``: also data symbols (type ``d``) called ``name.llvm.<hash>``,
    the name LLVM's LTO gives a promoted static variable (as libbpf accepts)."""
    needle = b" " + name.encode()
    found = []
    i = text.find(needle)
    while i >= 0:
        end = i + len(needle)
        whole = text[end:end + 1] in (b"", b"\t", b"\n")
        llvm = llvm_data and text.startswith(b".llvm.", end)
        if (whole or llvm) and i >= 2 and text[i - 2:i - 1] == b" ":
            kind = chr(text[i - 1])
            if whole or kind == "d":
                start = text.rfind(b"\n", 0, i) + 1
                try:
                    found.append((int(text[start:i - 2], 16), kind))
                except ValueError:
                    pass
        i = text.find(needle, end)
    return found


def functions(text: bytes, names: list[str]) -> set[str]:
    """The names among ``names`` that are functions in kallsyms ``text``."""
    return {n for n in names if any(k in FUNCTION_TYPES for _, k in entries(text, n))}
