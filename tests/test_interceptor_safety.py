"""The interceptor never surprises: what it signals, what it refuses, what it reports
when it is interrupted or the kernel drops records.

End to end on this kernel with real targets under unique names (tests/targets);
only processes these tests started are ever signalled.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import SLOW, Watch, targets, unique_comm  # noqa: E402,F401

TARGET = str(Path(__file__).parent / "targets" / "target.py")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF and signals)")


def wait_event(w: Watch, kind: str, pid: int | None = None) -> dict:
    """Read events until one of ``kind`` (for ``pid``) has come."""
    while True:
        ev = w._until(kind)
        if pid is None or ev.get("pid") == pid:
            return ev


# -- interrupted: exit status, escalation, what was left ---------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_watch_exits_128_plus_the_signal(sig):
    w = Watch("--comm", unique_comm())
    time.sleep(0.1)
    w.p.send_signal(sig)
    assert w.finish() == 128 + sig, w.stderr
    s = w.summary()
    assert s["counts"]["intercepted"] == 0 and s["interrupted_by"] == sig.name
    assert "summary:" in w.stderr          # the text summary goes to stderr with --json


@pytest.mark.parametrize("action", ["signal", "kernel-signal"])
def test_an_interrupt_still_escalates_the_targets_already_signalled(targets, action):
    comm = unique_comm()
    t = targets(comm, "--ignore-term")
    w = Watch("--comm", comm, "--action", action, "--kill-after", "500ms")
    t.go()
    wait_event(w, "signal", t.pid)
    w.p.send_signal(signal.SIGINT)
    assert w.finish() == 130, w.stderr
    assert w.of("interrupted")[0]["in_flight"] == 1
    assert w.of("escalate", t.pid)[0]["signal"] == "SIGKILL"
    assert w.of("exit", t.pid)[0]["killed_by"] == "SIGKILL"
    t.p.wait(timeout=5 * SLOW)
    assert t.p.returncode == -signal.SIGKILL
    s = w.summary()
    assert s["counts"]["abandoned"] == 0 and "left_in_flight" not in s
    assert "interrupted by SIGINT" in w.stderr        # said on stderr as it happens


def test_a_second_interrupt_leaves_at_once_and_says_what_was_left(targets):
    comm = unique_comm()
    t = targets(comm, "--ignore-term")
    w = Watch("--comm", comm, "--kill-after", "60s")
    t.go()
    wait_event(w, "signal", t.pid)
    w.p.send_signal(signal.SIGINT)
    wait_event(w, "interrupted")
    t0 = time.monotonic()
    w.p.send_signal(signal.SIGINT)
    assert w.finish() == 130, w.stderr
    assert time.monotonic() - t0 < 10 * SLOW
    assert w.of("abandoned")[0]["pids"] == [t.pid]
    s = w.summary()
    assert s["counts"]["abandoned"] == 1
    assert [x["pid"] for x in s["left_in_flight"]] == [t.pid]
    assert t.alive()                       # a tool told to leave does not SIGKILL it


def test_an_interrupt_without_a_deadline_leaves_at_once(targets):
    comm = unique_comm()
    t = targets(comm, "--ignore-term")
    w = Watch("--comm", comm, "--kill-after", "0")
    t.go()
    wait_event(w, "signal", t.pid)
    w.p.send_signal(signal.SIGTERM)
    assert w.finish() == 128 + signal.SIGTERM, w.stderr
    ab = w.of("abandoned")[0]
    assert ab["pids"] == [t.pid] and "--kill-after 0" in ab["reason"]
    assert t.alive()


# -- identity: (pid, start time), never the pid alone --------------------------------

@pytest.mark.parametrize("action", ["signal", "kernel-signal"])
def test_a_queued_target_whose_pid_is_reused_leaves_the_new_process_a_target(targets,
                                                                              action):
    """A writes and exits while it waits for the only slot; B then gets A's pid and
    the same name and writes: A is finished as exited, B is a new target, signalled
    once the slot is free (never dropped as a duplicate of A)."""
    from setpid import spawn_with_pid
    comm = unique_comm()
    blocker = targets(comm, "--ignore-term")
    a = targets(comm, "--linger-s", "0")                 # writes once, exits by itself
    w = Watch("--comm", comm, "--action", action, "--max-in-flight", "1",
              "--kill-after", "1s", "--count", "3")
    blocker.go()
    wait_event(w, "signal", blocker.pid)
    a.go()
    a.p.wait(timeout=5 * SLOW)                           # exited and reaped
    b = spawn_with_pid(a.pid, [sys.executable, "-S", TARGET, "--comm", comm,
                               "--exit-code", "9", "--linger-s", "30"])
    try:
        assert w.finish() == 0, w.stderr
        refused = w.of("refused", a.pid)
        assert [r["reason"] for r in refused] == ["exited before it could be signalled"]
        assert len(w.of("intercept", a.pid)) == 2        # A's call, then B's
        sig = w.of("signal", b)
        assert len(sig) == 1 and sig[0].get("by") != "kernel"   # over the kernel's limit
        assert w.of("exit", b)[0]["exit_code"] == 9
        _, status = os.waitpid(b, 0)
        assert os.waitstatus_to_exitcode(status) == 9    # B took the SIGTERM and left
        assert w.summary()["counts"]["duplicates"] == 0
    finally:
        try:
            os.kill(b, signal.SIGKILL)
            os.waitpid(b, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_a_pid_filter_is_bound_to_the_process_named(targets):
    """--pid names a process, not a number: once it has exited, a process that reuses
    its pid is not watched."""
    from setpid import spawn_with_pid
    comm = unique_comm()
    a = targets(comm)
    w = Watch("--pid", str(a.pid), "--action", "report", "--duration", "1500ms")
    a.kill()
    b = spawn_with_pid(a.pid, [sys.executable, "-S", TARGET, "--comm", comm,
                               "--writes", "20", "--interval-ms", "20", "--linger-s", "30"])
    try:
        assert w.finish() == 0, w.stderr
        assert not w.of("intercept"), w.events
    finally:
        os.kill(b, signal.SIGKILL)
        os.waitpid(b, 0)


@pytest.mark.vm      # also before 6.9, where the guard compares start times, not pidfs inodes
@pytest.mark.skipif(not os.path.exists("/proc/self/timens_offsets"),
                    reason="the kernel has no time namespaces (CONFIG_TIME_NS, 5.6+)")
def test_a_pid_filter_holds_when_the_tool_runs_in_a_time_namespace(targets):
    """In a time namespace /proc shifts every start time by the namespace's boot
    offset (a container CRIU restored has one); the kernel's stamps are not shifted.
    The --pid binding must compare in one frame, or the named process is never
    watched."""
    comm = unique_comm()
    t = targets(comm)
    w = Watch("--pid", str(t.pid), "--action", "signal", "--count", "1",
              run_as=["unshare", "--time", "--boottime", "86400", "--monotonic", "3600",
                      "--fork", "--kill-child"])
    t.go()
    assert w.finish() == 0, w.stderr
    # the kernel's filter let the call through, and the tool's guard signalled it
    assert [e["comm"] for e in w.of("intercept", t.pid)] == [comm]
    assert w.of("signal", t.pid) and w.of("exit", t.pid), w.events


def build_compat_pair(tmp_path: Path, name: str) -> tuple[str, str]:
    """tests/targets/compat_write.c built 64-bit and 32-bit, both named ``name`` (so
    both run under that comm)."""
    import platform
    import shutil
    if platform.machine() != "x86_64":
        pytest.skip("32-bit (ia32) syscalls are an x86-64 matter")
    cc = shutil.which("clang-19") or shutil.which("clang")
    if cc is None:
        pytest.skip("needs clang to build the 32-bit target (CI installs clang-19)")
    src = Path(__file__).parent / "targets" / "compat_write.c"
    out = []
    for bits in ("64", "32"):
        exe = tmp_path / bits / name
        exe.parent.mkdir()
        subprocess.run([cc, f"-m{bits}", "-nostdlib", "-static", "-ffreestanding", "-O1",
                        "-o", str(exe), str(src)], check=True, capture_output=True)
        out.append(str(exe))
    try:
        subprocess.run([out[1]], check=True, capture_output=True)
    except OSError as e:
        pytest.skip(f"this kernel runs no 32-bit programs (ia32 emulation off): {e}")
    return out[0], out[1]


@pytest.mark.parametrize("hook", ["raw_tp", "tracepoint",
                                  pytest.param("kprobe", marks=pytest.mark.vm("kprobes")),
                                  pytest.param("fentry", marks=pytest.mark.vm("fentry"))])
def test_a_32_bit_caller_is_never_taken_for_the_named_syscall(tmp_path, hook):
    """A 32-bit process's syscall numbers are the ia32 table's: its exit() is 1,
    write's number on x86-64.  Neither hook may take it for write (raw_tp did, and
    signalled 32-bit processes as they exited); the 64-bit twin's write is taken.
    (kprobe and fentry hook __x64_sys_write, which a 32-bit write never enters.)"""
    comm = unique_comm()
    prog64, prog32 = build_compat_pair(tmp_path, comm)
    w = Watch("--comm", comm, "--syscall", "write", "--hook", hook, "--action", "report",
              "--duration", "3s")
    p32 = subprocess.Popen([prog32], stdout=subprocess.DEVNULL)
    p64 = subprocess.Popen([prog64], stdout=subprocess.DEVNULL)
    assert (p32.wait(), p64.wait()) == (0, 0)
    assert w.finish() == 0, w.stderr
    assert [e["pid"] for e in w.of("intercept")] == [p64.pid], w.events


# -- the default: the kernel signals at the call, within the tool's limits ----------

def test_the_default_action_is_the_kernel_signal_and_no_call_slips(targets):
    comm = unique_comm()
    t = targets(comm, "--writes", "100000", "--cleanup-ms", "20")   # writes flat out
    w = Watch("--comm", comm, "--count", "1")
    assert w.armed["action"].startswith("kernel-signal")
    assert w.armed["action_reason"].startswith("auto")
    t.go()
    assert w.finish() == 0, w.stderr
    assert w.of("signal", t.pid)[0]["by"] == "kernel"
    assert w.of("exit", t.pid)[0]["slipped_calls"] == 0


def test_kernel_signal_never_signals_more_than_count(targets):
    """Two targets write at once: the kernel signals one (--count 1), the other is
    left alone even though its calls came before the tool could detach."""
    comm = unique_comm()
    one = targets(comm, "--writes", "100000", "--interval-ms", "1")
    two = targets(comm, "--writes", "100000", "--interval-ms", "1")
    w = Watch("--comm", comm, "--action", "kernel-signal", "--count", "1")
    one.go()
    two.go()
    assert w.finish() == 0, w.stderr
    signalled = {e["pid"] for e in w.of("signal")}
    assert len(signalled) == 1, w.events
    alive = [t for t in (one, two) if t.alive()]
    assert len(alive) == 1 and alive[0].pid not in signalled


# -- the kernel's drop counters ------------------------------------------------------

def test_drop_counters_are_read_and_reported_as_they_happen():
    """The .bss counters are read for real (the old code read them as 0 always)
    and a rise becomes a "lost" event at the next pump, not only in the summary."""
    from rawprobe.interceptor.options import parse_watch
    from rawprobe.interceptor.probe import Probe
    from rawprobe.interceptor.reactor import Reactor
    from rawprobe.interceptor.tracker import Tracker, TrackerConfig
    o = parse_watch(["--comm", unique_comm(), "--action", "report"])
    probe = Probe(o, "report")
    events: list[dict] = []
    try:
        probe.open()
        assert probe.missed() == (0, 0)
        tracker = Tracker(Reactor(), events.append, TrackerConfig(action="report"),
                          source=probe)
        probe.coll.variables["lost_events"].set(7)     # .bss, as the kernel counts
        probe.coll.variables["handled_full"].set(2)
        assert probe.missed() == (7, 2)
        tracker.pump()
        lost = [e for e in events if e["event"] == "lost"]
        assert [(e.get("records"), e.get("processes"), e["total"]) for e in lost] == \
            [(7, None, 7), (None, 2, 2)]
        tracker.pump()                                  # reported once, not again
        assert len([e for e in events if e["event"] == "lost"]) == 2
        assert tracker.counts.lost == 7 and tracker.counts.not_handled == 2
    finally:
        probe.close()



SWARM = r"""
import os, sys
comm, n = sys.argv[1].encode(), int(sys.argv[2])
out = os.open('/dev/null', os.O_WRONLY)
for _ in range(n):
    if os.fork() == 0:
        with open('/proc/thread-self/comm', 'wb') as f:   # set before the watched call
            f.write(comm)
        os.write(out, b'x')
        os._exit(0)
    os.wait()
"""


def test_records_the_kernel_drops_are_reported_at_once_and_in_the_exit_status():
    """The tool is stopped while 300 processes of the watched name write into a
    16 KiB ring (room for about 45 of them): when it runs again it says so at once
    (a "lost" event and a stderr line), counts them, and exits 3."""
    comm = unique_comm()
    w = Watch("--comm", comm, "--action", "report", "--ring-size", "16K",
              "--duration", "6s")
    os.kill(w.p.pid, signal.SIGSTOP)
    try:
        subprocess.run([sys.executable, "-S", "-c", SWARM, comm, "300"], check=True,
                       timeout=120 * SLOW)
    finally:
        os.kill(w.p.pid, signal.SIGCONT)
    wait_event(w, "lost")
    assert w.p.poll() is None          # said while the watch goes on, not at its end
    assert w.finish() == 3, w.stderr
    lost = w.of("lost")
    assert lost and lost[0]["records"] > 0, w.events
    s = w.summary()["counts"]
    assert s["lost"] == sum(e["records"] for e in lost if "records" in e)
    assert s["intercepted"] + s["lost"] >= 300 and s["intercepted"] < 300
    assert "rawprobe: LOST" in w.stderr
