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

Identity is (tgid, the leader's ``task->start_time``) everywhere, never the pid
alone: every kernel record carries both, so a process that reuses the pid of one
still queued or in flight is a new target, and a queued target whose exit record
arrives is finished ("exited before it could be signalled"), never confused with it.

Identity check before signalling (guard.py), free of races: ``pidfd_open(pid)`` pins
whichever process holds the pid now; /proc/PID is read next.  A pid is only freed
when its process is reaped, and the intercepted process was alive at the call,
before ``pidfd_open``; so if /proc shows the intercepted process's start time, that
process held the pid all along and the pidfd is it.  Anything else (another start time, no /proc entry) is a refusal.
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

from .. import pidfd
from ..errors import PermissionDeniedError, RawprobeError
from .guard import Refusal, open_verified, refusal
from .events import (RP_EV_INTERCEPT, RP_F_PROTECTED, RP_SIG_GENERATE, Denial, Intercept,
                     KernelExit, KernelSignal, decode)
from .options import DEFAULTS
from .reactor import now_ns
from .record import Record

if TYPE_CHECKING:
    from typing import Callable, Protocol

    from .reactor import Reactor, Timer

    class RecordSource(Protocol):
        """What the tracker reads the kernel side through (``probe.Probe``)."""
        symbol: str | None

        def peek(self, fmt: struct.Struct) -> tuple | None: ...
        def read_batch(self) -> list: ...
        def missed(self) -> tuple[int, int]: ...
        def detach_calls(self) -> None: ...

# The fields of a raw intercept record (intercept.h) the signalling fast path needs:
# type, then strike_fields' arguments: tgid, flags, start_time, start_boottime, pid_ino.
STRIKE = struct.Struct("<II32xI60xQQ88xQ")

# After the pidfd says "exited", how long to wait for the kernel's exit record.
EXIT_RECORD_GRACE_NS = 200_000_000
# After SIGKILL, how long before we give up on a process (uninterruptible sleep...).
KILL_GRACE_NS = 10_000_000_000

NOT_PERMITTED = "not permitted: signalling another user's process needs CAP_KILL"
EXITED_BEFORE = "exited before it could be signalled"


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
        "denied",              # calls of it the kernel denied (--action deny*), as reported
    )

    def __init__(self, ev: Intercept) -> None:   # on the signalling path: no keyword loop
        self.ev, self.fd, self.state, self.signal_ns, self.exit_seen_ns = ev, -1, "waiting", 0, 0
        self.escalated, self.kernel_exit, self.kernel_signal_ns = False, None, 0
        self.signal_reported, self.timer, self.denied = False, None, 0


class TrackerConfig(Record):
    """action (signal | kernel-signal | report | deny | deny-signal: already resolved,
    never auto), signal, kill_after_ns, max_in_flight, count, protected (the tool and
    its ancestors), syscall_name (nr -> name), deny_errno (what denied calls return).

    With deny the kernel only denies: a target is tracked, unsignalled, until it
    exits (its exit timed from its first denied call); with deny-signal the kernel
    also signals it, as with kernel-signal."""
    __slots__ = ("action", "signal", "kill_after_ns", "max_in_flight", "count",
                 "protected", "syscall_name", "deny_errno")
    # the command line's defaults, from its one table; the action is the resolved one
    _defaults = {**{k: DEFAULTS[k] for k in ("signal", "kill_after_ns", "max_in_flight",
                                             "count", "deny_errno")},
                 "action": "signal", "protected": frozenset(), "syscall_name": None}


class Counts(Record):
    """What happened, for the summary."""
    __slots__ = (
        "intercepted", "signalled", "escalated", "exited", "refused", "errors", "reported",
        "waited",              # had to wait for a free --max-in-flight slot
        "max_waiting",
        "dropped",             # never signalled: still waiting, or read after the intake stopped
        "abandoned",           # still in flight when the tool left (second interrupt)
        "duplicates",          # a second record for a process already handled
        "lost",                # records the kernel could not submit (ring buffer full)
        "not_handled",         # matching processes the kernel could not track (map full)
        "denied",              # calls the kernel made fail (--action deny*), as reported
    )
    _defaults = dict.fromkeys(__slots__, 0)


