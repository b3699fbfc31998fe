"""The tracker's pidfd side, on real child processes (no BPF involved).

The intercept records are built here from real processes (their real pid and start
time) instead of coming from the ring buffer; everything after that -- pidfd_open,
the identity check, pidfd_send_signal, deadlines, SIGKILL, exit via the pidfd -- is
the real code against real processes.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rawprobe import pidfd
from rawprobe.interceptor import procinfo
from rawprobe.interceptor.events import Intercept, KernelExit
from rawprobe.interceptor.reactor import Reactor, now_ns
from rawprobe.interceptor.tracker import Tracker, TrackerConfig

TARGETS = Path(__file__).parent / "targets"
# How late a deadline or an exit may be seen on a busy 2-CPU machine: the lower
# bounds say "never early"; this only keeps a scheduler stall from failing a run.
LATE_US = 250_000
sys.path.insert(0, str(TARGETS))


def unique_comm() -> str:
    return "rpt_" + secrets.token_hex(4)


def start_target(comm: str, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(TARGETS / "target.py"), "--comm", comm,
                          "--wait-go", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def intercept_of(p: subprocess.Popen, comm: str, **kw) -> Intercept:
    st = procinfo.read_stat(p.pid)
    f = dict(tgid=p.pid, pid=p.pid, comm=comm, ktime_ns=now_ns(),
             start_ns=st.starttime * procinfo.TICK_NS, start_clock="boottime",
             nr=1, args=(1, 0, 5, 0, 0, 0), hit=1)
    return Intercept(**{**f, **kw})


class NoRecords:
    """A record source with nothing pending: the kernel's exit record has not come.
    (Only the tracker's timing is under test here; the kernel side is tested end to
    end in test_interceptor_e2e.py.)"""
    symbol = None

    def peek(self, fmt):
        return None

    def read_batch(self):
        return []

    def missed(self):
        return 0, 0

    def detach_calls(self):
        pass


class Records(NoRecords):
    """A record source serving raw kernel records (intercept.h's layouts, built here
    from real processes by ``raw_intercept`` and the like), one batch per read, as
    the ring buffer does: ``peek`` unpacks the first pending record and leaves it.
    ``on_read``, if set, is called as each batch is read."""

    def __init__(self, symbol: str | None = None) -> None:
        self.symbol = symbol
        self.pending: list[bytes] = []
        self.on_read = None

    def peek(self, fmt):
        if not self.pending or len(self.pending[0]) < fmt.size:
            return None
        return fmt.unpack_from(self.pending[0])

    def read_batch(self):
        if self.on_read is not None:
            self.on_read()
        batch, self.pending = self.pending, []
        return batch


class Harness:
    def __init__(self, source=None, buffered: bool = False, **cfg) -> None:
        self.events: list[dict] = []
        self.written_ns: list[int] = []        # when each event was written
        self.on_write = None                   # called with each event as it is written
        self.reactor = Reactor()
        cfg.setdefault("protected", procinfo.ancestors())
        self.tracker = Tracker(self.reactor, self._write, TrackerConfig(**cfg),
                               source=source, buffered=buffered)

    def _write(self, ev: dict) -> None:
        self.events.append(ev)
        self.written_ns.append(now_ns())
        if self.on_write is not None:
            self.on_write(ev)

    def written_at(self, ev: dict) -> int:
        return self.written_ns[next(i for i, e in enumerate(self.events) if e is ev)]

    def run(self, until, timeout: float = 10.0) -> None:
        end = now_ns() + int(timeout * 1e9)
        while not until() and now_ns() < end:
            self.reactor.run_once(end - now_ns())
        assert until(), f"timed out; events: {self.events}"

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]

    def close(self) -> None:
        self.reactor.close()


@pytest.fixture
def harness():
    made = []

    def make(**cfg):
        h = Harness(**cfg)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


def reap(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()


def tenth(us: float) -> float:
    """``us`` as the events give durations: a float rounded to 0.1 us."""
    return round(us, 1)


def test_signal_then_exit_timed_by_pidfd(harness):
    comm = unique_comm()
    p = start_target(comm, "--cleanup-ms", "100", "--exit-code", "7")
    try:
        from rawprobe.interceptor.tracker import EXIT_RECORD_GRACE_NS
        h = harness(kill_after_ns=5_000_000_000)
        ev = intercept_of(p, comm)
        h.tracker.on_intercept(ev)
        t = h.tracker.find(p.pid)
        assert [e["event"] for e in h.events] == ["intercept", "signal"]
        assert h.events[1]["signal"] == "SIGTERM" and h.events[1]["latency_us"] < 50_000
        # the latency from the call to the send, to 0.1 us; summed up unrounded
        lat = (t.signal_ns - ev.ktime_ns) / 1000
        assert type(h.events[1]["latency_us"]) is float and h.events[1]["latency_us"] == tenth(lat)
        assert h.tracker.latency_us == [lat]
        # Reap as soon as it exits so the pidfd can also report the exit status.
        h.run(lambda: p.poll() is not None and h.of("exit"))
        ex = h.of("exit")[0]
        assert 100_000 <= ex["time_to_exit_pidfd_us"] < 100_000 + LATE_US, ex
        assert type(ex["time_to_exit_pidfd_us"]) is float
        assert ex["time_to_exit_pidfd_us"] == tenth((t.exit_seen_ns - t.signal_ns) / 1000)
        # no kernel side to wait for: written as the pidfd says so, not after a grace
        assert h.written_at(ex) - t.exit_seen_ns < EXIT_RECORD_GRACE_NS
        assert ex["escalated"] is False and ex["time_to_exit_us"] is None
        assert p.returncode == 7
        assert h.tracker.counts.exited == 1 and h.tracker.handled == 1
        assert h.tracker.summary()["histogram_of"] == "pidfd"
    finally:
        reap(p)


def test_ignored_sigterm_escalates_to_sigkill_at_the_deadline(harness):
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(kill_after_ns=300_000_000)
        t0 = now_ns()
        h.tracker.on_intercept(intercept_of(p, comm))
        h.run(lambda: h.of("exit"))
        esc = h.of("escalate")[0]
        assert esc["signal"] == "SIGKILL"
        assert 300_000 <= esc["after_us"] < 300_000 + LATE_US
        ex = h.of("exit")[0]
        assert ex["escalated"] is True
        assert 300_000 <= ex["time_to_exit_pidfd_us"] < 300_000 + LATE_US
        assert (now_ns() - t0) < 2e9
        p.wait(timeout=5)
        assert p.returncode == -signal.SIGKILL
    finally:
        reap(p)


@pytest.fixture
def reused_pid():
    """(intercept of a process A that exited, A's pidfs inode, pid of B): B is another
    process that now holds A's pid."""
    from setpid import spawn_with_pid
    comm = unique_comm()
    a = start_target(comm)
    ev = intercept_of(a, comm)
    fd = pidfd.open_pidfd(a.pid)
    ino_a = pidfd.pid_inode(fd)
    os.close(fd)
    reap(a)
    time.sleep(0.011)                        # past the 10 ms tick of /proc's start time
    b = spawn_with_pid(a.pid, ["/bin/sleep", "30"])  # same pid, another process
    try:
        yield ev, ino_a, b
    finally:
        os.kill(b, signal.SIGKILL)
        os.waitpid(b, 0)


def test_reused_pid_is_refused_and_not_signalled(harness, reused_pid):
    ev, ino_a, b = reused_pid
    comm = ev.comm
    h = harness()
    h.tracker.on_intercept(ev)            # start time check
    ev2 = Intercept(
        tgid=ev.tgid, pid=ev.tgid, comm=comm, ktime_ns=now_ns(), start_ns=0, pid_ino=ino_a)
    h.tracker.on_intercept(ev2)           # pidfs inode check
    refused = h.of("refused")
    assert [r["reason"].split(":")[0] for r in refused] == ["pid reused", "pid reused"]
    assert not h.of("signal")
    assert procinfo.read_stat(b).state in "RSD"   # b is alive and untouched
    assert h.tracker.handled == 2 and h.tracker.in_flight == 0


def raw_intercept(ev: Intercept, start_boottime: int = 0, pid_ino: int = 0,
                  flags: int = 0) -> bytes:
    """The kernel's record of ``ev`` (intercept.h), as the fast path reads it."""
    from rawprobe.interceptor import events
    return events.INTERCEPT.pack(
        events.RP_EV_INTERCEPT, ev.tgid, ev.pid, 0, ev.comm.encode().ljust(16, b"\0"), ev.nr,
        1, flags, 0, *(ev.args or (0,) * 6), ev.ktime_ns, ev.start_time, start_boottime, 1,
        0, 0, 0, b"\0" * 64, pid_ino)


def raw_deny(ev: Intercept, ktime_ns: int, ret: int) -> bytes:
    """The kernel's record of a later denied call of ``ev``'s process."""
    from rawprobe.interceptor import events
    return events.DENY.pack(events.RP_EV_DENY, ev.tgid, ev.pid, ev.nr, ktime_ns,
                            ev.start_time, *ev.args, ev.comm.encode().ljust(16, b"\0"),
                            ret, 1)


def raw_exit(ev: Intercept, exit_ns: int, code: int, signal_ns: int = 0, kill_ns: int = 0,
             deliver_ns: int = 0, slipped: int = 0, after_signal: int = 0) -> bytes:
    """The kernel's record of the exit of ``ev``'s process."""
    from rawprobe.interceptor import events
    return events.EXIT.pack(events.RP_EV_EXIT, ev.tgid, ev.pid, code,
                            ev.comm.encode().ljust(16, b"\0"), exit_ns, ev.ktime_ns,
                            signal_ns, kill_ns, deliver_ns, slipped, after_signal, ev.hit,
                            ev.start_time, 0, 0)


def test_strike_signals_first_and_the_intercept_finds_it(harness):
    comm = unique_comm()
    p = start_target(comm, "--cleanup-ms", "0")
    try:
        h = harness()
        ev = intercept_of(p, comm)
        assert h.tracker.strike(raw_intercept(ev, start_boottime=ev.start_ns)) == 1
        assert h.tracker.strike(raw_intercept(ev, start_boottime=ev.start_ns)) == 0  # once
        h.tracker.on_intercept(ev)           # no second pidfd, no second signal
        assert len(h.of("signal")) == 1 and h.tracker.counts.signalled == 1
        h.run(lambda: h.of("exit"))
        assert h.tracker.in_flight == 0 and not h.tracker._struck
    finally:
        reap(p)


def test_strike_never_signals_a_reused_pid(harness, reused_pid):
    ev, ino_a, b = reused_pid
    h = harness()
    assert h.tracker.strike(raw_intercept(ev, start_boottime=ev.start_ns)) == 0
    assert h.tracker.strike(raw_intercept(ev, pid_ino=ino_a)) == 0
    assert not h.tracker._struck and procinfo.read_stat(b).state in "RSD"
    h.tracker.on_intercept(ev)               # the full path refuses and says why
    assert h.of("refused")[0]["reason"].startswith("pid reused") and not h.of("signal")


def test_protected_pids_are_refused(harness):
    h = harness()
    me = os.getpid()
    for tgid in (1, me, os.getppid()):
        h.tracker.on_intercept(Intercept(tgid=tgid, pid=tgid, comm="x", ktime_ns=now_ns(),
                                         start_ns=0))
    reasons = [r["reason"] for r in h.of("refused")]
    assert reasons[0].startswith("pid 1")
    assert all("rawprobe itself" in r for r in reasons[1:])
    assert not h.of("signal") and h.tracker.counts.refused == 3


def test_gone_before_signal_is_refused(harness):
    comm = unique_comm()
    a = start_target(comm)
    ev = intercept_of(a, comm)
    reap(a)
    h = harness()
    h.tracker.on_intercept(ev)
    assert h.of("refused")[0]["reason"] == "exited before it could be signalled"


def test_max_in_flight_queues_and_counts(harness):
    comm = unique_comm()
    procs = [start_target(comm, "--cleanup-ms", "30") for _ in range(3)]
    try:
        h = harness(max_in_flight=1, kill_after_ns=5_000_000_000)
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        assert len(h.of("signal")) == 1 and h.tracker.counts.waited == 2
        assert h.tracker.counts.max_waiting == 2
        h.run(lambda: len(h.of("exit")) == 3)
        assert h.tracker.in_flight == 0 and not h.tracker.waiting
        assert (h.tracker.counts.signalled, h.tracker.counts.exited) == (3, 3)
        # one at a time: each signal comes after the previous exit
        order = [e["event"] for e in h.events if e["event"] in ("signal", "exit")]
        assert order == ["signal", "exit"] * 3
    finally:
        for p in procs:
            reap(p)


def test_count_stops_and_drops_the_waiting(harness):
    comm = unique_comm()
    procs = [start_target(comm) for _ in range(3)]
    try:
        h = harness(max_in_flight=1, count=1, kill_after_ns=5_000_000_000)
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        h.run(lambda: h.tracker.done)
        assert h.tracker.handled == 1 and h.tracker.counts.dropped == 2
        assert all(p.poll() is None for p in procs[1:])   # never signalled
    finally:
        for p in procs:
            reap(p)


def test_report_action_signals_nobody(harness):
    comm = unique_comm()
    p = start_target(comm)
    try:
        h = harness(action="report", count=1)
        h.tracker.on_intercept(intercept_of(p, comm))
        assert h.tracker.done and not h.of("signal")
        time.sleep(0.05)
        assert p.poll() is None
    finally:
        reap(p)


def test_kernel_exit_record_is_joined(harness):
    """A KernelExit (as the BPF side sends) supplies the kernel measure and the code."""
    comm = unique_comm()
    p = start_target(comm, "--cleanup-ms", "20", "--exit-code", "3")
    try:
        h = harness(source=NoRecords())
        ev = intercept_of(p, comm)
        h.tracker.on_intercept(ev)
        sig_ns = h.tracker.find(p.pid).signal_ns
        h.run(lambda: h.tracker.find(p.pid) is None or h.tracker.find(p.pid).state == "exited")
        h.tracker.on_kernel_exit(KernelExit(tgid=p.pid, signal_ns=sig_ns + 5000,
                                            exit_ns=sig_ns + 20_005_000, deliver_ns=sig_ns + 9000,
                                            exit_code=3 << 8, slipped=2))
        ex = h.of("exit")[0]
        assert ex["time_to_exit_us"] == 20000.0 and ex["exit_code"] == 3
        assert ex["slipped_calls"] == 2 and ex["delivery_latency_us"] >= 5
    finally:
        reap(p)


def test_stop_signal_interrupts_the_loop():
    before = signal.getsignal(signal.SIGINT)    # SIG_IGN when started in the background
    r = Reactor()
    r.install_signal_handlers()
    try:
        r.call_later(20_000_000, lambda: os.kill(os.getpid(), signal.SIGINT))
        t0 = now_ns()
        r.run(lambda: False, until_ns=now_ns() + 5_000_000_000)
        assert r.stop_requested == signal.SIGINT
        assert now_ns() - t0 < 1e9
    finally:
        r.close()
    assert signal.getsignal(signal.SIGINT) is before


# -- --kill-after: its default, 0 = never, and the point the deadline counts from ------

def test_kill_after_defaults_to_2s_and_0_means_never():
    from rawprobe.interceptor.cli import describe_action
    from rawprobe.interceptor.options import parse_watch
    # "--com" is not a full option name: argparse parses that line, not the fast path
    for argv in (["--comm", "x"], ["--com", "x"]):
        o = parse_watch(argv)
        assert o.kill_after_ns == 2_000_000_000, argv
        assert describe_action(o, "signal") == "signal SIGTERM, SIGKILL after 2 s"
    for never in ("0", "0s", "0ms"):
        o = parse_watch(["--comm", "x", "--kill-after", never])
        assert o.kill_after_ns == 0, never
        assert describe_action(o, "signal") == "signal SIGTERM"


def test_deadline_counts_from_the_signal_not_the_intercept(harness):
    """The tracker signals now a call the kernel stamped 1 s ago: SIGKILL comes
    --kill-after after the signal, not after the call."""
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(kill_after_ns=300_000_000)
        ev = intercept_of(p, comm)
        ev.ktime_ns -= 1_000_000_000
        t0 = now_ns()
        h.tracker.on_intercept(ev)
        assert h.of("signal")[0]["latency_us"] >= 1_000_000    # measured from the call
        expect_sigkill(h, p, 300_000_000, since_ns=t0)
    finally:
        reap(p)


def expect_sigkill(h: Harness, p: subprocess.Popen, after_ns: int, since_ns: int) -> None:
    """Run until the escalation: it comes ``after_ns`` after ``since_ns`` and after the
    signal (never earlier, at most LATE_US later), and SIGKILL ends ``p``."""
    h.run(lambda: h.of("escalate"))
    assert after_ns <= now_ns() - since_ns < after_ns + LATE_US * 1000
    after_us = h.of("escalate")[0]["after_us"]
    assert after_ns // 1000 <= after_us < after_ns // 1000 + LATE_US
    assert type(after_us) is float and after_us == tenth(after_us)
    h.run(lambda: h.of("exit"))
    assert p.wait(timeout=5) == -signal.SIGKILL


@pytest.mark.parametrize("stamp", ["signal_ns", "ktime_ns"])
def test_kernel_signal_deadline_counts_from_the_kernel_stamp(harness, stamp):
    """--action kernel-signal: the kernel sent the signal at the call, so the default
    2 s deadline counts from its stamp of the send (else of the call): a stamp
    1.7 s old leaves 0.3 s."""
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(action="kernel-signal", kill_after_ns=default_kill_after())
        t0 = now_ns()
        sent = t0 - 1_700_000_000
        ev = intercept_of(p, comm, kernel_signalled=True)
        if stamp == "signal_ns":
            ev.ktime_ns, ev.signal_ns = sent - 100_000_000, sent   # sent 100 ms after the call
        else:
            ev.ktime_ns = sent
        h.tracker.on_intercept(ev)
        assert not h.of("escalate")
        expect_sigkill(h, p, 2_000_000_000, since_ns=sent)
    finally:
        reap(p)


def test_the_escalation_delay_is_the_time_since_the_signal(harness):
    """The "escalate" event's after_us is the time from the signal to the SIGKILL,
    in us: with a kernel stamp of the send 59.8 s old and --kill-after 60 s, the
    SIGKILL goes out in 0.2 s and after_us is 60 s (not a per-mille off)."""
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(action="kernel-signal", kill_after_ns=60_000_000_000)
        sent = now_ns() - 59_800_000_000
        ev = intercept_of(p, comm, kernel_signalled=True)
        ev.ktime_ns, ev.signal_ns = sent - 1000, sent
        h.tracker.on_intercept(ev)
        expect_sigkill(h, p, 60_000_000_000, since_ns=sent)
    finally:
        reap(p)


@pytest.mark.parametrize("action", ["signal", "kernel-signal"])
def test_kill_after_0_never_escalates(harness, action):
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(action=action, kill_after_ns=0)
        ev = intercept_of(p, comm, kernel_signalled=action == "kernel-signal")
        ev.ktime_ns -= 10_000_000_000                         # an old call changes nothing
        h.tracker.on_intercept(ev)
        assert h.tracker.counts.signalled == 1
        end = now_ns() + 500_000_000
        while now_ns() < end:
            h.reactor.run_once(end - now_ns())
        assert not h.of("escalate") and not h.of("exit")
        assert p.poll() is None and h.tracker.in_flight == 1
        p.kill()
        h.run(lambda: h.of("exit"))
        assert h.of("exit")[0]["escalated"] is False and h.tracker.in_flight == 0
    finally:
        reap(p)


def test_any_positive_kill_after_arms_the_deadline(harness):
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(kill_after_ns=1)
        h.tracker.on_intercept(intercept_of(p, comm))
        h.run(lambda: h.of("exit"))
        assert h.of("escalate") and h.of("exit")[0]["escalated"] is True
        assert p.wait(timeout=5) == -signal.SIGKILL
    finally:
        reap(p)


def default_kill_after() -> int:
    """--kill-after as the command line leaves it (what the CLI gives the tracker)."""
    from rawprobe.interceptor.options import parse_watch
    return parse_watch(["--comm", "x"]).kill_after_ns


def test_abandon_leaves_what_is_in_flight_and_closes_its_pidfds(harness):
    """A second interrupt: the targets in flight (signalled, ignoring SIGTERM) are
    returned and counted as abandoned, nothing stays in flight, the waiting one is
    dropped and every pidfd the tracker held is closed."""
    from fdcheck import open_fds
    comm = unique_comm()
    procs = [start_target(comm, "--ignore-term") for _ in range(3)]
    try:
        h = harness(max_in_flight=2, kill_after_ns=60_000_000_000)
        before = open_fds()                                # the loop's own fds included
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        assert len(h.of("signal")) == 2 and len(h.tracker.in_flight_targets()) == 2
        left = h.tracker.abandon()
        assert sorted(t.ev.tgid for t in left) == sorted(p.pid for p in procs[:2])
        assert all(t.state == "done" for t in left)
        assert (h.tracker.counts.abandoned, h.tracker.counts.dropped) == (2, 1)
        assert h.tracker.in_flight == 0 and h.tracker.done
        assert h.tracker.in_flight_targets() == [] and h.tracker.find(procs[0].pid) is None
        assert open_fds() == before
        assert all(p.poll() is None for p in procs)        # no SIGKILL from us
    finally:
        for p in procs:
            reap(p)


@pytest.mark.parametrize("action, kernel_signalled", [("kernel-signal", True), ("deny", False)])
def test_gone_after_the_kernels_own_action_is_an_exit_not_a_refusal(harness, action,
                                                                     kernel_signalled):
    """The kernel signalled (or denied) the call itself and the process is gone
    before the tool looks: that is the exit the action caused, reported once the
    grace for the kernel's exit record is over (here no record comes), never a
    refusal; its signal counts only if the kernel sent one."""
    comm = unique_comm()
    p = start_target(comm)
    ev = intercept_of(p, comm, kernel_signalled=kernel_signalled)
    ev.signal_ns = ev.ktime_ns + 1000
    p.kill()
    p.wait()
    h = harness(action=action, source=NoRecords())
    t0 = now_ns()
    h.tracker.on_intercept(ev)
    assert not h.of("exit") and not h.of("refused") and h.tracker.in_flight == 1
    h.run(lambda: h.of("exit"))
    assert now_ns() - t0 >= 200_000_000                   # EXIT_RECORD_GRACE_NS
    ex = h.of("exit")[0]
    assert ex["pid"] == p.pid and ex["exit_code"] is None and ex["escalated"] is False
    assert ex["time_to_exit_us"] is None and ex["time_to_exit_pidfd_us"] is None
    assert (h.tracker.counts.signalled, h.tracker.counts.exited, h.tracker.counts.refused) \
        == (int(kernel_signalled), 1, 0)
    assert h.tracker.in_flight == 0 and h.tracker.handled == 1


def test_denied_calls_are_written_counted_and_summed_in_the_exit(harness):
    """--action deny: the first denied call comes with the intercept (its hit),
    later ones as Denial records; each is a "deny" event naming the errno, all
    are counted, and the process's exit says how many of its calls were denied."""
    import errno
    from rawprobe.interceptor.events import Denial
    comm = unique_comm()
    p = start_target(comm, "--cleanup-ms", "0")
    try:
        h = harness(action="deny", deny_errno=errno.EACCES, source=NoRecords(),
                    syscall_name={1: "write"}.get)
        ev = intercept_of(p, comm, denied=True)
        h.tracker.on_intercept(ev)
        later = [Denial(tgid=p.pid, pid=p.pid, comm=comm, nr=1, args=(1, 0, 5 + i, 0, 0, 0),
                        ktime_ns=now_ns(), start_time=ev.start_time, ret=-errno.EACCES,
                        hook="tp") for i in range(2)]
        for d in later:
            h.tracker.on_denial(d)
        deny = h.of("deny")
        assert [(e["pid"], e["tid"], e["syscall"], e["nr"], e["errno"], e.get("hit"))
                for e in deny] == [(p.pid, p.pid, "write", 1, "EACCES", 1)] + \
            [(p.pid, p.pid, "write", 1, "EACCES", None)] * 2
        assert [e["args"][2] for e in deny] == [5, 5, 6]
        assert h.tracker.counts.denied == 3 and not h.of("signal")
        p.kill()
        h.run(lambda: h.of("exit"))
        assert h.of("exit")[0]["denied_calls"] == 3
    finally:
        reap(p)


def test_strike_leaves_to_the_full_path_what_it_cannot_do_plainly(harness):
    """The fast path signals only the plain case: not a short record, a process the
    kernel marked protected, after stop, or beyond --max-in-flight (counting those
    it struck); it takes a monotonic stamp on that clock's rule, and the intercept
    then takes over its pidfd (none left open)."""
    from fdcheck import open_fds
    from rawprobe.interceptor.events import RP_F_PROTECTED

    def pidfds() -> set[int]:
        out = set()
        for fd in open_fds():
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]":
                    out.add(fd)
            except FileNotFoundError:          # the directory listing's own fd
                pass
        return out
    comm = unique_comm()
    a, b = (start_target(comm, "--cleanup-ms", "0") for _ in range(2))
    try:
        def boot(p):
            return procinfo.read_stat(p.pid).starttime * procinfo.TICK_NS
        stopped = harness()
        stopped.tracker.stop()
        assert stopped.tracker.strike_fields(a.pid, 0, 0, boot(a), 0) == 0
        h = harness(max_in_flight=1)
        before = pidfds()
        assert h.tracker.strike(b"\0" * 8) == 0
        assert h.tracker.strike_fields(a.pid, RP_F_PROTECTED, 0, boot(a), 0) == 0
        assert not h.tracker._struck and a.poll() is None
        # a ns before the tick /proc shows: a match as a monotonic stamp only
        ev = intercept_of(a, comm, start_time=boot(a) - 1)
        assert h.tracker.strike_fields(a.pid, 0, ev.start_time, 0, 0) == 1
        assert h.tracker.strike_fields(b.pid, 0, 0, boot(b), 0) == 0      # no free slot
        h.tracker.on_intercept(ev)
        h.run(lambda: h.of("exit"))
        assert len(h.of("signal")) == 1 and pidfds() == before
        assert b.poll() is None
    finally:
        reap(a)
        reap(b)


