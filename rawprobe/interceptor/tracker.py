"""The per-target state machine: guard -> signal -> deadline -> SIGKILL -> exit.

One ``Target`` per intercepted process (thread group).  Its life::

    intercept ──► [waiting: more than --max-in-flight are in flight]
        │
        ▼ start
    refuse? pid 1, the tool or an ancestor, a kernel thread      ──► refused
    pidfd_open(tgid); the pidfd's process has the event's start
      time (pidfs inode where known)? else: the pid was reused   ──► refused
    pidfd_send_signal(sig)          (kernel-signal: already sent in the kernel)
        │
        ▼ signalled: pidfd in the epoll set, deadline at --kill-after
    deadline ──► pidfd_send_signal(SIGKILL), escalated           ──► killed
    pidfd readable = the process exited; the kernel's exit record
      (signal and exit stamps, exit code, slipped calls) is joined  ──► exit

Identity check, free of races: ``pidfd_open(pid)`` pins whichever process holds the
pid now; /proc/PID is read next.  A pid is only freed when its process is reaped, and
the intercepted process was alive at the call, before ``pidfd_open``; so if /proc
shows the intercepted process's start time, that process held the pid all along and
the pidfd is it.  Anything else (another start time, no /proc entry) is a refusal.
And since the signal goes through the pidfd, it can only ever reach the process the
pidfd pins, never a later holder of the pid.
"""
from __future__ import annotations

import os
import _signal  # the C module: "signal" builds enums at import (ms)
import struct
# The C type itself: the collections package costs its own imports (keyword,
# operator, reprlib, ...) at every start.
from _collections import deque
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

from . import pidfd, procinfo
from .events import RP_F_PROTECTED, RP_SIG_GENERATE, Intercept, KernelExit, KernelSignal
from .reactor import now_ns
from .record import Record

if TYPE_CHECKING:
    from typing import Callable

    from .reactor import Reactor, Timer

# The fields of a raw intercept record (intercept.h) the signalling fast path needs:
# type, then strike_fields' arguments: tgid, flags, start_time, start_boottime, pid_ino.
STRIKE = struct.Struct("<II32xI60xQQ88xQ")

# After the pidfd says "exited", how long to wait for the kernel's exit record.
EXIT_RECORD_GRACE_NS = 200_000_000
# After SIGKILL, how long before we give up on a process (uninterruptible sleep...).
KILL_GRACE_NS = 10_000_000_000


class Target(Record):
    """One process being handled.  ``state``: waiting, signalled, exited, done."""
    __slots__ = (
        "ev", "fd", "state",
        "signal_ns",           # when the signal was sent (userspace or kernel stamp)
        "exit_seen_ns",        # when the pidfd became readable
        "escalated",
        "kernel_exit",         # its KernelExit, once it arrived
        "kernel_signal_ns",    # signal_generate seen by the kernel side
        "signal_reported", "timer",
    )

    def __init__(self, ev: Intercept) -> None:   # on the signalling path: no keyword loop
        self.ev, self.fd, self.state, self.signal_ns, self.exit_seen_ns = ev, -1, "waiting", 0, 0
        self.escalated, self.kernel_exit, self.kernel_signal_ns = False, None, 0
        self.signal_reported, self.timer = False, None


class TrackerConfig(Record):
    """action (signal | kernel-signal | report), signal, kill_after_ns, max_in_flight,
    count, protected (the tool and its ancestors), syscall_name (nr -> name)."""
    __slots__ = ("action", "signal", "kill_after_ns", "max_in_flight", "count",
                 "protected", "syscall_name")
    _defaults = {"action": "signal", "signal": 15, "kill_after_ns": 2_000_000_000,
                 "max_in_flight": 4096, "count": None, "protected": frozenset(),
                 "syscall_name": None}


class Counts(Record):
    """What happened, for the summary."""
    __slots__ = (
        "intercepted", "signalled", "escalated", "exited", "refused", "errors", "reported",
        "waited",              # had to wait for a free --max-in-flight slot
        "max_waiting",
        "dropped",             # still waiting when the watch ended
        "abandoned",           # in flight when the watch was interrupted
        "duplicates",          # a second record for a process already handled
        "lost",                # records the kernel could not submit (ring buffer full)
    )
    _defaults = dict.fromkeys(__slots__, 0)


