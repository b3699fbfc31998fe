"""``python -m rawprobe watch ...``: arm the probe, run the loop, print the summary."""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import IO, Callable

from ..errors import errno_name
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


def describe_action(o: WatchOptions, action: str) -> str:
    if action == "report":
        return "report only"
    if action == "deny":
        return f"deny with {errno_name(o.deny_errno)}"
    s = f"{action} {signal_name(o.signal)}"
    if action == "deny-signal":
        s = f"deny with {errno_name(o.deny_errno)}, kernel-signal {signal_name(o.signal)}"
    if o.kill_after_ns:
        s += f", SIGKILL after {o.kill_after_ns / 1e9:g} s"
    return s


# Exit statuses of ``watch`` (README, "Safety").
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MISSED = 0, 1, 2, 3


def resolve_action(requested: str) -> tuple[str, str]:
    """``--action auto`` -> (kernel-signal where the kernel has bpf_send_signal, else
    signal; why).  Other actions are kept as given, with no reason."""
    if requested != "auto":
        return requested, ""
    from .. import features
    f = features.send_signal()
    if f:
        return "kernel-signal", "auto: the kernel signals at the call"
    return "signal", f"auto: the tool signals, the kernel cannot ({f.detail})"


def run_watch(o: WatchOptions, text: IO[str] | None = sys.stdout,
              json_stream: IO[str] | None = None, summary_stream: IO[str] | None = sys.stdout,
              on_armed: Callable[[dict], None] | None = None,
              record: bool = False, warn: IO[str] | None = sys.stderr):
    """Run one watch to its end.  Returns (exit status, Output, Tracker).

    A first SIGINT/SIGTERM stops the intake and lets the targets already signalled
    finish (SIGKILL at their --kill-after deadline); a second one leaves at once.
    Either way the status is 128 + the signal number.  With --action deny nothing
    ends a target but its own exit: at the end (interrupt, --duration) those still
    denied are let go."""
    from . import procinfo
    from .output import Output
    from .preflight import check_privileges, may_kill_any, pid_namespace, raise_nofile
    from .probe import Probe
    from .reactor import Reactor, now_ns
    from .syscalls import name_of
    from .tracker import Tracker, TrackerConfig

    o.check_filter()          # also for options built through the API, not parse_watch
    pidns = pid_namespace()
    check_privileges()
    action, why_action = resolve_action(o.action)
    protected = procinfo.ancestors()
    max_in_flight = raise_nofile(o.max_in_flight) if action != "report" else o.max_in_flight

    out = Output(text=text, json=json_stream, use_syslog=o.syslog, quiet=o.quiet,
                 record=record, warn=warn)
    probe_class = Probe
    if action in ("deny", "deny-signal"):
        from .deny import DenyProbe
        probe_class = DenyProbe
    probe = probe_class(o, action, protected=protected, max_in_flight=max_in_flight,
                        may_kill_any=may_kill_any(), pidns_ino=pidns)
    reactor = Reactor(busy_poll=o.busy_poll)
    metrics = None
    try:
        if o.metrics is not None:
            # before the probe loads: a bad address or no prometheus_client fails first
            from .metrics import MetricsServer
            metrics = MetricsServer(*o.metrics)
        hook = probe.open()
        tracker = Tracker(reactor, out.emit, TrackerConfig(
            action=action, signal=o.signal,
            kill_after_ns=0 if action == "deny" else o.kill_after_ns,
            max_in_flight=max_in_flight, count=o.count, protected=protected,
            syscall_name=name_of, deny_errno=o.deny_errno), source=probe, buffered=True)
        reactor.add_reader(probe.ring.fileno(), lambda fd: tracker.pump())
        reactor.install_signal_handlers()
        if action in ("kernel-signal", "deny-signal"):
            # The kernel signals at the call; what is left here is bookkeeping.  As a
            # SCHED_BATCH task the tool's wake-up (ring buffer) does not preempt the
            # target on its way back to user space, where the signal is delivered.
            try:
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
            except (AttributeError, OSError):
                pass       # only a scheduling hint: the watch is correct without it
            # Its intercept records do not wake us (intercept.bpf.c, "Wake-ups"):
            # the delivery or the exit does.  A target that blocks the signal and
            # lives on does neither, so look at the ring every KERNEL_SIGNAL_TICK_NS.
            def tick() -> None:
                tracker.pump()
                reactor.call_later(KERNEL_SIGNAL_TICK_NS, tick)
            reactor.call_later(KERNEL_SIGNAL_TICK_NS, tick)
        armed = {"event": "armed", "pid": os.getpid(),
                 "comm": procinfo.read_comm(os.getpid()), "hook": hook,
                 "target": o.syscall or probe.symbol or "", "filter": describe_filter(o),
                 "action": describe_action(o, action)}
        if probe.hook_reason:
            armed["hook_reason"] = probe.hook_reason
        if why_action:
            armed["action_reason"] = why_action
        if max_in_flight < o.max_in_flight:
            armed["max_in_flight"] = max_in_flight
        if o.busy_poll:
            armed["busy_poll"] = True
        if metrics is not None:
            metrics.serve(tracker)
            armed["metrics"] = metrics.url
        out.emit(armed)
        if on_armed is not None:
            on_armed(armed)

        until = now_ns() + o.duration_ns if o.duration_ns else None
        tracker.pump()
        # stops_allowed=0: a stop signal that came since the handlers went in counts
        reactor.run(lambda: tracker.done, until_ns=until, before_wait=tracker.flush,
                    stops_allowed=0)
        left = []
        if not reactor.stops and not tracker.done:
            tracker.stop_intake()            # --duration is over: finish those in flight
            tracker.pump()
            if action == "deny":             # nothing ends them: let them go
                left = _release(tracker, probe, "--duration is over")
            else:
                reactor.run(lambda: tracker.done, before_wait=tracker.flush, stops_allowed=0)
        if reactor.stops:
            left = _interrupted(reactor, tracker, probe,
                                o.kill_after_ns if action != "deny" else 0, out)
        else:
            tracker.pump()
        tracker.flush()
        summ = tracker.summary()
        if left:
            summ["left_in_flight"] = [{"pid": t.ev.tgid, "comm": t.ev.comm,
                                       "escalated": t.escalated} for t in left]
        if reactor.stop_requested is not None:
            summ["interrupted_by"] = signal_name(reactor.stop_requested)
        from .summary import histogram      # at exit: not before armed
        hist = histogram(tracker.tte_kernel_us or tracker.tte_pidfd_us)
        out.summary(summ, hist, summary_stream)
        if reactor.stop_requested is not None:
            status = 128 + reactor.stop_requested
        elif tracker.counts.lost or tracker.counts.not_handled:
            status = EXIT_MISSED
        else:
            status = EXIT_OK
        return status, out, tracker
    finally:
        if metrics is not None:
            metrics.close()
        probe.close()
        reactor.close()
        out.close()