def test_the_kernels_signal_record_is_reported_once_and_summed_up(harness):
    """--action kernel-signal: the kernel's record of the signal it generated for
    this intercept (not another intercept's, not another signal, not a delivery)
    is the "signal" event, once, its latency from the call; the exit record gives
    the kernel's time to exit; the summary keeps each measure under its name."""
    from rawprobe.interceptor.events import KernelSignal, RP_SIG_DELIVER, RP_SIG_GENERATE
    from rawprobe.interceptor.summary import distribution
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(action="kernel-signal", source=NoRecords())
        ev = intercept_of(p, comm, kernel_signalled=True)
        h.tracker.on_intercept(ev)
        assert not h.of("signal") and h.tracker.counts.signalled == 1

        def ks(**kw):
            f = dict(tgid=p.pid, pid=p.pid, kind=RP_SIG_GENERATE, sig=signal.SIGTERM,
                     result=0, sender_tgid=p.pid, ktime_ns=ev.ktime_ns + 30_460,
                     intercept_ns=ev.ktime_ns)
            return KernelSignal(**{**f, **kw})
        for other in (ks(intercept_ns=ev.ktime_ns - 1), ks(kind=RP_SIG_DELIVER),
                      ks(sig=signal.SIGUSR1), ks(tgid=p.pid + 1)):
            h.tracker.on_kernel_signal(other)
        assert not h.of("signal")
        h.tracker.on_kernel_signal(ks())
        assert h.tracker.find(p.pid).signal_ns == ev.ktime_ns + 30_460
        # a later SIGTERM (another sender's, or ours again) moves nothing: the
        # pidfd's time to exit counts from the first
        h.tracker.on_kernel_signal(ks(ktime_ns=ev.ktime_ns + 90_000))
        assert h.tracker.find(p.pid).signal_ns == ev.ktime_ns + 30_460
        assert [(e["signal"], e["latency_us"], e["by"]) for e in h.of("signal")] == \
            [("SIGTERM", 30.5, "kernel")]
        p.kill()
        h.run(lambda: h.tracker.find(p.pid).state == "exited")
        h.tracker.on_kernel_exit(KernelExit(tgid=p.pid + 1, exit_ns=1, start_time=ev.start_time))
        assert not h.of("exit")
        h.tracker.on_kernel_exit(KernelExit(tgid=p.pid, signal_ns=ev.ktime_ns + 30_460,
                                            exit_ns=ev.ktime_ns + 1_030_460, exit_code=9,
                                            start_time=ev.start_time))
        ex = h.of("exit")[0]
        assert ex["time_to_exit_us"] == 1000.0 and ex["killed_by"] == "SIGKILL"
        s = h.tracker.summary()
        assert s["event"] == "summary" and s["counts"] == h.tracker.counts.as_dict()
        assert s["time_to_exit_us"] == distribution([1000.0])
        assert s["time_to_exit_pidfd_us"] == distribution([ex["time_to_exit_pidfd_us"]])
        assert s["latency_us"] == distribution([30.46]) and s["histogram_of"] == "kernel"
    finally:
        reap(p)


