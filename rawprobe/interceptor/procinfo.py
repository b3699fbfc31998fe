"""The few facts about a process the guard needs, read from /proc.

Start time and the pid-reuse guard
----------------------------------
The kernel stamps every task twice at fork (``copy_process``):

* ``task->start_time``     = ``ktime_get_ns()``          -- CLOCK_MONOTONIC, ns
* ``task->start_boottime`` = ``ktime_get_boottime_ns()`` -- CLOCK_BOOTTIME, ns

``/proc/PID/stat`` field 22 is ``start_boottime`` plus the reader's time-namespace
boot offset (``timens_offsets``: nonzero in a time namespace, e.g. a container CRIU
restored) converted to clock ticks (``USER_HZ``, 100 here, so 10 ms), truncated.
The kernel's stamps are host clocks, so every comparison adds that offset first.
MONOTONIC and BOOTTIME differ only by the time spent suspended, which grows only at
resume.  So for an event carrying the monotonic ``start_time`` S, the process's
boottime start B satisfies  S <= B <= S + (BOOTTIME - MONOTONIC, sampled now),
and the ticks /proc shows must lie in ``[S // tick, (S + offset_now) // tick]``.
An event carrying ``start_boottime`` compares exactly: ``ticks == B // tick``.

The tick is coarse: a pid reused within the same 10 ms tick would pass.  Pids are
allocated cyclically up to pid_max, so that needs a full wrap of the pid space inside
one tick; where the event carries the pidfs inode number of the task's ``struct pid``
(Linux 6.9+, 64-bit) the guard compares that instead, which is exact.
"""
from __future__ import annotations

import os
import time

from .record import Record

PF_KTHREAD = 0x00200000
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_NS = 1_000_000_000 // CLK_TCK
_STAMP_GAP_NS = 100_000


class ProcStat(Record):
    """pid, comm, state, ppid, flags, and starttime (clock ticks since boot, BOOTTIME)."""
    __slots__ = ("pid", "comm", "state", "ppid", "flags", "starttime")

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat``; None when the process is gone.  On the signalling path, so
    it reads with raw fd calls (a file object costs ~3x more)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:     # exited and reaped between open and read
        return None
    finally:
        os.close(fd)
    # comm may contain spaces and parentheses: it ends at the LAST ')'.
    head, _, rest = data.rpartition(b")")
    fields = rest.split(None, 20)
    st = ProcStat.__new__(ProcStat)
    st.pid, st.comm, st.state = pid, head.partition(b"(")[2].decode(errors="replace"), \
        fields[0].decode()
    st.ppid, st.flags, st.starttime = int(fields[1]), int(fields[6]), int(fields[19])
    return st


def read_comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode(errors="replace")
    except OSError:
        return None


def ancestors(pid: int | None = None) -> frozenset[int]:
    """pid and every ancestor up to (not including) 0: the processes never to signal."""
    seen: list[int] = []
    cur = os.getpid() if pid is None else pid
    while cur > 0 and cur not in seen:
        seen.append(cur)
        st = read_stat(cur)
        if st is None:
            break
        cur = st.ppid
    return frozenset(seen)


def timens_offsets() -> tuple[int, int]:
    """(CLOCK_MONOTONIC, CLOCK_BOOTTIME) offsets in ns of this process's time
    namespace (Linux 5.6+, ``/proc/self/timens_offsets``): what the kernel adds to
    the clocks we read and to the start times /proc shows us.  (0, 0) outside one
    or without ``CONFIG_TIME_NS``.  Read once: a process cannot change its own."""
    global _TIMENS
    if _TIMENS is None:
        try:
            with open("/proc/self/timens_offsets", "rb") as f:
                text = f.read().decode()
        except FileNotFoundError:
            text = ""
        _TIMENS = parse_timens_offsets(text)
    return _TIMENS


def parse_timens_offsets(text: str) -> tuple[int, int]:
    """(CLOCK_MONOTONIC, CLOCK_BOOTTIME) offsets in ns from the text of
    ``/proc/PID/timens_offsets``; a clock it does not name has offset 0."""
    offsets = {"monotonic": 0, "boottime": 0}
    for line in text.splitlines():
        # "<clock> <seconds> <nanoseconds>"; 5.6's first form named the clock by id
        clock, sec, nsec = line.split()
        clock = {"1": "monotonic", "7": "boottime"}.get(clock, clock)
        offsets[clock] = int(sec) * 1_000_000_000 + int(nsec)
    return offsets["monotonic"], offsets["boottime"]


_TIMENS: tuple[int, int] | None = None


def boot_offset_ns() -> int:
    """CLOCK_BOOTTIME - CLOCK_MONOTONIC now: total time suspended since boot (on the
    host's clocks: this process's time-namespace offsets taken out)."""
    mono = time.monotonic_ns()
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    mono_off, boot_off = timens_offsets()
    return max(0, (boot - boot_off) - (mono - mono_off))


def start_time_matches(stat_ticks: int, start_ns: int, clock: str = "monotonic",
                       offset_ns: int | None = None) -> bool:
    """Does /proc's start time (ticks) belong to the task stamped ``start_ns``?

    ``clock`` names the stamp: ``"monotonic"`` (task->start_time) or ``"boottime"``
    (task->start_boottime), both host clocks.  See the module docstring for why this
    is the test.
    """
    start_ns += timens_offsets()[1]        # into the frame /proc showed us
    if clock == "boottime":
        return stat_ticks == start_ns // TICK_NS
    if offset_ns is None:
        offset_ns = boot_offset_ns()
    # start_boottime is read a few ns after start_time: allow that across a tick edge.
    return start_ns // TICK_NS <= stat_ticks <= (start_ns + offset_ns + _STAMP_GAP_NS) // TICK_NS

