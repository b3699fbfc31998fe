"""A test target: renames itself, writes on cue, and cleans up on a signal.

    python target.py --comm NAME [--writes N] [--interval-ms MS] [--cleanup-ms MS]
                     [--ignore-term] [--exit-code C] [--wait-go] [--forks N]
                     [--call write|openat] [--record] [--mask-term]

* the comm is set by writing /proc/self/comm (no ctypes);
* ``--wait-go``: after renaming, print "ready" on stdout and wait for a line on stdin
  before writing (so the test can arm the probe first);
* each write is ``os.write(fd, b"call <k>\\n")`` to /dev/null, k = 1..N, so the
  intercepted call's buffer tells which call it was;
* SIGTERM: sleep --cleanup-ms, then exit with --exit-code (or ignore it with
  --ignore-term); after the writes it sleeps until signalled;
* ``--junk-args``: each write goes through syscall(2) (ctypes) with junk in the
  three argument registers write does not use, where a hook may look;
* ``--forks N``: fork N children that each do all of the above (200 targets at once);
* ``--call openat``: each call opens /dev/null (openat(2)) and closes it instead;
* ``--record`` (for denied calls): each call's failure is caught, and the results
  ("ok" or the errno's name, one per call) are reported as a line ``results ...``
  on stdout, with writev(2) -- a denied write(2) must not silence the report --
  after the calls, or from the SIGTERM handler if that comes first;
  ``--mask-term`` blocks SIGTERM around each call and its record, so a signal
  sent at the call is taken after the result is recorded;
* with ``--wait-go`` it closes stdout after its writes, so the test sees EOF when
  they are done; ``--linger-s 0`` then exits (status 3) right after them.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--comm", required=True)
    ap.add_argument("--writes", type=int, default=1)
    ap.add_argument("--interval-ms", type=float, default=0.0)
    ap.add_argument("--cleanup-ms", type=float, default=0.0)
    ap.add_argument("--exit-code", type=int, default=0)
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--wait-go", action="store_true")
    ap.add_argument("--forks", type=int, default=0)
    ap.add_argument("--linger-s", type=float, default=30.0)
    ap.add_argument("--call", choices=("write", "openat"), default="write")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--mask-term", action="store_true")
    ap.add_argument("--junk-args", action="store_true")
    ap.add_argument("--report-fd", type=int, default=-1,
                    help="on SIGTERM, write '<handler entry ns> <exit call ns>' (CLOCK_MONOTONIC)")
    a = ap.parse_args()
    results: list[str] = []

    def report_results() -> None:
        os.writev(1, [("results " + " ".join(results) + "\n").encode()])

    def on_term(signum, frame):
        t_in = time.monotonic_ns()
        if a.record:
            report_results()
        if a.cleanup_ms:
            time.sleep(a.cleanup_ms / 1000)
        if a.report_fd >= 0:
            t_out = time.monotonic_ns()
            os.write(a.report_fd, b"%d %d\n" % (t_in, t_out))
        os._exit(a.exit_code)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if a.ignore_term else on_term)
    out = os.open("/dev/null", os.O_WRONLY)
    with open("/proc/self/comm", "wb") as f:
        f.write(os.fsencode(a.comm))      # the bytes given, even if not UTF-8
    if a.wait_go:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()
    kids = []
    if a.forks:
        for _ in range(a.forks):
            pid = os.fork()
            if pid == 0:
                kids = None
                break
            kids.append(pid)
    if kids:   # the parent of a swarm only waits (it does not write)
        for pid in kids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)
    write = os.write
    if a.junk_args:
        import ctypes
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        syscall.restype = ctypes.c_long
        junk = [ctypes.c_long(0x5EED0000 + i) for i in range(3)]

        def write(fd: int, data: bytes) -> int:
            return syscall(ctypes.c_long(1), ctypes.c_long(fd), data,   # SYS_write (x86-64)
                           ctypes.c_long(len(data)), *junk)
    term = {signal.SIGTERM}
    for k in range(1, a.writes + 1):
        if a.mask_term:
            signal.pthread_sigmask(signal.SIG_BLOCK, term)
        try:
            if a.call == "openat":
                os.close(os.open("/dev/null", os.O_RDONLY))
            else:
                write(out, b"call %d\n" % k)
            results.append("ok")
        except OSError as e:
            if not a.record:
                raise
            results.append(errno.errorcode.get(e.errno, str(e.errno)))
        if a.mask_term:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
        if a.interval_ms:
            time.sleep(a.interval_ms / 1000)
    if a.record:
        report_results()
    if a.wait_go and kids is not None:
        os.close(1)   # EOF on the test's pipe: "my writes are done" (close is not a write)
    deadline = time.monotonic() + a.linger_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(3)   # nobody signalled us


if __name__ == "__main__":
    main()
