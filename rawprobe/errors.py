"""The exception hierarchy: every error rawprobe raises on purpose is a RawprobeError.

Each message says what went wrong and, where there is one, what to do about it.
This module imports nothing from rawprobe, so every layer may use it.
"""
from __future__ import annotations

import errno as _errno
import os as _os

__all__ = [
    "RawprobeError",
    "ObjectFormatError",
    "BTFError",
    "NotSupportedError",
    "NotFoundError",
    "SyscallError",
    "PermissionDeniedError",
    "VerifierError",
    "CORERelocationError",
    "InvalidValueError",
    "ClosedError",
    "PinError",
    "UsageError",
    "ENOTSUPP",
    "errno_name",
    "errno_text",
]

# The kernel-internal errnos that bpf(2) passes on to user space, which the C
# library has no name for (strerror says "Unknown error 524").  The one table
# of errno names: every message that shows an errno goes through errno_name().
ENOTSUPP = 524
_KERNEL_ERRNOS = {ENOTSUPP: ("ENOTSUPP", "Operation not supported")}


def errno_name(err: int) -> str:
    """``err``'s symbolic name (``"EINVAL"``, ``"ENOTSUPP"``), or the number."""
    known = _KERNEL_ERRNOS.get(err)
    return known[0] if known else _errno.errorcode.get(err, str(err))


def errno_text(err: int) -> str:
    """``err``'s description, for kernel-internal errnos too."""
    known = _KERNEL_ERRNOS.get(err)
    return known[1] if known else _os.strerror(err)


class RawprobeError(Exception):
    """Base of every error rawprobe raises."""


class ObjectFormatError(RawprobeError):
    """A malformed or unsupported input: ELF object, BTF blob, section name."""


FormatError = ObjectFormatError


class BTFError(ObjectFormatError):
    """Malformed BTF or .BTF.ext data, or a type that is not where it should be."""


class NotSupportedError(RawprobeError):
    """The running kernel lacks a feature (kprobes, fentry, a map type, ...)."""


class NotFoundError(RawprobeError):
    """A named target does not exist: a symbol, a tracepoint, a type, a program."""


class SyscallError(RawprobeError):
    """A system call failed.  ``errno`` and ``call`` say which and how."""

    def __init__(self, call: str, err: int, hint: str = "") -> None:
        self.call = call
        self.errno = err
        self.hint = hint
        msg = f"{call} failed: {errno_name(err)} ({errno_text(err)})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class PermissionDeniedError(SyscallError):
    """EPERM/EACCES: rawprobe needs root or CAP_BPF + CAP_PERFMON (+ CAP_SYS_ADMIN for some)."""


class VerifierError(RawprobeError):
    """The kernel's verifier rejected a program.

    ``log`` keeps the whole verifier log; ``str()`` shows only its last lines,
    after ``hint``, what the loader knows of the cause.
    """

    TAIL_LINES = 12

    def __init__(self, program: str, err: int, log: str, hint: str = "") -> None:
        self.program = program
        self.errno = err
        self.log = log
        self.hint = hint
        lines = [ln for ln in log.rstrip("\n").splitlines() if ln.strip()]
        tail = lines[-self.TAIL_LINES:]
        more = len(lines) - len(tail)
        head = (f"program {program!r} rejected by the verifier: "
                f"{errno_name(err)}")
        if hint:
            head += f"; {hint}"
        if more > 0:
            head += f" (last {len(tail)} of {len(lines)} log lines; .log has all)"
        super().__init__("\n".join([head, *("  " + ln for ln in tail)]))


class CORERelocationError(RawprobeError):
    """A CO-RE relocation could not be computed (not merely unresolved: that poisons)."""


class InvalidValueError(RawprobeError, ValueError):
    """A value that does not fit the variable it is meant for."""


class ClosedError(RawprobeError, ValueError):
    """An operation on a map, program, link or file descriptor after close().
    Also a ValueError, as the same operation on a closed file is."""


class PinError(RawprobeError):
    """A map pinned by name cannot be pinned or reused: the pin path is not on a
    bpffs, or what is pinned there is not the object's map."""


class UsageError(RawprobeError):
    """A bad command-line argument; the message says what is accepted."""


class MissingExtraError(RawprobeError):
    """An optional feature's package is not installed; the message names the
    ``pip install`` that adds it."""
