"""The demo's toy target: opens a file, writes to it, cleans up on SIGTERM.

Like the original project's toy Java program, it is the process rawprobe's
demo intercepts.  It names itself (its ``comm``) so a comm filter finds it and
nothing else, writes one line to its file every ``--interval`` seconds with a
real ``write(2)`` each time, and on SIGTERM spends ``--cleanup`` seconds
"cleaning up" (a last write, a sleep, close) before it exits with
status 143 (128 + SIGTERM, what a JVM reports).

Standard library only and independent of rawprobe, so it can be started as
``python3 path/to/demo_target.py`` or ``python3 -m rawprobe.interceptor.demo_target``.
It writes nothing to stdout or stderr after renaming itself: any such write
would be a ``write(2)`` by the target and could be the one intercepted.

Readiness: with ``--ready-fd FD`` (an inherited pipe) it closes FD once its
comm is set and just before its first write; the parent waits for EOF.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

COMM_LEN = 16  # TASK_COMM_LEN, including the NUL

DEFAULT_COMM = "rawprobe-demo"


def set_comm(name: str) -> None:
    """Set the calling thread's comm (truncated to 15 bytes as the kernel does).

    Writing /proc/thread-self/comm is what prctl(PR_SET_NAME) does for the
    calling thread, without a native call (cffi is rawprobe's only native piece,
    and this toy target stays standard-library only)."""
    raw = name.encode()[: COMM_LEN - 1]
    with open("/proc/thread-self/comm", "wb") as f:
        f.write(raw)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--comm", default=DEFAULT_COMM, help="process name to take (default %(default)s)")
    p.add_argument("--path", help="file to append to (default: an unnamed temporary file)")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between writes (default %(default)s)")
    p.add_argument("--writes", type=int, default=0, help="stop writing after N writes, then idle (0 = no limit)")
    p.add_argument("--cleanup", type=float, default=0.25, help="seconds of cleanup after SIGTERM (default %(default)s)")
    p.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM (only SIGKILL ends it)")
    p.add_argument("--exit-code", type=int, default=143, help="exit status after cleanup (default %(default)s)")
    p.add_argument("--lifetime", type=float, default=60.0, help="exit 0 by itself after this many seconds (default %(default)s)")
    p.add_argument("--ready-fd", type=int, help="inherited fd to close once ready")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.path is None:
        # Unnamed (O_TMPFILE, or unlinked at once): nothing is left behind
        # even when the target is SIGKILLed.
        tmp = tempfile.TemporaryFile(prefix="rawprobe-demo-")
        fd = tmp.fileno()
    else:
        tmp = None
        fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def finish(status: int) -> None:
        if tmp is None:
            os.close(fd)
        else:
            tmp.close()
        # os._exit: no interpreter teardown, so the exit time is the cleanup time.
        os._exit(status)

    def on_term(signum: int, frame: object) -> None:
        os.write(fd, b"SIGTERM: cleaning up\n")
        time.sleep(args.cleanup)
        finish(args.exit_code)

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)

    set_comm(args.comm)
    if args.ready_fd is not None:
        os.close(args.ready_fd)

    deadline = time.monotonic() + args.lifetime
    n = 0
    while time.monotonic() < deadline:
        if not args.writes or n < args.writes:
            n += 1
            os.write(fd, b"tick %d\n" % n)
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finish(0)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
