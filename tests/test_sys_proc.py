"""pidfds, timerfd and signalfd, against the running kernel."""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import select
import signal
import subprocess
import sys
import time

import pytest

from rawprobe.errors import SyscallError
from rawprobe import pidfd
from rawprobe._sys import fdevents


def is_cloexec(fd) -> bool:
    return bool(fcntl.fcntl(fd.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def readable_fd(fd: int, timeout: float) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def readable(fd, timeout: float) -> bool:
    return readable_fd(fd.fileno(), timeout)


def test_pidfd_signal_exit_and_esrch():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fd = pidfd.open_pidfd(child.pid)
        try:
            assert fd >= 3 and fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert not pidfd.has_exited(fd)
            assert pidfd.pid_inode(fd) == os.fstat(fd).st_ino > 0
            pidfd.send_signal(fd, signal.SIGTERM)
            assert readable_fd(fd, 10)                      # readable once it has exited
            assert pidfd.has_exited(fd)
            assert child.wait(10) == -signal.SIGTERM
            status = pidfd.exit_status(fd)                  # 6.15+: the wait status
            assert status is None or (os.WIFSIGNALED(status)
                                      and os.WTERMSIG(status) == signal.SIGTERM)
            with pytest.raises(pidfd.ProcessGoneError):     # reaped: gone for good
                pidfd.send_signal(fd, signal.SIGTERM)
        finally:
            os.close(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_pidfd_open_missing_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(pidfd.ProcessGoneError):
        pidfd.open_pidfd(child.pid)                         # reaped; pid not reused this fast


def test_pidfd_signal_refused_is_permission_denied():
    """Another user's process, without CAP_KILL: the kernel's EPERM becomes
    PermissionDeniedError that names CAP_KILL (the tool's "not permitted")."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = ("import sys; from rawprobe import pidfd\n"
                "fd = pidfd.open_pidfd(int(sys.argv[1]))\n"
                "try:\n    pidfd.send_signal(fd, 15)\n"
                "except pidfd.PermissionDeniedError as e:\n    print('refused', e)\n")
        r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                            "--inh-caps=-all", "--bounding-set=-all",
                            sys.executable, "-c", code, str(child.pid)],
                           capture_output=True, text=True, timeout=30,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert r.stdout.startswith("refused") and "CAP_KILL" in r.stdout, (r.stdout, r.stderr)
        assert child.poll() is None                         # untouched
    finally:
        child.kill()
        child.wait()


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
