"""timerfd and signalfd: timers and signals as file descriptors for epoll.

Python 3.10-3.12 lack ``os.timerfd_*`` and have no signalfd at all; the
interceptor's event loop wants both in one epoll set with the ring buffer
and the pidfds.
"""
from __future__ import annotations

import errno as _E
import os
import time

from .._records import RecordTuple
from ._native import ffi, lib
from .errno import syscall_error
from .fd import FD

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterable

__all__ = ["timerfd_create", "timerfd_settime", "timerfd_read",
           "signalfd", "signalfd_update", "SignalInfo", "signalfd_read"]

TFD_TIMER_ABSTIME = 1
_SIGINFO_SIZE = ffi.sizeof("struct signalfd_siginfo")
_ITIMERSPEC_P = ffi.typeof("struct itimerspec *")


def _check(call: str, r: int) -> int:
    if r < 0:
        raise syscall_error(call, ffi.errno)
    return r


def timerfd_create(clockid: int = time.CLOCK_MONOTONIC,
                   flags: int = os.O_CLOEXEC | os.O_NONBLOCK) -> FD:
    """timerfd_create(2) (2.6.25): a disarmed timer; close-on-exec always."""
    return FD(_check("timerfd_create", lib.timerfd_create(clockid, flags | os.O_CLOEXEC)))


def timerfd_settime(fd: Any, value_ns: int, interval_ns: int = 0,
                    absolute: bool = False) -> None:
    """Arm (``value_ns`` > 0) or disarm (0) the timer: it first fires after
    ``value_ns`` (or at that clock time if ``absolute``), then every
    ``interval_ns`` (0: once)."""
    spec = ffi.new(_ITIMERSPEC_P)
    spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(value_ns, 1_000_000_000)
    spec.it_interval.tv_sec, spec.it_interval.tv_nsec = divmod(interval_ns, 1_000_000_000)
    fdn = fd if type(fd) is int else fd.fileno()
    _check("timerfd_settime", lib.timerfd_settime(
        fdn, TFD_TIMER_ABSTIME if absolute else 0, spec, ffi.NULL))


def timerfd_read(fd: Any) -> int:
    """How many times the timer expired since the last read (0 if none yet)."""
    fdn = fd if type(fd) is int else fd.fileno()
    try:
        return int.from_bytes(os.read(fdn, 8), "little")
    except BlockingIOError:
        return 0


def _sigset(signals: Iterable[int]) -> Any:
    mask = ffi.new("sigset_t *")
    lib.sigemptyset(mask)
    for sig in signals:
        if lib.sigaddset(mask, int(sig)) < 0:
            raise syscall_error(f"sigaddset({sig})", ffi.errno or _E.EINVAL)
    return mask


def signalfd(signals: Iterable[int], flags: int = os.O_CLOEXEC | os.O_NONBLOCK) -> FD:
    """signalfd(2) (2.6.27) reading ``signals``.  Block them first
    (``signal.pthread_sigmask(SIG_BLOCK, ...)``), or they are still
    delivered the usual way.  Close-on-exec always."""
    mask = _sigset(signals)
    return FD(_check("signalfd", lib.signalfd(-1, mask, flags | os.O_CLOEXEC)))


def signalfd_update(fd: Any, signals: Iterable[int]) -> None:
    """Replace the set of signals an existing signalfd reads."""
    mask = _sigset(signals)
    fdn = fd if type(fd) is int else fd.fileno()
    _check("signalfd", lib.signalfd(fdn, mask, 0))


class SignalInfo(RecordTuple):
    """The parts of a ``struct signalfd_siginfo`` an event loop needs: ``signo``,
    ``code``, ``pid`` (the sender), ``uid``, ``status`` (SIGCHLD: exit status or signal)."""
    __slots__ = ()
    _fields = ("signo", "code", "pid", "uid", "status")
    if TYPE_CHECKING:  # pragma: no cover
        signo: int
        code: int
        pid: int
        uid: int
        status: int


def signalfd_read(fd: Any) -> list[SignalInfo]:
    """Every pending signal on a (non-blocking) signalfd."""
    fdn = fd if type(fd) is int else fd.fileno()
    try:
        data = os.read(fdn, _SIGINFO_SIZE * 16)
    except BlockingIOError:
        return []
    out = []
    for off in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
        si = ffi.cast("struct signalfd_siginfo *", ffi.from_buffer(data[off:off + _SIGINFO_SIZE]))
        out.append(SignalInfo(si.ssi_signo, si.ssi_code, si.ssi_pid, si.ssi_uid, si.ssi_status))
    return out
