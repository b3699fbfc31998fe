"""Start a program under a chosen pid (to force pid reuse in tests).

``clone3`` with ``set_tid`` (Linux 5.5+) lets a process with CAP_SYS_ADMIN (or
CAP_CHECKPOINT_RESTORE) pick the pid of its child in its own pid namespace.  The child
execs at once, so nothing of this Python process runs in it beyond the exec call.
"""
from __future__ import annotations

import ctypes
import os
import signal
import struct

SYS_CLONE3 = {"x86_64": 435, "aarch64": 435}[os.uname().machine]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def spawn_with_pid(pid: int, argv: list[str]) -> int:
    """Fork+exec ``argv`` as pid ``pid``; returns the pid, raises OSError (EEXIST if taken)."""
    tid = ctypes.c_int32(pid)
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    # stack_size, tls, set_tid, set_tid_size (all u64) = 80 bytes (CLONE_ARGS_SIZE_VER1)
    args = struct.pack("<10Q", 0, 0, 0, 0, signal.SIGCHLD, 0, 0, 0,
                       ctypes.addressof(tid), 1)
    buf = ctypes.create_string_buffer(args, len(args))
    path = argv[0].encode()
    c_argv = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    ret = _libc.syscall(SYS_CLONE3, buf, len(args))
    if ret == 0:  # the child: exec at once, never return into Python
        _libc.execv(path, c_argv)
        _libc._exit(127)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret
