"""``python -m rawprobe watch ...``: arm the probe, run the loop, print the summary."""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import IO, Callable

from .options import WatchOptions, signal_name


# kernel-signal: the longest the tool sleeps without reading the ring buffer; a
# target that blocks the signal is escalated at most this late.
KERNEL_SIGNAL_TICK_NS = 50_000_000


def describe_filter(o: WatchOptions) -> str:
    parts = []
    if o.comm:
        parts.append(f"comm {o.comm!r}")
    if o.pids:
        parts.append("pid " + ",".join(map(str, o.pids)))
    if o.cgroup:
        parts.append(f"cgroup {o.cgroup}")
    if o.uid is not None:
        parts.append(f"uid {o.uid}")
    if o.skip:
        parts.append(f"after {o.skip} {'calls in all' if o.skip_global else 'calls each'}")
    return ", ".join(parts) or "every process"


def describe_action(o: WatchOptions) -> str:
    if o.action == "report":
        return "report only"
    s = f"{o.action} {signal_name(o.signal)}"
    if o.kill_after_ns:
        s += f", SIGKILL after {o.kill_after_ns / 1e9:g} s"
    return s


def run_watch(o: WatchOptions, text: IO[str] | None = sys.stdout,
              json_stream: IO[str] | None = None, summary_stream: IO[str] | None = sys.stdout,
              on_armed: Callable[[dict], None] | None = None,
              record: bool = False):
    """Run one watch to its end.  Returns (exit status, Output, Tracker)."""
    from . import procinfo
    from .output import Output
    from .preflight import check_privileges, raise_nofile
    from .probe import Probe
    from .reactor import Reactor, now_ns
    from .syscalls import name_of
    from .tracker import STRIKE, Tracker, TrackerConfig
    from .events import RP_EV_INTERCEPT, Intercept, KernelExit, KernelSignal, decode

    check_privileges(o.action)
    protected = procinfo.ancestors()
    max_in_flight = raise_nofile(o.max_in_flight) if o.action != "report" else o.max_in_flight

    out = Output(text=text, json=json_stream, use_syslog=o.syslog, quiet=o.quiet)
    out.record = record
    probe = Probe(o, protected=protected)
    reactor = Reactor()
    try:
        hook = probe.open()
        tracker: Tracker

        ring, symbol = probe.ring, probe.symbol
        strike = o.action == "signal"

        peek = ring.peek

        def pump() -> None:
            if strike:
                # The first pending record straight from the ring: no copy, no list;
                # the signal goes out before anything else is touched (on a cold
                # wake-up each line of Python costs; ~40 us less to the signal here).
                first = peek(STRIKE)
                if first is not None and first[0] == RP_EV_INTERCEPT and \
                        tracker.strike_fields(*first[1:]):
                    os.sched_yield()      # see below
            recs = ring.read_batch()
            if strike:
                # signal first (tracker.strike); decoding, bookkeeping, output after
                n = 0
                for rec in recs:
                    if rec[0] == RP_EV_INTERCEPT:
                        n += tracker.strike(rec)
                if n:
                    # Woken on the target's CPU, we would keep it off that CPU (where
                    # it takes the signal) for all the work below: let it run first.
                    os.sched_yield()
            for rec in recs:
                ev = decode(rec, symbol)
                if type(ev) is Intercept:
                    tracker.on_intercept(ev)
                elif type(ev) is KernelExit:
                    tracker.on_kernel_exit(ev)
                elif type(ev) is KernelSignal:
                    tracker.on_kernel_signal(ev)

        tracker = Tracker(reactor, out.emit, TrackerConfig(
            action=o.action, signal=o.signal, kill_after_ns=o.kill_after_ns,
            max_in_flight=max_in_flight, count=o.count, protected=protected,
            syscall_name=name_of), drain=pump)

        def stop_intake() -> None:
            probe.detach_calls()
            tracker.stop()

        tracker.on_count_reached = stop_intake
        # act on a whole batch of records first, write the events before waiting again
        tracker.buffer = []
        reactor.before_wait = tracker.flush
        reactor.add_reader(probe.ring.fileno(), lambda fd: pump())
        reactor.install_signal_handlers()
        reactor.busy_poll = o.busy_poll
        if o.action == "kernel-signal":
            # The kernel signals at the call; what is left here is bookkeeping.  As a
            # SCHED_BATCH task the tool's wake-up (ring buffer) does not preempt the
            # target on its way back to user space, where the signal is delivered.
            try:
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            except (AttributeError, OSError):
                pass
            # Its intercept records do not wake us (intercept.bpf.c, "Wake-ups"):
            # the delivery or the exit does.  A target that blocks the signal and
            # lives on does neither, so look at the ring every KERNEL_SIGNAL_TICK_NS.
            def tick() -> None:
                pump()
                reactor.call_later(KERNEL_SIGNAL_TICK_NS, tick)
            reactor.call_later(KERNEL_SIGNAL_TICK_NS, tick)
        armed = {"event": "armed", "pid": os.getpid(),
                 "comm": procinfo.read_comm(os.getpid()), "hook": hook,
                 "target": o.syscall or probe.symbol, "filter": describe_filter(o),
                 "action": describe_action(o)}
        if max_in_flight < o.max_in_flight:
            armed["max_in_flight"] = max_in_flight
        if o.busy_poll:
            armed["busy_poll"] = True
        out.emit(armed)
        if on_armed is not None:
            on_armed(armed)

        until = now_ns() + o.duration_ns if o.duration_ns else None
        pump()                               # written before the loop's first wait
        reactor.run(lambda: tracker.done, until_ns=until)
        if reactor.stop_requested is None and not tracker.done:
            stop_intake()                    # --duration is over: finish those in flight
            pump()
            reactor.run(lambda: tracker.done)
        tracker.flush()
        counters = probe.counters()
        if reactor.stop_requested is not None:
            probe.close()                    # detach everything at once
            tracker.abandon()
        else:
            pump()
        tracker.counts.lost = counters.get("lost_events") or 0
        summ = tracker.summary()
        if counters.get("handled_full"):
            summ["counts"]["not_handled_map_full"] = counters["handled_full"]
        from .summary import histogram      # at exit: not before armed
        hist = histogram(tracker.tte_kernel_us or tracker.tte_pidfd_us)
        out.summary(summ, hist, summary_stream)
        return 0, out, tracker
    finally:
        probe.close()
        reactor.close()
        out.close()


def watch_main(argv: list[str]) -> int:
    from .options import parse_watch
    o = parse_watch(argv)
    json_stream = None
    text: IO[str] | None = sys.stdout
    summary_stream: IO[str] | None = sys.stdout
    if o.json == "-":
        json_stream, text, summary_stream = sys.stdout, None, sys.stderr
    elif o.json:
        try:
            json_stream = open(o.json, "w", buffering=1)
        except OSError as e:
            from .options import UsageError
            raise UsageError(f"--json {o.json!r}: {e.strerror}") from None
    status, _, _ = run_watch(o, text=text, json_stream=json_stream,
                             summary_stream=summary_stream)
    return status