class Tracker:
    """Reads the kernel's records (``source``), drives each target through the reactor,
    and writes events through ``emit``.

    ``buffered``: events are kept until ``flush()`` (the loop calls it before each
    wait), so a batch of records is acted on first and written out after.
    ``source`` None: records are fed by hand (``on_intercept`` ...), as in tests.
    """

    def __init__(self, reactor: Reactor, emit: Callable[[dict], None],
                 config: TrackerConfig, source: RecordSource | None = None,
                 buffered: bool = False) -> None:
        self.r = reactor
        self._out = emit
        self.cfg = config
        self.source = source
        self._held: Intercept | None = None   # its event is written once we have acted
        self.buffer: list[dict] | None = [] if buffered else None
        # (tgid, start_time) -> target, until it is done
        self.active: dict[tuple[int, int], Target] = {}
        self._by_tgid: dict[int, Target] = {}    # the newest target of each tgid
        self.waiting: deque[Target] = deque()
        self.counts = Counts()
        self.handled = 0              # targets finished: exited, refused, error, reported
        self.stopping = False         # no new targets (count reached, duration over, interrupted)
        self.tte_kernel_us: list[float] = []
        self.tte_pidfd_us: list[float] = []
        self.latency_us: list[float] = []
        self.in_flight = 0            # targets holding a slot (started, not done)
        # (tgid, start_time) -> (pidfd, when signalled): signalled by strike(), not yet started
        self._struck: dict[tuple[int, int], tuple[int, int]] = {}

    # -- output ----------------------------------------------------------------------
    def emit(self, ev: dict) -> None:
        self.emit_held()
        if self.buffer is not None:
            self.buffer.append(ev)
        else:
            self._out(ev)

    def flush(self) -> None:
        """Write the events buffered while acting (see ``buffered``)."""
        if self.buffer:
            buf, self.buffer = self.buffer, []
            for ev in buf:
                self._out(ev)

    def emit_held(self) -> None:
        ev, self._held = self._held, None
        if ev is not None:
            rec = self._intercept_record(ev)
            if self.buffer is not None:
                self.buffer.append(rec)
            else:
                self._out(rec)

    # -- state -----------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Nothing more to do: stopping and no process left in flight."""
        return self.stopping and self.in_flight == 0

    def find(self, tgid: int) -> Target | None:
        """The newest target with this tgid that is not done."""
        return self._by_tgid.get(tgid)

    def _has_slot(self, busy: int = 0) -> bool:
        """May one more target be signalled?  ``--max-in-flight`` and ``--count``
        (targets finished plus those in flight never exceed the count)."""
        cfg = self.cfg
        taken = self.in_flight + busy
        return taken < cfg.max_in_flight and (cfg.count is None
                                              or self.handled + taken < cfg.count)

    def _base(self, ev: Intercept) -> dict:
        return {"pid": ev.tgid, "comm": ev.comm}

    def _release(self, t: Target) -> None:
        """Cancel its deadline, take its pidfd out of the loop and close it."""
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None
        if t.fd >= 0:
            self.r.remove_reader(t.fd)
            os.close(t.fd)
            t.fd = -1

    def _finish(self, t: Target) -> None:
        self._release(t)
        if t.state in ("signalled", "exited"):
            self.in_flight -= 1
        self._forget(t)
        self.handled += 1
        if self.cfg.count is not None and self.handled >= self.cfg.count:
            self.stop_intake()
        self._start_waiting()

    def _start_waiting(self) -> None:
        while self.waiting and not self.stopping and self._has_slot():
            t = self.waiting.popleft()
            if t.state == "waiting":          # not finished while it waited
                self._start(t)

    def stop(self) -> None:
        """Take no new targets; those waiting are dropped, those in flight finish."""
        self.stopping = True
        while self.waiting:
            t = self.waiting.popleft()
            if t.state == "waiting":
                self._forget(t)
                self.counts.dropped += 1

    def stop_intake(self) -> None:
        """``stop()`` and detach the call hook: no more intercepts from the kernel."""
        if not self.stopping:
            self.stop()
        if self.source is not None:
            self.source.detach_calls()

    def _forget(self, t: Target) -> None:
        t.state = "done"
        self.active.pop((t.ev.tgid, t.ev.start_time), None)
        if self._by_tgid.get(t.ev.tgid) is t:
            del self._by_tgid[t.ev.tgid]

    def in_flight_targets(self) -> list[Target]:
        return [t for t in self.active.values() if t.state in ("signalled", "exited")]

    def abandon(self) -> list[Target]:
        """Leave now: stop tracking everything in flight (no more signals from us).
        Returns the targets left behind."""
        self.stop()
        left = self.in_flight_targets()
        for t in left:
            self.counts.abandoned += 1
            self._release(t)
            t.state = "done"
        self.active.clear()
        self._by_tgid.clear()
        self.in_flight = 0
        for fd, _ in self._struck.values():
            os.close(fd)
        self._struck.clear()
        return left

    # -- input: the kernel's records -------------------------------------------------
    def pump(self) -> None:
        """Act on every record the kernel side has submitted, then check its drop
        counters.  With ``--action signal`` the signals go out first (``strike``)."""
        src = self.source
        if src is None:
            return
        strike = self.cfg.action == "signal" and not self.stopping
        if strike:
            # The first pending record straight from the ring: no copy, no list;
            # the signal goes out before anything else is touched (on a cold
            # wake-up each line of Python costs; ~40 us less to the signal here).
            first = src.peek(STRIKE)
            if first is not None and first[0] == RP_EV_INTERCEPT and \
                    self.strike_fields(*first[1:]):
                os.sched_yield()      # see below
        recs = src.read_batch()
        if strike:
            n = 0
            for rec in recs:
                if rec[0] == RP_EV_INTERCEPT:
                    n += self.strike(rec)
            if n:
                # Woken on the target's CPU, we would keep it off that CPU (where
                # it takes the signal) for all the work below: let it run first.
                os.sched_yield()
        symbol = src.symbol
        for rec in recs:
            ev = decode(rec, symbol)
            if type(ev) is Intercept:
                self.on_intercept(ev)
            elif type(ev) is KernelExit:
                self.on_kernel_exit(ev)
            elif type(ev) is KernelSignal:
                self.on_kernel_signal(ev)
            elif type(ev) is Denial:
                self.on_denial(ev)
        self._check_missed()

    def _check_missed(self) -> None:
        """Report drops the moment the kernel counts them, never only at the end."""
        lost, not_handled = self.source.missed()
        c = self.counts
        if lost > c.lost:
            self.emit({"event": "lost", "records": lost - c.lost, "total": lost,
                       "reason": "the ring buffer was full: intercepts, signal or exit "
                                 "records were dropped; targets may have been missed"})
            c.lost = lost
        if not_handled > c.not_handled:
            self.emit({"event": "lost", "processes": not_handled - c.not_handled,
                       "total": not_handled,
                       "reason": "the kernel's table of handled processes was full: "
                                 "matching processes were not handled"})
            c.not_handled = not_handled

    def strike(self, rec: bytes) -> int:
        """The signalling fast path (``--action signal``), run on a raw intercept
        record as soon as it is read, before decoding, bookkeeping or output: waking
        a sleeping Python costs tens of microseconds per line touched (cold caches),
        so the signal goes out first.  Only the plain case is handled here, under
        the same guard as ``_start`` (``guard.refusal``, ``guard.open_verified``); anything
        else (a refusal, an error, no free slot) is left to ``on_intercept``, which
        redoes it all and reports.  ``on_intercept`` finds the signalled pidfd."""
        if len(rec) < STRIKE.size:
            return 0
        return self.strike_fields(*STRIKE.unpack_from(rec)[1:])

    def strike_fields(self, tgid: int, flags: int, start: int, start_boot: int,
                      ino: int) -> int:
        """``strike`` on the fields it needs, already unpacked."""
        key = (tgid, start)
        if (self.stopping or key in self.active or key in self._struck
                or refusal(tgid, flags & RP_F_PROTECTED, self.cfg.protected) is not None
                or not self._has_slot(len(self._struck))):
            return 0
        try:
            fd = open_verified(tgid, start_boot or start,
                               "boottime" if start_boot else "monotonic", ino)
        except (RawprobeError, Refusal):
            return 0
        try:
            pidfd.send_signal(fd, self.cfg.signal)
        except RawprobeError:
            os.close(fd)
            return 0
        self._struck[key] = (fd, now_ns())
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
        if ev.denied:
            self._denied(ev, ev.hit)

    def on_denial(self, d: Denial) -> None:
        """A later call of a process being denied."""
        self._denied(d, None)

    def _denied(self, call: Intercept | Denial, hit: int | None) -> None:
        """A call the kernel made fail: count it, write a ``deny`` event."""
        from .deny import deny_event
        self.counts.denied += 1
        t = self.active.get((call.tgid, call.start_time))
        if t is not None:
            t.denied += 1
        self.emit(deny_event(call, hit, self.cfg.deny_errno, self.cfg.syscall_name))

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
        key = (ev.tgid, ev.start_time)
        if key in self.active:
            self.counts.duplicates += 1
            return
        # signalled or denied already: the kernel acted on it
        ours = ev.kernel_signalled or ev.denied or key in self._struck
        if self.stopping and not ours:
            self.counts.dropped += 1
            return
        if self.cfg.action == "report":
            self.counts.reported += 1
            self.handled += 1
            if self.cfg.count is not None and self.handled >= self.cfg.count:
                self.stop_intake()
            return
        t = Target(ev)
        self.active[key] = t
        self._by_tgid[ev.tgid] = t
        if not ours and not self._has_slot():
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
        t.state = "signalled"
        self.in_flight += 1
        why = refusal(ev.tgid, ev.protected, self.cfg.protected)
        if why is None and ev.kernel_thread:
            why = "kernel thread"
        if why is not None:
            return self._refuse(t, why)
        struck = self._struck.pop((ev.tgid, ev.start_time), None) if self._struck else None
        if struck is not None:            # strike() already sent the signal
            t.fd, t.signal_ns = struck
            return self._signalled(t)
        try:
            t.fd = open_verified(ev.tgid, ev.start_ns, ev.start_clock, ev.pid_ino)
        except pidfd.ProcessGoneError:
            return self._gone(t)
        except Refusal as e:
            return self._refuse(t, str(e))
        except RawprobeError as e:
            return self._error(t, str(e))
        if ev.kernel_signalled:
            if ev.signal_ret:
                return self._error(t, f"bpf_send_signal failed ({ev.signal_ret})")
            # Sent at the call; the "signal" event is emitted when the kernel's
            # signal_generate record (right behind this one) arrives.
            t.signal_ns = t.kernel_signal_ns or ev.signal_ns or ev.ktime_ns
            self.counts.signalled += 1
            if t.kernel_signal_ns:
                self._report_kernel_signal(t)
            return self._track(t)
        if self.cfg.action == "deny":
            # Denied at the call, never signalled: followed to its exit, which is
            # timed from the first denial (no deadline: --kill-after is not ours).
            t.signal_ns = ev.ktime_ns
            return self._track(t)
        try:
            pidfd.send_signal(t.fd, self.cfg.signal)
        except pidfd.ProcessGoneError:
            return self._gone(t)
        except PermissionDeniedError:
            return self._refuse(t, NOT_PERMITTED)
        except RawprobeError as e:
            return self._error(t, str(e))
        t.signal_ns = now_ns()
        self._signalled(t)

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
        self.r.add_reader(t.fd, lambda fd, t=t: self._on_exit_seen(t))
        if self.cfg.kill_after_ns > 0:
            t.timer = self.r.call_at(t.signal_ns + self.cfg.kill_after_ns,
                                     lambda t=t: self._on_deadline(t))

    def _gone(self, t: Target) -> None:
        """The process exited before we could signal it (or right after the kernel did)."""
        if t.ev.kernel_signalled or self.cfg.action == "deny":
            # The kernel signalled (or denied) it at the call; its exit record
            # (behind this intercept in the ring) will say the rest.
            t.state = "exited"
            t.signal_ns = t.ev.signal_ns or t.ev.ktime_ns
            self.counts.signalled += t.ev.kernel_signalled
            t.timer = self.r.call_later(EXIT_RECORD_GRACE_NS, lambda: self._exit_overdue(t))
            return
        self._refuse(t, EXITED_BEFORE)

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
        except pidfd.ProcessGoneError:
            return  # it is exiting right now; the pidfd will say so
        except RawprobeError as e:
            return self._error(t, f"SIGKILL at the deadline failed: {e}")
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
        if t.kernel_exit is None:
            self.pump()           # the exit record was submitted before the pidfd woke
        if t.state == "done":
            return
        if t.kernel_exit is not None or self.source is None:
            return self._exited(t)
        t.timer = self.r.call_later(EXIT_RECORD_GRACE_NS, lambda: self._exit_overdue(t))

    def _exit_overdue(self, t: Target) -> None:
        """The grace for the kernel's exit record is over.  Under load the loop can
        be this late reading the ring: read it before concluding the record is
        missing (it was, in 9 of 7,000 exits, before this read)."""
        t.timer = None
        if t.state == "done":
            return
        self.pump()
        if t.state != "done":
            self._exited(t)

    def on_kernel_signal(self, ks: KernelSignal) -> None:
        t = self._by_tgid.get(ks.tgid)
        if (t is None or t.ev.ktime_ns != ks.intercept_ns or ks.kind != RP_SIG_GENERATE
                or ks.sig != self.cfg.signal):
            return
        if not t.kernel_signal_ns:
            t.kernel_signal_ns = ks.ktime_ns
        # the first one only: a later SIGTERM (someone else's) is not when ours went
        if t.ev.kernel_signalled and t.state != "waiting" and not t.signal_reported:
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
        t = self.active.get((kx.tgid, kx.start_time))
        if t is None:
            return
        if t.state == "waiting":      # queued, never signalled, and now gone
            return self._refuse(t, EXITED_BEFORE)
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
        if t.ev.denied:
            rec["denied_calls"] = t.denied
        status = kx.exit_code if kx is not None else None
        if status is None and t.fd >= 0:
            status = pidfd.exit_status(t.fd)
        if status is not None:
            rec.update(describe_status(status))
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


def describe_status(status: int) -> dict:
    """A wait status -> ``{"exit_code": n}`` or ``{"killed_by": "SIGKILL"}``."""
    if os.WIFSIGNALED(status):
        return {"killed_by": _signame(os.WTERMSIG(status))}
    return {"exit_code": os.WEXITSTATUS(status)}


def _signame(n: int) -> str:
    from .options import signal_name
    return signal_name(n)