def test_a_failed_kernel_signal_is_an_error_and_finishes_the_target(harness):
    """bpf_send_signal failed at the call: one "error" event saying so with its
    return value, counted, and the target finished (its pidfd closed)."""
    comm = unique_comm()
    p = start_target(comm)
    try:
        h = harness(action="kernel-signal", source=NoRecords())
        h.tracker.on_intercept(intercept_of(p, comm, kernel_signalled=True, signal_ret=-11))
        assert [(e["event"], e["pid"], e["comm"], e.get("message")) for e in h.events[1:]] == \
            [("error", p.pid, comm, "bpf_send_signal failed (-11)")]
        assert (h.tracker.counts.errors, h.tracker.counts.signalled) == (1, 0)
        assert h.tracker.in_flight == 0 and h.tracker.handled == 1
        assert h.tracker.find(p.pid) is None and p.poll() is None
    finally:
        reap(p)


class RisingDrops(NoRecords):
    """A record source whose drop counters (records lost, processes not handled)
    are set by the test, as the kernel's .bss counters rise."""
    now = (0, 0)

    def missed(self):
        return self.now


def test_each_rise_of_the_drop_counters_is_reported_by_how_much(harness):
    src = RisingDrops()
    h = harness(action="report", source=src)
    for now in [(7, 2), (10, 2), (10, 2), (10, 5)]:
        src.now = now
        h.tracker.pump()
    lost = h.of("lost")
    assert [(e.get("records"), e.get("processes"), e["total"]) for e in lost] == \
        [(7, None, 7), (None, 2, 2), (3, None, 10), (None, 3, 5)]
    assert {e["reason"] for e in lost if "records" in e} == {
        "the ring buffer was full: intercepts, signal or exit records were dropped; "
        "targets may have been missed"}
    assert {e["reason"] for e in lost if "processes" in e} == {
        "the kernel's table of handled processes was full: matching processes were "
        "not handled"}
    assert (h.tracker.counts.lost, h.tracker.counts.not_handled) == (10, 5)