def _interrupted(reactor, tracker, probe, kill_after_ns: int, out) -> list:
    """The tool was asked to stop: take no new targets, and see those already
    signalled to their end (SIGKILL at the deadline) unless a second stop signal
    comes or nothing bounds the wait (``--kill-after 0``).  Returns the targets
    left in flight."""
    tracker.stop_intake()
    tracker.pump()                           # kernel-signalled ones not read yet
    n = len(tracker.in_flight_targets())
    if n and kill_after_ns > 0:
        tracker.emit({"event": "interrupted", "signal": signal_name(reactor.stop_requested),
                      "in_flight": n,
                      "reason": f"finishing the {n} targets already signalled (SIGKILL at "
                                "their deadline); interrupt again to leave them now"})
        tracker.flush()
        # the first stop brought us here; a second one (even one that came while
        # this was written) leaves
        reactor.run(lambda: tracker.done, before_wait=tracker.flush, stops_allowed=1)
    if tracker.done:
        return []
    tracker.pump()
    if tracker.cfg.action == "deny":
        return _release(tracker, probe, "interrupted")
    left = tracker.abandon()
    tracker.emit({"event": "abandoned", "targets": len(left),
                  "pids": [t.ev.tgid for t in left],
                  "reason": "left while still in flight: signalled, not yet exited"
                            + ("" if kill_after_ns else " (--kill-after 0: no deadline)")})
    return left


def _release(tracker, probe, why: str) -> list:
    """--action deny: the watch ends while targets are still being denied (only
    their exit would end them); they are let go, their calls succeed again.  The
    deny comes off first, so the calls it denied are all read and counted."""
    probe.release()
    tracker.pump()
    left = tracker.abandon()
    if left:
        tracker.emit({"event": "abandoned", "targets": len(left),
                      "pids": [t.ev.tgid for t in left],
                      "reason": f"{why} while they were still denied: once the tool "
                                "exits, their calls succeed again"})
    return left


def watch_main(argv: list[str]) -> int:
    from .options import UsageError, parse_watch
    o = parse_watch(argv)
    # RAWPROBE_JSON=1 (the container image sets it): --json unless the command
    # line chose; 0 or empty: text.
    env_json = os.environ.get("RAWPROBE_JSON", "")
    if env_json not in ("", "0", "1"):
        raise UsageError(f"RAWPROBE_JSON={env_json!r}: set it to 1 (JSON lines on stdout) "
                         "or 0 (text)")
    if o.json is None and env_json == "1":
        o.json = "-"
    json_stream = None
    text: IO[str] | None = sys.stdout
    summary_stream: IO[str] | None = sys.stdout
    if o.json == "-":
        json_stream, text, summary_stream = sys.stdout, None, sys.stderr
    elif o.json:
        try:
            json_stream = open(o.json, "w", buffering=1)
        except OSError as e:
            raise UsageError(f"--json {o.json!r}: {e.strerror}") from None
    status, _, _ = run_watch(o, text=text, json_stream=json_stream,
                             summary_stream=summary_stream,
                             warn=sys.stderr)
    return status