class Tracker:
    """Feeds on Intercept / KernelExit records; drives targets through the reactor."""

    def __init__(self, reactor: Reactor, emit: Callable[[dict], None],
                 config: TrackerConfig, drain: Callable[[], None] | None = None) -> None:
        self.r = reactor
        self._out = emit
        self._held: Intercept | None = None   # its event is written once we have acted
        # None: events are written at once.  A list: they are kept until flush(), so a
        # batch of ring buffer records is acted on first and written out after.
        self.buffer: list[dict] | None = None
        self.cfg = config
        self.drain = drain            # pull pending kernel records now (ring buffer)
        self.active: dict[int, Target] = {}
        self.waiting: deque[Target] = deque()
        self.counts = Counts()
        self.handled = 0              # targets finished: exited, refused, error, reported
        self.stopping = False         # no new targets (count reached, duration over)
        self.on_count_reached: Callable[[], None] | None = None
        self.tte_kernel_us: list[float] = []
        self.tte_pidfd_us: list[float] = []
        self.latency_us: list[float] = []
        self._early_exits: dict[int, KernelExit] = {}
        self.in_flight = 0            # targets holding a slot (started, not done)
        # tgid -> (pidfd, when signalled): signalled by strike(), not yet started
        self._struck: dict[int, tuple[int, int]] = {}

    # -- helpers ---------------------------------------------------------------------
    def emit(self, ev: dict) -> None:
        self.emit_held()
        if self.buffer is not None:
            self.buffer.append(ev)
        else:
            self._out(ev)

    def flush(self) -> None:
        """Write the events buffered while acting (see ``buffer``)."""
        buf, self.buffer = self.buffer, []
        for ev in buf or ():
            self._out(ev)

    @property
    def done(self) -> bool:
        """Nothing more to do: stopping and no process left in flight."""
        return self.stopping and self.in_flight == 0

    def _base(self, ev: Intercept) -> dict:
        return {"pid": ev.tgid, "comm": ev.comm}

    def _finish(self, t: Target) -> None:
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None
        if t.fd >= 0:
            self.r.remove_reader(t.fd)
            os.close(t.fd)
            t.fd = -1
        if t.state in ("signalled", "exited"):
            self.in_flight -= 1
        t.state = "done"
        self.active.pop(t.ev.tgid, None)
        self._early_exits.pop(t.ev.tgid, None)
        self.handled += 1
        if self.cfg.count is not None and self.handled >= self.cfg.count and not self.stopping:
            self.stop()
            if self.on_count_reached is not None:
                self.on_count_reached()
        self._start_waiting()

    def _start_waiting(self) -> None:
        while self.waiting and not self.stopping and self.in_flight < self.cfg.max_in_flight:
            t = self.waiting.popleft()
            self._start(t)

    def stop(self) -> None:
        """Take no new targets; those waiting are dropped, those in flight finish."""
        self.stopping = True
        while self.waiting:
            t = self.waiting.popleft()
            self.active.pop(t.ev.tgid, None)
            self.counts.dropped += 1

    def abandon(self) -> None:
        """Interrupted: forget everything in flight (no more signals from us)."""
        self.stop()
        for t in list(self.active.values()):
            if t.state != "done":
                self.counts.abandoned += 1
                if t.timer is not None:
                    t.timer.cancel()
                if t.fd >= 0:
                    self.r.remove_reader(t.fd)
                    os.close(t.fd)
                    t.fd = -1
        self.active.clear()
        self.in_flight = 0
        for fd, _ in self._struck.values():
            os.close(fd)
        self._struck.clear()

    # -- input: intercepted calls ----------------------------------------------------
    def strike(self, rec: bytes) -> int:
        """The signalling fast path (``--action signal``), run on a raw intercept
        record as soon as it is read, before decoding, bookkeeping or output: waking
        a sleeping Python costs tens of microseconds per line touched (cold caches),
        so the signal goes out first.  Only the plain case is handled here, under
        the same guard as ``_start``: pidfd_open, the pidfd's process is the
        intercepted one, pidfd_send_signal.  Anything else (a refusal, an error, no
        free slot, the count nearly reached) is left to ``on_intercept``, which
        redoes it all and reports.  ``on_intercept`` finds the signalled pidfd."""
        if len(rec) < STRIKE.size:
            return 0
        return self.strike_fields(*STRIKE.unpack_from(rec)[1:])

    def strike_fields(self, tgid: int, flags: int, start: int, start_boot: int,
                      ino: int) -> int:
        """``strike`` on the fields it needs, already unpacked."""
        cfg = self.cfg
        if (self.stopping or tgid <= 1 or flags & RP_F_PROTECTED or tgid in self.active
                or tgid in self._struck or tgid in cfg.protected):
            return 0
        busy = self.in_flight + len(self._struck)
        if busy >= cfg.max_in_flight or (cfg.count is not None
                                         and self.handled + busy >= cfg.count):
            return 0
        try:
            fd = os.pidfd_open(tgid, 0)
        except OSError:
            return 0
        if ino:                 # the pidfs inode: one fstat (see _identity_mismatch)
            ok = os.fstat(fd).st_ino == ino
        elif start_boot:
            ok = _identity_mismatch(fd, tgid, start_boot, "boottime", ino) is None
        else:
            ok = _identity_mismatch(fd, tgid, start, "monotonic", ino) is None
        if ok:
            try:
                _signal.pidfd_send_signal(fd, cfg.signal)
            except OSError:
                ok = False
        if not ok:
            os.close(fd)
            return 0
        self._struck[tgid] = (fd, now_ns())
        return 1

    def on_intercept(self, ev: Intercept) -> None:
        self.counts.intercepted += 1
        # Act first and write the events after (output is the slow part); the
        # intercept event is still written before anything it led to.
        self._held = ev
        try:
            self._act(ev)
        finally:
            self.emit_held()

    def emit_held(self) -> None:
        ev, self._held = self._held, None
        if ev is not None:
            rec = self._intercept_record(ev)
            if self.buffer is not None:
                self.buffer.append(rec)
            else:
                self._out(rec)

    def _intercept_record(self, ev: Intercept) -> dict:
        rec = {"event": "intercept", **self._base(ev), "tid": ev.pid}
        if ev.nr >= 0:
            rec["syscall"] = (self.cfg.syscall_name(ev.nr) if self.cfg.syscall_name
                              else ev.nr)
            rec["nr"] = ev.nr
        else:
            rec["symbol"] = ev.symbol
        rec["args"] = list(ev.args)
        rec["hit"] = ev.hit
        if ev.data:
            rec["data"] = ev.data.decode("utf-8", "backslashreplace")
        if ev.hook:
            rec["hook"] = ev.hook
        rec["ktime_ns"] = ev.ktime_ns
        return rec

    def _act(self, ev: Intercept) -> None:
        if self.stopping and not ev.kernel_signalled and ev.tgid not in self._struck:
            return
        if ev.tgid in self.active:
            self.counts.duplicates += 1
            return
        if self.cfg.action == "report":
            self.counts.reported += 1
            self.handled += 1
            if self.cfg.count is not None and self.handled >= self.cfg.count:
                self.stop()
                if self.on_count_reached is not None:
                    self.on_count_reached()
            return
        t = Target(ev)
        self.active[ev.tgid] = t
        if self.in_flight >= self.cfg.max_in_flight:
            self.waiting.append(t)
            self.counts.waited += 1
            self.counts.max_waiting = max(self.counts.max_waiting, len(self.waiting))
            return
        self._start(t)

    def _refuse(self, t: Target, reason: str) -> None:
        self.counts.refused += 1
        self.emit({"event": "refused", **self._base(t.ev), "reason": reason})
        self._finish(t)

    def _error(self, t: Target, message: str) -> None:
        self.counts.errors += 1
        self.emit({"event": "error", **self._base(t.ev), "message": message})
        self._finish(t)

    def _start(self, t: Target) -> None:
        ev = t.ev
        kernel = ev.kernel_signalled
        t.state = "signalled"
        self.in_flight += 1
        if ev.tgid <= 1:
            return self._refuse(t, "pid 1 (init) is never signalled")
        if ev.tgid in self.cfg.protected or ev.protected:
            return self._refuse(t, "this is rawprobe itself or one of its ancestors")
        if ev.kernel_thread:
            return self._refuse(t, "kernel thread")
        struck = self._struck.pop(ev.tgid, None) if self._struck else None
        if struck is not None:            # strike() already sent the signal
            t.fd, t.signal_ns = struck
            return self._signalled(t)
        try:
            t.fd = pidfd.open_pidfd(ev.tgid)
        except pidfd.Gone:
            return self._gone(t)
        except OSError as e:
            return self._error(t, f"pidfd_open: {e.strerror}")
        why = _identity_mismatch(t.fd, ev.tgid, ev.start_ns, ev.start_clock, ev.pid_ino)
        if why == "gone":
            return self._gone(t)
        if why:
            return self._refuse(t, why)
        if kernel:
            if ev.signal_ret:
                return self._error(t, f"bpf_send_signal failed ({ev.signal_ret})")
            # Sent at the call; the "signal" event is emitted when the kernel's
            # signal_generate record (right behind this one) arrives.
            t.signal_ns = t.kernel_signal_ns or ev.signal_ns or ev.ktime_ns
            self.counts.signalled += 1
            if t.kernel_signal_ns:
                self._report_kernel_signal(t)
        else:
            try:
                pidfd.send_signal(t.fd, self.cfg.signal)
            except pidfd.Gone:
                return self._gone(t)
            except pidfd.NotPermitted:
                return self._refuse(t, "not permitted: signalling another user's process "
                                       "needs CAP_KILL")
            except OSError as e:
                return self._error(t, f"pidfd_send_signal: {e.strerror}")
            t.signal_ns = now_ns()
            return self._signalled(t)
        self._track(t)

    def _signalled(self, t: Target) -> None:
        """Userspace sent the signal at ``t.signal_ns``: report it, track the exit."""
        ev = t.ev
        self.counts.signalled += 1
        lat = (t.signal_ns - ev.ktime_ns) / 1000
        self.latency_us.append(lat)
        self.emit({"event": "signal", **self._base(ev), "signal": _signame(self.cfg.signal),
                   "latency_us": round(lat, 1)})
        self._track(t)

    def _track(self, t: Target) -> None:
        """Signalled: watch its pidfd for the exit, arm the --kill-after deadline."""
        ev = t.ev
        self.r.add_reader(t.fd, lambda fd, t=t: self._on_exit_seen(t))
        if self.cfg.kill_after_ns > 0:
            t.timer = self.r.call_at(t.signal_ns + self.cfg.kill_after_ns,
                                     lambda t=t: self._on_deadline(t))
        early = self._early_exits.pop(ev.tgid, None)
        if early is not None:
            t.kernel_exit = early

    def _gone(self, t: Target) -> None:
        """The process exited before we could signal it (or right after the kernel did)."""
        if t.ev.kernel_signalled:
            # The kernel signalled it at the call; its exit record will say the rest.
            t.state = "exited"
            t.signal_ns = t.ev.signal_ns or t.ev.ktime_ns
            self.counts.signalled += 1
            early = self._early_exits.pop(t.ev.tgid, None)
            if early is not None:
                t.kernel_exit = early
                return self._exited(t)
            if self.drain is not None:
                self.drain()
            if t.state == "done":
                return
            t.timer = self.r.call_later(EXIT_RECORD_GRACE_NS, lambda: self._exited(t))
            return
        if t.fd >= 0:
            os.close(t.fd)
            t.fd = -1
        self._refuse(t, "exited before it could be signalled")

    # -- progress --------------------------------------------------------------------
    def _on_deadline(self, t: Target) -> None:
        t.timer = None
        if t.state != "signalled":
            return
        if t.escalated:   # SIGKILL did not end it either
            return self._error(t, f"still alive {KILL_GRACE_NS // 10**9} s after SIGKILL "
                                  "(uninterruptible sleep?); no longer tracked")
        try:
            pidfd.send_signal(t.fd, _signal.SIGKILL)
        except pidfd.Gone:
            return  # it is exiting right now; the pidfd will say so
        t.escalated = True
        self.counts.escalated += 1
        self.emit({"event": "escalate", **self._base(t.ev), "signal": "SIGKILL",
                   "after_us": round((now_ns() - t.signal_ns) / 1000, 1)})
        t.timer = self.r.call_later(KILL_GRACE_NS, lambda: self._on_deadline(t))

    def _on_exit_seen(self, t: Target) -> None:
        if t.state != "signalled":
            return
        t.exit_seen_ns = now_ns()
        t.state = "exited"
        self.r.remove_reader(t.fd)
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None
        if t.kernel_exit is None and self.drain is not None:
            self.drain()          # the exit record was submitted before the pidfd woke
        if t.state == "done":
            return
        if t.kernel_exit is not None or self.drain is None:
            return self._exited(t)
        t.timer = self.r.call_later(EXIT_RECORD_GRACE_NS, lambda: self._exited(t))

    def on_kernel_signal(self, ks: KernelSignal) -> None:
        t = self.active.get(ks.tgid)
        if t is None or ks.kind != RP_SIG_GENERATE or ks.sig != self.cfg.signal:
            return
        if not t.kernel_signal_ns:
            t.kernel_signal_ns = ks.ktime_ns
        if t.ev.kernel_signalled and t.state != "waiting":
            t.signal_ns = ks.ktime_ns
            self._report_kernel_signal(t)

    def _report_kernel_signal(self, t: Target) -> None:
        if t.signal_reported:
            return
        t.signal_reported = True
        lat = (t.kernel_signal_ns - t.ev.ktime_ns) / 1000
        self.latency_us.append(lat)
        self.emit({"event": "signal", **self._base(t.ev), "signal": _signame(self.cfg.signal),
                   "latency_us": round(lat, 1), "by": "kernel"})

    def on_kernel_exit(self, kx: KernelExit) -> None:
        t = self.active.get(kx.tgid)
        if t is None or t.state == "waiting":
            if t is None:
                return
            self._early_exits[kx.tgid] = kx
            return
        t.kernel_exit = kx
        if t.state == "exited":
            self._exited(t)

    def _exited(self, t: Target) -> None:
        if t.state == "done":
            return
        kx = t.kernel_exit
        rec = {"event": "exit", **self._base(t.ev)}
        tte_k = None
        if kx is not None and kx.exit_ns:
            start = kx.signal_ns or kx.kill_ns or t.signal_ns
            tte_k = round((kx.exit_ns - start) / 1000, 1)
            self.tte_kernel_us.append(tte_k)
            # the raw stamps (CLOCK_MONOTONIC ns), to line up with other clocks' records
            rec["signal_ktime_ns"], rec["exit_ktime_ns"] = start, kx.exit_ns
        tte_p = None
        if t.exit_seen_ns:
            tte_p = round((t.exit_seen_ns - t.signal_ns) / 1000, 1)
            self.tte_pidfd_us.append(tte_p)
        rec["time_to_exit_us"] = tte_k
        rec["time_to_exit_pidfd_us"] = tte_p
        rec["escalated"] = t.escalated
        status = kx.exit_code if kx is not None else None
        if status is None and t.fd >= 0:
            status = pidfd.exit_status(t.fd)
        if status is not None:
            rec.update(pidfd.describe_status(status))
        else:
            rec["exit_code"] = None
        rec["slipped_calls"] = kx.slipped if kx is not None else None
        if kx is not None:
            rec["calls_after_signal"] = kx.after_signal
            if kx.deliver_ns:
                # call -> the signal taken by one of its threads (kernel stamps)
                rec["delivery_latency_us"] = round((kx.deliver_ns - t.ev.ktime_ns) / 1000, 1)
                rec["deliver_ktime_ns"] = kx.deliver_ns
        self.counts.exited += 1
        self.emit(rec)
        self._finish(t)

    # -- the end ---------------------------------------------------------------------
    def summary(self) -> dict:
        from .summary import distribution
        rec = {"event": "summary", "counts": self.counts.as_dict()}
        for key, vals in (("time_to_exit_us", self.tte_kernel_us),
                          ("time_to_exit_pidfd_us", self.tte_pidfd_us),
                          ("latency_us", self.latency_us)):
            rec[key] = distribution(vals)
        rec["histogram_of"] = "kernel" if self.tte_kernel_us else "pidfd"
        return rec


def _identity_mismatch(fd: int, tgid: int, start_ns: int, clock: str,
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


def _signame(n: int) -> str:
    from .options import signal_name
    return signal_name(n)