def test_a_waiting_target_whose_exit_record_comes_is_refused_not_signalled(harness):
    """Queued behind --max-in-flight, it exits before its turn: the kernel's exit
    record makes it a refusal ("exited before it could be signalled"), and the
    queue moves on without signalling it."""
    comm = unique_comm()
    a, b = (start_target(comm, "--ignore-term") for _ in range(2))
    try:
        h = harness(max_in_flight=1, kill_after_ns=60_000_000_000, source=NoRecords())
        ev_b = intercept_of(b, comm)
        h.tracker.on_intercept(intercept_of(a, comm))
        h.tracker.on_intercept(ev_b)
        assert len(h.of("signal")) == 1 and h.tracker.counts.waited == 1
        h.tracker.on_kernel_exit(KernelExit(tgid=b.pid, exit_ns=now_ns(),
                                            start_time=ev_b.start_time))
        assert [(e["pid"], e["reason"]) for e in h.of("refused")] == \
            [(b.pid, "exited before it could be signalled")]
        assert h.tracker.counts.refused == 1 and h.tracker.find(b.pid) is None
        assert len(h.of("signal")) == 1 and b.poll() is None
        h.tracker.abandon()
    finally:
        reap(a)
        reap(b)


def test_each_escalation_is_counted_and_its_delay_given_to_0_1_us(harness):
    comm = unique_comm()
    procs = [start_target(comm, "--ignore-term") for _ in range(2)]
    try:
        h = harness(kill_after_ns=200_000_000)
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        h.run(lambda: len(h.of("exit")) == 2)
        esc = h.of("escalate")
        assert sorted(e["pid"] for e in esc) == sorted(p.pid for p in procs)
        assert all(e["signal"] == "SIGKILL" and e["after_us"] == round(e["after_us"], 1)
                   and e["after_us"] >= 200_000 for e in esc)
        assert h.tracker.counts.escalated == 2
    finally:
        for p in procs:
            reap(p)


