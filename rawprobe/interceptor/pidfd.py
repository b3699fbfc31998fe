"""pidfds: a handle on one process that a reused pid cannot redirect.

Python's stdlib has ``os.pidfd_open`` and ``signal.pidfd_send_signal`` (3.9+, Linux
5.3+), so this needs no native code.  A pidfd polls readable (EPOLLIN) once the
process has exited (all its threads); that is how the tracker sees exits of processes
that are not its children.  The exit status of a non-child is available from the
pidfd itself only on Linux 6.15+ (``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT``), and only
once the process has been reaped; the kernel-side exit record is the main source.
"""
from __future__ import annotations

import errno
import os
import select
import _signal as signal  # the C module: "signal" builds enums at import (ms)
import struct

# linux/pidfd.h (6.13+): _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info), VER0 = 64 bytes
PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
PIDFD_INFO_EXIT = 1 << 3
_INFO_EXIT_CODE_OFF = 60


class Gone(Exception):
    """The process exited (or never existed) before we got to it."""


def open_pidfd(pid: int) -> int:
    """``pidfd_open(pid, 0)`` -> fd (close-on-exec).  Raises Gone on ESRCH."""
    try:
        return os.pidfd_open(pid, 0)
    except ProcessLookupError:
        raise Gone(pid) from None
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.ENOENT):
            raise Gone(pid) from None
        raise


class NotPermitted(PermissionError):
    """EPERM: the kernel does not let us signal that process.  Without CAP_KILL a
    process may signal only those whose real or saved uid is its own real or
    effective uid (kill_ok_by_cred in kernel/signal.c; see rawprobe.caps)."""


def send_signal(fd: int, sig: int) -> None:
    """``pidfd_send_signal(fd, sig)``.  Raises Gone if the process already
    exited, NotPermitted if we may not signal it."""
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        raise Gone(fd) from None
    except PermissionError as e:
        if e.errno == errno.EPERM:
            raise NotPermitted(*e.args) from None
        raise


def has_exited(fd: int) -> bool:
    """True once the pidfd's process has exited (the pidfd polls readable)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


def exit_status(fd: int) -> int | None:
    """The wait status of an exited, reaped process (Linux 6.15+), else None."""
    import fcntl
    buf = bytearray(64)
    struct.pack_into("<Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(fd, PIDFD_GET_INFO, buf, True)
    except OSError:
        return None
    mask = struct.unpack_from("<Q", buf, 0)[0]
    if not mask & PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("<i", buf, _INFO_EXIT_CODE_OFF)[0]


def pid_inode(fd: int) -> int:
    """The pidfs inode number of the pidfd's ``struct pid`` (unique per boot on 6.9+)."""
    return os.fstat(fd).st_ino


def describe_status(status: int) -> dict:
    """A wait status -> ``{"exit_code": n}`` or ``{"killed_by": "SIGKILL"}``."""
    if os.WIFSIGNALED(status):
        from .options import signal_name
        return {"killed_by": signal_name(os.WTERMSIG(status))}
    return {"exit_code": os.WEXITSTATUS(status)}
