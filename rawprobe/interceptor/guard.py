"""The guard every signal from the tool passes: never pid 1, the tool or its
ancestors; and only the process that made the intercepted call.

``refusal`` is mirrored in intercept.bpf.c for kernel-signal (tgid 1 and the
``protected_tgids`` map).  ``open_verified`` pins the process with a pidfd and
checks it is the intercepted one, free of races (tracker.py's docstring says why):
by the pidfs inode where the kernel reports it (6.9+, 64-bit), else by the start
time /proc shows.  Both the tracker's fast path (``strike``) and its full path
(``_start``) use these two, and nothing else decides.
"""
from __future__ import annotations

import os

from .. import pidfd
from . import procinfo


class Refusal(Exception):
    """The pidfd's process is not the intercepted one (its reason is the message)."""


def refusal(tgid: int, protected_flag: bool, protected: frozenset[int]) -> str | None:
    """The guard every signal passes, in the tool and (for kernel-signal) mirrored in
    intercept.bpf.c: why ``tgid`` is never signalled, or None."""
    if tgid <= 1:
        return "pid 1 (init) is never signalled"
    if protected_flag or tgid in protected:
        return "this is rawprobe itself or one of its ancestors"
    return None


def open_verified(tgid: int, start_ns: int, clock: str, pid_ino: int) -> int:
    """A pidfd on ``tgid`` that is the intercepted process (see the module docstring),
    which the caller closes.  Raises ``pidfd.ProcessGoneError`` if it has exited,
    ``Refusal`` if the pid now names another process."""
    fd = pidfd.open_pidfd(tgid)
    try:
        why = identity_mismatch(fd, tgid, start_ns, clock, pid_ino)
    except BaseException:
        os.close(fd)
        raise
    if why is None:
        return fd
    os.close(fd)
    if why == "gone":
        raise pidfd.ProcessGoneError(f"process {tgid} has exited")
    raise Refusal(why)


def identity_mismatch(fd: int, tgid: int, start_ns: int, clock: str,
                      pid_ino: int) -> str | None:
    """None if ``fd`` (a pidfd just opened on ``tgid``) is the intercepted process,
    whose leader started at ``start_ns`` on ``clock`` and whose struct pid has the
    pidfs inode ``pid_ino`` (0: unknown); "gone"; or why it is not."""
    if pid_ino:
        if pidfd.pid_inode(fd) != pid_ino:
            return "pid reused: the process now holding this pid is another one"
        return None
    st = procinfo.read_stat(tgid)
    if st is None:
        return "gone"
    if st.kernel_thread:
        return "kernel thread"
    if not procinfo.start_time_matches(st.starttime, start_ns, clock):
        return "pid reused: the process now holding this pid started at another time"
    return None