# -- pump: the records as the kernel side submits them ------------------------------

def test_pump_signals_the_batch_before_acting_on_it_or_writing(harness):
    """--action signal: the first pending record is signalled before the batch is
    read (peek), every other intercept of the batch before any of them is acted on
    or written; one the fast path cannot take (its process is gone) is left to the
    full path, which refuses it, and the others still find their pidfds."""
    comm = unique_comm()
    a, b, gone = (start_target(comm, "--cleanup-ms", "0") for _ in range(3))
    ev_gone = intercept_of(gone, comm)
    reap(gone)
    try:
        src = Records()
        h = harness(source=src)
        ev_a, ev_b = intercept_of(a, comm), intercept_of(b, comm)
        src.pending = [raw_intercept(e, start_boottime=e.start_ns) for e in (ev_a, ev_gone, ev_b)]
        seen = {}
        src.on_read = lambda: seen.setdefault("read", set(h.tracker._struck))
        h.on_write = lambda ev: seen.setdefault("write", set(h.tracker._struck))
        h.tracker.pump()
        assert seen == {"read": {(a.pid, 0)}, "write": {(b.pid, 0)}}
        assert [(e["event"], e["pid"]) for e in h.events] == [
            ("intercept", a.pid), ("signal", a.pid), ("intercept", gone.pid),
            ("refused", gone.pid), ("intercept", b.pid), ("signal", b.pid)]
        assert h.of("refused")[0]["reason"] == "exited before it could be signalled"
        assert h.tracker.counts.signalled == 2 and not h.tracker._struck
        ts = {ev.tgid: (ev, h.tracker.find(ev.tgid)) for ev in (ev_a, ev_b)}
        for e in h.of("signal"):          # from the call to the fast path's send
            ev, t = ts[e["pid"]]
            assert e["latency_us"] == tenth((t.signal_ns - ev.ktime_ns) / 1000)
        h.run(lambda: len(h.of("exit")) == 2)
        for e in h.of("exit"):
            _, t = ts[e["pid"]]
            assert e["time_to_exit_pidfd_us"] == tenth((t.exit_seen_ns - t.signal_ns) / 1000)
        assert {e["pid"] for e in h.of("exit")} == {a.pid, b.pid}
    finally:
        reap(a)
        reap(b)


