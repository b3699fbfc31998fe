"""pidfds, timerfd and signalfd, against the running kernel."""
from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from rawprobe.errors import SyscallError
from rawprobe._sys import fdevents, proc


def is_cloexec(fd) -> bool:
    return bool(fcntl.fcntl(fd.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def readable(fd, timeout: float) -> bool:
    p = select.poll()
    p.register(fd.fileno(), select.POLLIN)
    return bool(p.poll(timeout * 1000))


def test_pidfd_signal_exit_and_esrch():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with proc.pidfd_open(child.pid) as pidfd:
            assert pidfd.fileno() >= 3 and is_cloexec(pidfd)
            assert not readable(pidfd, 0)
            proc.pidfd_send_signal(pidfd, signal.SIGTERM)
            assert readable(pidfd, 10)                      # readable once it has exited
            assert child.wait(10) == -signal.SIGTERM
            with pytest.raises(SyscallError) as ei:         # reaped: gone for good
                proc.pidfd_send_signal(pidfd, signal.SIGTERM)
            assert ei.value.errno == errno.ESRCH and "exited" in str(ei.value)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_pidfd_open_missing_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(SyscallError) as ei:
        proc.pidfd_open(child.pid)                          # reaped; pid not reused this fast
    assert ei.value.errno == errno.ESRCH


def test_timerfd():
    with fdevents.timerfd_create() as t:
        assert is_cloexec(t)
        assert fdevents.timerfd_read(t) == 0                # disarmed, non-blocking
        fdevents.timerfd_settime(t, 2_000_000)              # 2 ms
        assert readable(t, 5)
        assert fdevents.timerfd_read(t) == 1
        fdevents.timerfd_settime(t, 1_000_000, interval_ns=1_000_000)
        time.sleep(0.05)
        assert fdevents.timerfd_read(t) >= 2
        fdevents.timerfd_settime(t, 0)                      # disarm
        fdevents.timerfd_read(t)
        time.sleep(0.01)
        assert fdevents.timerfd_read(t) == 0


def test_signalfd():
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
    try:
        with fdevents.signalfd([signal.SIGUSR1]) as sfd:
            assert is_cloexec(sfd)
            assert fdevents.signalfd_read(sfd) == []
            os.kill(os.getpid(), signal.SIGUSR1)
            assert readable(sfd, 5)
            [info] = fdevents.signalfd_read(sfd)
            assert (info.signo, info.pid, info.uid) == (signal.SIGUSR1, os.getpid(), os.getuid())
            fdevents.signalfd_update(sfd, [signal.SIGUSR2])
            os.kill(os.getpid(), signal.SIGUSR2)
            assert [i.signo for i in fdevents.signalfd_read(sfd)] == [signal.SIGUSR2]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
