"""Process handles: pidfd_open(2) (5.3) and pidfd_send_signal(2) (5.1).

A pidfd names one process for good: signalling through it can never hit a
new process that reused the pid, and it polls readable (EPOLLIN) once the
process has exited, so it can sit in the same epoll set as a ring buffer.
"""
from __future__ import annotations

import errno as _E

from ._native import call, ffi, lib
from .consts import syscall_numbers
from .errno import syscall_error
from .fd import FD

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["PIDFD_NONBLOCK", "pidfd_open", "pidfd_send_signal", "pidfd_getfd"]

PIDFD_NONBLOCK = 0o4000          # O_NONBLOCK (5.10): waitid(P_PIDFD) without blocking

_NR = syscall_numbers()
_NR_PIDFD_OPEN = ffi.cast("long", _NR["pidfd_open"])
_NR_PIDFD_SEND_SIGNAL = ffi.cast("long", _NR["pidfd_send_signal"])
_NR_PIDFD_GETFD = ffi.cast("long", _NR["pidfd_getfd"])
_LONG = ffi.typeof("long")
_NULL = ffi.NULL


def _hint(err: int) -> str:
    if err == _E.ESRCH:
        return "the process has exited"
    if err == _E.ENOSYS:
        return "pidfds need Linux 5.3+ (pidfd_getfd 5.6+)"
    return ""


def _syscall(name: str, nr: Any, *args: Any) -> int:
    r = call(lib.syscall, nr, *args)
    if r < 0:
        # SyscallError with errno ESRCH when the process is gone.
        raise syscall_error(name, -r, _hint(-r))
    return r


def pidfd_open(pid: int, flags: int = 0) -> FD:
    """A pidfd (always close-on-exec) for process ``pid``; ESRCH if there is none."""
    return FD(_syscall("pidfd_open", _NR_PIDFD_OPEN, ffi.cast(_LONG, pid),
                       ffi.cast(_LONG, flags)))


def pidfd_send_signal(pidfd: Any, sig: int, flags: int = 0) -> None:
    """Send ``sig`` to the process behind ``pidfd``; SyscallError(ESRCH) once it
    has exited (even if its pid was reused since)."""
    fd = pidfd if type(pidfd) is int else pidfd.fileno()
    _syscall("pidfd_send_signal", _NR_PIDFD_SEND_SIGNAL, ffi.cast(_LONG, fd),
             ffi.cast(_LONG, sig), _NULL, ffi.cast(_LONG, flags))


def pidfd_getfd(pidfd: Any, targetfd: int) -> FD:
    """A duplicate of the target process's fd ``targetfd`` (5.6; needs ptrace rights)."""
    fd = pidfd if type(pidfd) is int else pidfd.fileno()
    return FD(_syscall("pidfd_getfd", _NR_PIDFD_GETFD, ffi.cast(_LONG, fd),
                       ffi.cast(_LONG, targetfd), ffi.cast(_LONG, 0)))