def test_pump_under_report_signals_nobody_and_names_the_hooked_symbol(harness):
    """--action report: pump takes no fast path (nobody is signalled, no pidfd is
    held); a call of a kprobe/fentry hook (no syscall number) is named by the
    source's symbol."""
    comm = unique_comm()
    p = start_target(comm)
    try:
        src = Records(symbol="do_sys_openat2")
        h = harness(action="report", source=src)
        ev = intercept_of(p, comm, nr=-1)
        src.pending = [raw_intercept(ev, start_boottime=ev.start_ns)]
        h.tracker.pump()
        rec = h.of("intercept")[0]
        assert rec["symbol"] == "do_sys_openat2" and "syscall" not in rec and "nr" not in rec
        assert h.tracker.counts.reported == 1 and not h.of("signal") and not h.tracker._struck
        time.sleep(0.05)
        assert p.poll() is None
    finally:
        reap(p)


def test_pump_reads_denials_and_the_exit_record_the_pidfd_wakes_for(harness):
    """--action deny through pump, records as the kernel writes them: the intercept
    (its call denied), a later denied call, and once the process is gone its exit
    record, read when the pidfd wakes (the exit is written then, once, not after
    the grace for a late record), with the kernel's stamps: no signal stamp in the
    record, so the time to exit counts from the first denial."""
    import errno
    from rawprobe.interceptor.events import RP_F_DENIED
    from rawprobe.interceptor.tracker import EXIT_RECORD_GRACE_NS
    comm = unique_comm()
    p = start_target(comm)
    try:
        src = Records()
        h = harness(action="deny", deny_errno=errno.EPERM, source=src,
                    syscall_name={1: "write"}.get)
        ev = intercept_of(p, comm)
        src.pending = [raw_intercept(ev, start_boottime=ev.start_ns, flags=RP_F_DENIED),
                       raw_deny(ev, ev.ktime_ns + 1000, -errno.EPERM)]
        h.tracker.pump()
        assert [(e["event"], e.get("hit")) for e in h.events] == \
            [("intercept", 1), ("deny", 1), ("deny", None)]
        t = h.tracker.find(p.pid)
        p.kill()
        p.wait()
        src.pending = [raw_exit(ev, exit_ns=ev.ktime_ns + 12_345_678, code=9,
                                deliver_ns=ev.ktime_ns + 9_876_543, slipped=2, after_signal=4)]
        h.run(lambda: h.of("exit"))
        assert len(h.of("exit")) == 1
        ex = h.of("exit")[0]
        assert h.written_at(ex) - t.exit_seen_ns < EXIT_RECORD_GRACE_NS
        assert {k: ex[k] for k in ("time_to_exit_us", "signal_ktime_ns", "exit_ktime_ns",
                                   "delivery_latency_us", "deliver_ktime_ns", "slipped_calls",
                                   "calls_after_signal", "killed_by", "denied_calls")} == {
            "time_to_exit_us": 12345.7, "signal_ktime_ns": ev.ktime_ns,
            "exit_ktime_ns": ev.ktime_ns + 12_345_678, "delivery_latency_us": 9876.5,
            "deliver_ktime_ns": ev.ktime_ns + 9_876_543, "slipped_calls": 2,
            "calls_after_signal": 4, "killed_by": "SIGKILL", "denied_calls": 2}
        assert h.tracker.tte_kernel_us == [12345.7]
    finally:
        reap(p)


# -- the guard and the identity, on the full path and the fast path -----------------

def test_the_kernels_protected_flag_and_a_kernel_thread_are_refused(harness):
    """A process the kernel flagged protected (one of the tool's, as the BPF side
    sees it) or a kernel thread is refused, saying which, and never signalled,
    whatever /proc says of it."""
    comm = unique_comm()
    p = start_target(comm)
    try:
        h = harness()
        h.tracker.on_intercept(intercept_of(p, comm, protected=True))
        h.tracker.on_intercept(intercept_of(p, comm, kernel_thread=True))
        assert [e["reason"] for e in h.of("refused")] == [
            "this is rawprobe itself or one of its ancestors", "kernel thread"]
        assert not h.of("signal") and h.tracker.counts.refused == 2
        time.sleep(0.05)
        assert p.poll() is None
    finally:
        reap(p)


def test_a_boottime_stamp_must_match_exactly_and_a_pidfs_inode_is_the_identity(harness):
    """A start stamp on CLOCK_BOOTTIME is /proc's tick exactly: one ns before it is
    another process (as a monotonic stamp it would pass); where the record has the
    pidfs inode, that alone decides (the start time is not looked at)."""
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        boot = procinfo.read_stat(p.pid).starttime * procinfo.TICK_NS
        fd = pidfd.open_pidfd(p.pid)
        ino = pidfd.pid_inode(fd)
        os.close(fd)
        h = harness(kill_after_ns=60_000_000_000)
        assert h.tracker.strike_fields(p.pid, 0, 0, boot - 1, 0) == 0
        h.tracker.on_intercept(intercept_of(p, comm, start_ns=boot - 1))
        assert h.of("refused")[0]["reason"].startswith("pid reused") and not h.of("signal")
        assert h.tracker.strike_fields(p.pid, 0, 0, 0, ino) == 1       # no start time known
        h.tracker.abandon()
        h2 = harness(kill_after_ns=60_000_000_000)
        h2.tracker.on_intercept(intercept_of(p, comm, start_ns=0, start_clock="monotonic",
                                             pid_ino=ino))
        assert len(h2.of("signal")) == 1 and not h2.of("refused")
        h2.tracker.abandon()
    finally:
        reap(p)


