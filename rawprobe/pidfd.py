"""pidfds: a handle on one process that a reused pid cannot redirect.

The one place rawprobe opens and signals processes (the interceptor's tracker and
``features``).  ``pidfd_open`` (Linux 5.3) pins whichever process holds the pid at
that moment; ``pidfd_send_signal`` (5.1) can then only ever reach that process, and
the pidfd polls readable (EPOLLIN) once it has exited (all threads), so exits of
processes that are not our children sit in the same epoll set as a ring buffer.

Python's stdlib has both calls (``os.pidfd_open``, ``signal.pidfd_send_signal``,
3.9+), so no native code is needed.  Errors: :class:`ProcessGoneError` when the
process has exited (ESRCH), :class:`~rawprobe.errors.PermissionDeniedError` when
the kernel refuses the signal (EPERM: another user's process, no CAP_KILL; see
:mod:`rawprobe.caps`), any other failure a :class:`~rawprobe.errors.SyscallError`.  The caller owns the fd.
"""
from __future__ import annotations

import errno
import os
import select
import struct
import _signal  # the C module: "signal" builds enums at import (ms on the start path)

from ._sys.errno import syscall_error   # here, not in _error: an import with no fd left fails
from .errors import NotFoundError, PermissionDeniedError, RawprobeError

# linux/pidfd.h (6.13+): _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info), VER0 = 64 bytes
PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
PIDFD_INFO_EXIT = 1 << 3
_INFO_EXIT_CODE_OFF = 60

__all__ = ["ProcessGoneError", "PermissionDeniedError", "open_pidfd", "send_signal",
           "has_exited", "pid_inode", "exit_status"]


class ProcessGoneError(NotFoundError):
    """The process exited (or never existed) before the call reached it."""


def _error(call: str, e: OSError) -> RawprobeError:
    if e.errno in (errno.ESRCH, errno.ENOENT):
        return ProcessGoneError(f"{call}: the process has exited")
    if e.errno == errno.EPERM:
        # kill_ok_by_cred (kernel/signal.c): not our user's process, no CAP_KILL.
        # EACCES would be an LSM's answer, which CAP_KILL does not change.
        return PermissionDeniedError(call, e.errno, "signalling a process of another "
                                                    "user needs CAP_KILL")
    return syscall_error(call, e.errno or 0, privilege=False)


def open_pidfd(pid: int) -> int:
    """``pidfd_open(pid, 0)`` -> a close-on-exec fd the caller closes."""
    try:
        return os.pidfd_open(pid, 0)
    except OSError as e:
        raise _error("pidfd_open", e) from None


def send_signal(fd: int, sig: int) -> None:
    """``pidfd_send_signal(fd, sig)`` to the process ``fd`` pins."""
    try:
        _signal.pidfd_send_signal(fd, sig)
    except OSError as e:
        raise _error("pidfd_send_signal", e) from None


def has_exited(fd: int) -> bool:
    """True once the pidfd's process has exited (the pidfd polls readable)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


def pid_inode(fd: int) -> int:
    """The pidfs inode number of the pidfd's ``struct pid``: unique within a boot on
    64-bit Linux 6.9+, where the interceptor's records carry the same number."""
    return os.fstat(fd).st_ino


def exit_status(fd: int) -> int | None:
    """The wait status of an exited, reaped process (Linux 6.15+), else None."""
    import fcntl
    buf = bytearray(64)
    struct.pack_into("<Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(fd, PIDFD_GET_INFO, buf, True)
    except OSError:
        return None          # older kernel, or not reaped yet: no status to give
    mask = struct.unpack_from("<Q", buf, 0)[0]
    if not mask & PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("<i", buf, _INFO_EXIT_CODE_OFF)[0]