def test_a_signal_the_kernel_refuses_is_an_error_and_holds_no_pidfd(harness):
    """pidfd_send_signal refuses the signal (EINVAL: no signal 99): the fast path
    leaves it (its pidfd closed), the full path reports an error per target, each
    counted, and nothing stays in flight."""
    from fdcheck import open_fds
    comm = unique_comm()
    procs = [start_target(comm) for _ in range(2)]
    try:
        h = harness(signal=99)
        before = open_fds()
        boot = procinfo.read_stat(procs[0].pid).starttime * procinfo.TICK_NS
        assert h.tracker.strike_fields(procs[0].pid, 0, 0, boot, 0) == 0
        assert not h.tracker._struck and open_fds() == before
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        errors = h.of("error")
        assert [e["pid"] for e in errors] == [p.pid for p in procs]
        assert all("pidfd_send_signal" in e["message"] for e in errors), errors
        assert h.tracker.counts.errors == 2 and h.tracker.counts.signalled == 0
        assert h.tracker.in_flight == 0 and open_fds() == before
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            reap(p)


def test_count_bounds_the_targets_in_flight_too(harness):
    """--count 2 with room for more in flight: two are signalled, the third waits
    (finished plus in flight never exceed the count) and is dropped when the two
    are done, never signalled."""
    comm = unique_comm()
    procs = [start_target(comm, "--cleanup-ms", "0") for _ in range(3)]
    try:
        h = harness(count=2, kill_after_ns=5_000_000_000)
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm))
        assert [e["pid"] for e in h.of("signal")] == [p.pid for p in procs[:2]]
        assert h.tracker.counts.waited == 1
        h.run(lambda: h.tracker.done)
        assert h.tracker.handled == 2 and h.tracker.counts.dropped == 1
        assert procs[2].poll() is None
    finally:
        for p in procs:
            reap(p)


def test_abandon_leaves_an_exited_target_awaiting_its_record_and_closes_struck_pidfds(harness):
    """A second interrupt while one target has exited and its kernel record is
    awaited, another is signalled, and a third was struck by the fast path but
    its intercept not yet read: the first two are left (counted, no longer
    watched), every pidfd is closed and no late exit is written."""
    from fdcheck import open_fds
    comm = unique_comm()
    quits, stays, struck = (start_target(comm, *a) for a in
                            (("--cleanup-ms", "0"), ("--ignore-term",), ("--ignore-term",)))
    try:
        h = harness(kill_after_ns=60_000_000_000, source=NoRecords())
        before = open_fds()
        for p in (quits, stays):
            h.tracker.on_intercept(intercept_of(p, comm))
        h.run(lambda: h.tracker.find(quits.pid).state == "exited")
        assert h.reactor.reader_count == 1      # its pidfd, readable for good, unwatched
        boot = procinfo.read_stat(struck.pid).starttime * procinfo.TICK_NS
        assert h.tracker.strike_fields(struck.pid, 0, 0, boot, 0) == 1
        left = h.tracker.abandon()
        assert sorted(t.ev.tgid for t in left) == sorted((quits.pid, stays.pid))
        assert h.tracker.counts.abandoned == 2 and h.tracker.in_flight == 0
        assert open_fds() == before and h.reactor.reader_count == 0
        end = now_ns() + 300_000_000                     # past the exit record's grace
        while now_ns() < end:
            h.reactor.run_once(end - now_ns())
        assert not h.of("exit")
    finally:
        for p in (quits, stays, struck):
            reap(p)


def test_a_pidfd_that_is_fd_0_is_read_and_closed(harness):
    """Started with stdin closed, the tool's first pidfd is fd 0: it is a pidfd like
    any other (no kernel record came: the exit status is read from it, once the
    process is reaped) and it is closed when the target is done."""
    comm = unique_comm()
    p = start_target(comm, "--cleanup-ms", "0", "--exit-code", "5")
    h = harness(source=NoRecords())
    try:
        saved = os.dup(0)
    except OSError:
        saved = None
    try:
        if saved is not None:
            os.close(0)
        h.tracker.on_intercept(intercept_of(p, comm))
        assert h.tracker.find(p.pid).fd == 0
        h.run(lambda: h.tracker.find(p.pid).state == "exited")
        p.wait()            # reaped within the grace for the record: the status is there
        h.run(lambda: h.of("exit"))
        assert h.of("exit")[0]["exit_code"] == 5
        assert not os.path.exists("/proc/self/fd/0")
    finally:
        if saved is not None:
            os.dup2(saved, 0)
            os.close(saved)
        reap(p)


def test_gone_after_the_kernel_signal_is_timed_from_the_kernels_send_stamp(harness):
    """Two processes the kernel signalled at the call are gone before the tool looks:
    each signal counts, and an exit record without signal stamps (the kernel's
    signal record was lost) times the exit from the intercept's own send stamp."""
    comm = unique_comm()
    procs = [start_target(comm) for _ in range(2)]
    evs = [intercept_of(p, comm, kernel_signalled=True) for p in procs]
    for p, ev in zip(procs, evs):
        ev.signal_ns = ev.ktime_ns + 1000
        reap(p)
    h = harness(action="kernel-signal", source=NoRecords())
    for ev in evs:
        h.tracker.on_intercept(ev)
    assert h.tracker.counts.signalled == 2 and not h.of("refused")
    for ev in evs:
        h.tracker.on_kernel_exit(KernelExit(tgid=ev.tgid, exit_ns=ev.signal_ns + 5000,
                                            exit_code=15, start_time=ev.start_time))
    assert [(e["pid"], e["time_to_exit_us"], e["signal_ktime_ns"]) for e in h.of("exit")] == \
        [(ev.tgid, 5.0, ev.signal_ns) for ev in evs]
    assert h.tracker.in_flight == 0


def test_the_intercept_event_says_what_the_record_has(harness):
    """The "intercept" event: the process, the calling thread, the syscall (named by
    the table where there is one, syscall 0 included) and its number, or the hooked
    symbol; the arguments, which hit, the call's buffer (bytes that are not UTF-8
    escaped), the hook, the kernel's stamp."""
    comm = unique_comm()
    p = start_target(comm)
    try:
        named = harness(action="report", syscall_name={0: "read"}.get)
        ev = intercept_of(p, comm, nr=0, data=b"call 1\n\xff", hook="raw_tp", hit=3)
        named.tracker.on_intercept(ev)
        named.tracker.on_intercept(intercept_of(p, comm, nr=-1, symbol="do_sys_openat2"))
        plain = harness(action="report")
        plain.tracker.on_intercept(intercept_of(p, comm, nr=1))
        base = {"event": "intercept", "pid": p.pid, "comm": comm, "tid": p.pid,
                "args": [1, 0, 5, 0, 0, 0]}
        assert named.events == [
            {**base, "syscall": "read", "nr": 0, "hit": 3, "data": "call 1\n\\xff",
             "hook": "raw_tp", "ktime_ns": ev.ktime_ns},
            {**base, "symbol": "do_sys_openat2", "hit": 1,
             "ktime_ns": named.events[1]["ktime_ns"]}]
        assert plain.events[0]["syscall"] == 1 and plain.events[0]["nr"] == 1
        assert named.tracker.counts.intercepted == 2
    finally:
        reap(p)


def test_a_second_record_of_a_handled_process_is_a_duplicate(harness):
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(kill_after_ns=60_000_000_000)
        ev = intercept_of(p, comm)
        for _ in range(3):
            h.tracker.on_intercept(ev)
        assert (h.tracker.counts.intercepted, h.tracker.counts.duplicates) == (3, 2)
        assert len(h.of("intercept")) == 3 and len(h.of("signal")) == 1
        h.tracker.abandon()
    finally:
        reap(p)


@pytest.mark.parametrize("action", ["kernel-signal", "deny"])
def test_what_the_kernel_acted_on_is_tracked_at_once_past_max_in_flight(harness, action):
    """The kernel signalled (or denied) each call itself: every such process is
    followed at once, --max-in-flight notwithstanding (it bounds our signals), and
    each kernel signal is counted."""
    comm = unique_comm()
    procs = [start_target(comm, "--ignore-term") for _ in range(2)]
    try:
        h = harness(action=action, max_in_flight=1, kill_after_ns=60_000_000_000)
        for p in procs:
            h.tracker.on_intercept(intercept_of(p, comm, kernel_signalled=action != "deny",
                                                denied=action == "deny"))
        assert h.tracker.in_flight == 2 and h.tracker.counts.waited == 0
        assert h.tracker.counts.signalled == (2 if action == "kernel-signal" else 0)
        h.tracker.abandon()
    finally:
        for p in procs:
            reap(p)


def test_out_of_file_descriptors_is_an_error_that_says_so(harness):
    """No fd left for the pidfd (RLIMIT_NOFILE reached, as with thousands of targets
    in flight): that target is an "error" naming the failed call and its errno, not
    a refusal or a crash; with fds again the next one is signalled."""
    import resource
    comm = unique_comm()
    a, b = (start_target(comm, "--cleanup-ms", "0") for _ in range(2))
    try:
        h = harness(kill_after_ns=5_000_000_000)
        ev_a, ev_b = intercept_of(a, comm), intercept_of(b, comm)
        free = os.dup(2)                     # the lowest free fd number
        os.close(free)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
        try:
            h.tracker.on_intercept(ev_a)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        h.tracker.on_intercept(ev_b)
        assert [(e["pid"], e["message"]) for e in h.of("error")] == \
            [(a.pid, "pidfd_open failed: EMFILE (Too many open files)")]
        assert h.tracker.counts.errors == 1 and not h.of("refused")
        assert [e["pid"] for e in h.of("signal")] == [b.pid]
        h.run(lambda: h.of("exit"))
        assert a.poll() is None
    finally:
        reap(a)
        reap(b)


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as another user")
def test_another_users_process_without_cap_kill_is_refused_not_signalled(harness):
    """The tool without CAP_KILL (dropped from this thread's effective set, where
    the tracker runs) and a process of another user: the kernel refuses the signal
    (EPERM), the target is refused saying what is missing, and lives on."""
    import ctypes
    import threading
    from rawprobe.caps import CAP_KILL
    from rawprobe.interceptor.tracker import NOT_PERMITTED
    libc = ctypes.CDLL(None, use_errno=True)
    p = subprocess.Popen(["/bin/sleep", "30"], user=65534, group=65534)
    try:
        h = harness()
        st = procinfo.read_stat(p.pid)
        ev = Intercept(tgid=p.pid, pid=p.pid, comm=st.comm, ktime_ns=now_ns(),
                       start_ns=st.starttime * procinfo.TICK_NS, start_clock="boottime")
        failed = []

        def without_cap_kill():
            # capget/capset(2), _LINUX_CAPABILITY_VERSION_3: a header and two
            # (effective, permitted, inheritable) words; capabilities are per thread
            hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
            data = (ctypes.c_uint32 * 6)()
            if libc.capget(hdr, data) or not data[0] >> CAP_KILL & 1:
                failed.append(ctypes.get_errno() or "no CAP_KILL to drop")
                return
            data[0] &= ~(1 << CAP_KILL)
            if libc.capset(hdr, data):
                failed.append(ctypes.get_errno())
                return
            try:
                h.tracker.on_intercept(ev)
            except BaseException as e:       # seen by the test, not lost in the thread
                failed.append(e)
        th = threading.Thread(target=without_cap_kill)
        th.start()
        th.join()
        assert not failed, failed
        assert [(e["pid"], e["reason"]) for e in h.of("refused")] == [(p.pid, NOT_PERMITTED)]
        assert "CAP_KILL" in NOT_PERMITTED and not h.of("signal")
        assert h.tracker.counts.refused == 1 and h.tracker.in_flight == 0
        time.sleep(0.05)
        assert p.poll() is None
    finally:
        reap(p)


def test_buffered_events_are_written_at_the_flush_in_order(harness):
    """buffered (the CLI's loop): a record's events are kept while acting on it and
    written, in order, at ``flush()``."""
    comm = unique_comm()
    p = start_target(comm, "--ignore-term")
    try:
        h = harness(buffered=True, kill_after_ns=60_000_000_000)
        h.tracker.on_intercept(intercept_of(p, comm))
        assert h.events == [] and h.tracker.counts.signalled == 1
        h.tracker.flush()
        assert [e["event"] for e in h.events] == ["intercept", "signal"]
        h.tracker.abandon()
    finally:
        reap(p)


def test_after_stop_only_what_the_kernel_acted_on_is_followed(harness):
    """Stopped (count reached, duration over, interrupted): new intercepts are
    dropped and counted, never signalled; one the kernel already signalled is still
    followed to its exit."""
    comm = unique_comm()
    procs = [start_target(comm, "--ignore-term") for _ in range(3)]
    try:
        h = harness(action="kernel-signal", kill_after_ns=60_000_000_000)
        h.tracker.stop()
        for p in procs[:2]:
            h.tracker.on_intercept(intercept_of(p, comm))
        assert h.tracker.counts.dropped == 2 and h.tracker.in_flight == 0
        h.tracker.on_intercept(intercept_of(procs[2], comm, kernel_signalled=True))
        assert h.tracker.in_flight == 1 and h.tracker.counts.dropped == 2
        assert all(p.poll() is None for p in procs)
        h.tracker.abandon()
    finally:
        for p in procs:
            reap(p)


def test_report_counts_each_call_and_stops_at_the_count(harness):
    comm = unique_comm()
    p = start_target(comm)
    try:
        h = harness(action="report", count=3)
        for n in (1, 2):
            h.tracker.on_intercept(intercept_of(p, comm))
            assert (h.tracker.counts.reported, h.tracker.handled) == (n, n)
            assert not h.tracker.done
        h.tracker.on_intercept(intercept_of(p, comm))
        assert h.tracker.done and h.tracker.counts.reported == 3
        unbounded = harness(action="report")
        unbounded.tracker.on_intercept(intercept_of(p, comm))
        assert unbounded.tracker.counts.reported == 1 and not unbounded.tracker.done
    finally:
        reap(p)
