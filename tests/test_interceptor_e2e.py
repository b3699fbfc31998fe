"""End to end on this kernel: ``python -m rawprobe watch`` against real target processes.

Each test checks the JSON events the tool wrote.  Targets have unique comms.  These
need root and the loader; the kprobe/fentry hooks need the VM (``make vmtest``).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import Target, Watch, targets, unique_comm  # noqa: E402,F401


def _loader_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (BPF and signals)"
    try:
        import rawprobe
        rawprobe.ObjectSpec, rawprobe.Collection, rawprobe.RingBuffer  # noqa: B018
    except (ImportError, AttributeError) as e:
        return f"the loader is not available yet: {e}"
    from rawprobe.interceptor.probe import object_path
    try:
        object_path()
    except Exception as e:  # noqa: BLE001
        return f"no prebuilt intercept.bpf.o: {e}"
    return None


pytestmark = pytest.mark.skipif(_loader_missing() is not None, reason=str(_loader_missing()))


AGREE_US = 10_000


def test_cleanup_time_is_measured_in_kernel_and_by_pidfd(targets):
    """The target cleans up for 150 ms after SIGTERM and reports, on its own clock
    (CLOCK_MONOTONIC, the kernel's too), when its handler ran and when it called
    exit.  The kernel's time to exit (signal generated -> last thread exits) must be
    within 2 ms of what the target says it did (on a quiet machine that is 150 ms; the
    target's own timestamps keep the check exact when other jobs load the machine).
    The pidfd's measure must agree with the kernel's within AGREE_US: it also covers
    the process's memory teardown (after sched_process_exit on 6.16+ kernels) and the
    tool's own wake-up, both at the mercy of the scheduler (1-2 ms apart on a quiet
    machine, 6-8 ms at a load average of 9 on 2 cores), so that one gets up to 3 runs."""
    runs = []
    for _ in range(3):
        comm = unique_comm()
        t = targets(comm, "--cleanup-ms", "150", "--exit-code", "5", report=True)
        w = Watch("--comm", comm, "--count", "1", "--kill-after", "3s")
        t.go()
        assert w.finish() == 0, w.stderr
        ex = w.of("exit", t.pid)[0]
        t_in, t_out = t.own_times()
        assert t_out - t_in >= 150_000_000
        truth_us = (t_out - ex["signal_ktime_ns"]) / 1000      # signal -> exit call
        assert truth_us - 50 <= ex["time_to_exit_us"] <= truth_us + 2_000, (truth_us, ex)
        assert ex["escalated"] is False and ex["exit_code"] == 5
        sig = w.of("signal", t.pid)[0]
        assert sig["signal"] == "SIGTERM" and sig["latency_us"] > 0
        ic = w.of("intercept", t.pid)[0]
        assert ic["syscall"] == "write" and ic["hit"] == 1 and ic["data"] == "call 1\n"
        assert ic["comm"] == comm and len(ic["args"]) == 6
        assert w.summary()["counts"]["exited"] == 1
        runs.append((ex["time_to_exit_us"], ex["time_to_exit_pidfd_us"]))
        if abs(runs[-1][0] - runs[-1][1]) < AGREE_US:
            return
    pytest.fail(f"kernel and pidfd measures (us) never agreed within {AGREE_US} us: {runs}")


def test_ignored_sigterm_is_escalated_at_the_deadline(targets):
    comm = unique_comm()
    t = targets(comm, "--ignore-term")
    w = Watch("--comm", comm, "--count", "1", "--kill-after", "300ms")
    t.go()
    assert w.finish() == 0, w.stderr
    assert w.of("escalate", t.pid)[0]["signal"] == "SIGKILL"
    ex = w.of("exit", t.pid)[0]
    assert ex["escalated"] is True and ex["killed_by"] == "SIGKILL"
    assert 300_000 <= ex["time_to_exit_pidfd_us"] < 400_000


@pytest.mark.parametrize("mode", ["per-process", "global"])
def test_skip_count_is_exact(targets, mode):
    comm = unique_comm()
    a = targets(comm, "--writes", "2", "--interval-ms", "2")
    b = targets(comm, "--writes", "10", "--interval-ms", "2")
    extra = ["--global-skip"] if mode == "global" else []
    w = Watch("--comm", comm, "--skip", "3", "--count", "1", *extra)
    a.go()
    a.wait_writes_done()            # a's 2 calls are all let through
    b.go()
    assert w.finish() == 0, w.stderr
    ic = w.of("intercept")
    assert [e["pid"] for e in ic] == [b.pid]
    assert ic[0]["hit"] == 4
    # per process: b's own 4th call; global: the 4th call in all, b's 2nd
    assert ic[0]["data"] == ("call 4\n" if mode == "per-process" else "call 2\n")
    assert a.alive()


def test_comm_filter_is_exact(targets):
    comm = unique_comm()
    other = targets(comm[:-1], "--writes", "5")      # a prefix of the name
    longer = targets(comm[:-1] + "zz", "--writes", "5")
    t = targets(comm)
    w = Watch("--comm", comm, "--count", "1")
    other.go()
    longer.go()
    t.go()
    assert w.finish() == 0, w.stderr
    assert {e["pid"] for e in w.of("intercept")} == {t.pid}
    assert other.alive() and longer.alive()


def test_the_tool_never_signals_itself(targets):
    comm = unique_comm()
    t = targets(comm)
    # the tool runs under the same comm and writes JSON lines all along
    w = Watch("--comm", comm, "--count", "1", comm=comm)
    t.go()
    assert w.finish() == 0, w.stderr
    assert {e["pid"] for e in w.of("intercept")} == {t.pid}
    assert not w.of("refused")


def test_report_signals_nobody(targets):
    comm = unique_comm()
    t = targets(comm, "--writes", "3")
    w = Watch("--comm", comm, "--action", "report", "--count", "1")
    t.go()
    assert w.finish() == 0, w.stderr
    assert w.of("intercept", t.pid) and not w.of("signal") and not w.of("exit")
    time.sleep(0.05)
    assert t.alive()


def test_kernel_signal_lets_no_call_slip(targets):
    comm = unique_comm()
    t = targets(comm, "--writes", "100000", "--cleanup-ms", "20")  # writes as fast as it can
    w = Watch("--comm", comm, "--action", "kernel-signal", "--count", "1")
    t.go()
    assert w.finish() == 0, w.stderr
    ex = w.of("exit", t.pid)[0]
    assert ex["slipped_calls"] == 0, ex
    assert w.of("signal", t.pid)[0]["by"] == "kernel"


def test_kernel_signal_escalates_a_target_that_ignores_it(targets):
    # An ignored signal is never delivered and the target lives on: nothing in the
    # kernel wakes the tool (intercept.bpf.c, "Wake-ups"); its periodic look at the
    # ring must find the target in time for the deadline.
    comm = unique_comm()
    t = targets(comm, "--ignore-term")
    w = Watch("--comm", comm, "--action", "kernel-signal", "--count", "1",
              "--kill-after", "300ms")
    t.go()
    assert w.finish() == 0, w.stderr
    assert w.of("escalate", t.pid)[0]["signal"] == "SIGKILL"
    ex = w.of("exit", t.pid)[0]
    assert ex["escalated"] is True and ex["killed_by"] == "SIGKILL"
    assert 300_000 <= ex["time_to_exit_us"] < 400_000, ex


def test_two_hundred_targets_at_once(targets):
    comm = unique_comm()
    swarm = targets(comm, "--forks", "200", "--cleanup-ms", "5")
    w = Watch("--comm", comm, "--count", "200", "--kill-after", "5s", timeout=60)
    swarm.go()
    assert w.finish() == 0, w.stderr
    exits = w.of("exit")
    assert len({e["pid"] for e in exits}) == 200
    s = w.summary()["counts"]
    assert s["intercepted"] == 200 and s["exited"] == 200 and s["lost"] == 0
    assert not w.of("refused") and not w.of("error")


def test_a_reused_pid_is_not_signalled(targets):
    from setpid import spawn_with_pid
    comm = unique_comm()
    blocker = targets(comm, "--ignore-term")
    victim = targets(comm, "--linger-s", "0")            # writes once, then exits by itself
    w = Watch("--comm", comm, "--max-in-flight", "1", "--kill-after", "1s", "--count", "2")
    blocker.go()
    deadline = time.monotonic() + 5
    while not w.events or not any(e["event"] == "signal" for e in w.events):
        w._until("signal")
        assert time.monotonic() < deadline
    victim.go()                  # intercepted, but waits: the blocker holds the only slot
    victim.p.wait(timeout=5)     # ... exits, and is reaped here
    other = spawn_with_pid(victim.pid, ["/bin/sleep", "30"])   # the same pid, another process
    try:
        for _ in range(200):      # until it has exec'd: a pid of a live, different process
            if open(f"/proc/{other}/comm").read().strip() == "sleep":
                break
            time.sleep(0.005)
        assert w.finish() == 0, w.stderr
        # its exit record came while it waited: it is finished as exited, and the
        # process now holding its pid is never looked at
        refused = w.of("refused", victim.pid)
        assert [r["reason"] for r in refused] == ["exited before it could be signalled"], \
            w.events
        assert not w.of("signal", victim.pid)
        os.kill(other, 0)        # still alive: never signalled
        assert w.summary()["counts"]["waited"] == 1
    finally:
        os.kill(other, signal.SIGKILL)
        os.waitpid(other, 0)


@pytest.mark.vm("kprobes")
def test_kprobe_with_offset(targets):
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "10")
    # A kprobe must sit on an instruction boundary: ksys_write's first instruction is
    # endbr64 (4 bytes) with IBT, or the 5-byte ftrace call; try those boundaries.
    w, errors = None, []
    for off in (4, 5, 9, 8):
        try:
            w = Watch("--comm", comm, "--kprobe", f"ksys_write+{off:#x}", "--count", "1")
            break
        except AssertionError as e:
            errors.append(str(e)[:300])
    assert w is not None, errors
    assert w.armed["hook"].startswith("kprobe ksys_write+0x")
    t.go()
    assert w.finish() == 0, w.stderr
    ic = w.of("intercept", t.pid)[0]
    assert ic["symbol"].startswith("ksys_write+0x") and "syscall" not in ic
    assert w.of("exit", t.pid)[0]["escalated"] is False


@pytest.mark.vm("fentry")
def test_fentry_hook(targets):
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "10")
    w = Watch("--comm", comm, "--kprobe", "ksys_write", "--hook", "fentry", "--count", "1")
    assert w.armed["hook"] == "fentry ksys_write"
    t.go()
    assert w.finish() == 0, w.stderr
    ic = w.of("intercept", t.pid)[0]
    assert ic["hook"] == "fentry" and ic["data"] == "call 1\n"   # ksys_write(fd, buf, count)
    assert w.of("exit", t.pid)


def test_pid_filter_selects_only_that_process(targets):
    comm = unique_comm()
    a = targets(comm, "--writes", "5")
    b = targets(comm, "--writes", "5")
    w = Watch("--pid", str(b.pid), "--count", "1")
    a.go()
    b.go()
    assert w.finish() == 0, w.stderr
    assert {e["pid"] for e in w.of("intercept")} == {b.pid}
    assert a.alive()


def test_uid_filter_selects_by_real_uid(targets):
    comm = unique_comm()
    root = targets(comm, "--writes", "5")
    nobody = targets(comm, "--writes", "5", real_uid=65534)
    assert open(f"/proc/{nobody.pid}/status").read().count("65534") == 1   # Uid: real only
    w = Watch("--comm", comm, "--uid", "65534", "--count", "1")
    root.go()
    root.wait_writes_done()
    nobody.go()
    assert w.finish() == 0, w.stderr
    assert {e["pid"] for e in w.of("intercept")} == {nobody.pid}
    assert root.alive()


def test_cgroup_filter_selects_its_members(targets):
    mounts = [ln.split()[1] for ln in open("/proc/self/mounts") if ln.split()[2] == "cgroup2"]
    if not mounts:
        pytest.skip("no cgroup2 mount")
    group = os.path.join(mounts[0], unique_comm())
    try:
        os.mkdir(group)
    except OSError as e:
        pytest.skip(f"cannot create a cgroup under {mounts[0]}: {e.strerror}")
    comm = unique_comm()
    inside = targets(comm, "--writes", "5")
    outside = targets(comm, "--writes", "5")
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(inside.pid))
        w = Watch("--cgroup", group, "--count", "1")
        outside.go()
        inside.go()
        assert w.finish() == 0, w.stderr
        assert {e["pid"] for e in w.of("intercept")} == {inside.pid}
        assert outside.alive()
    finally:
        inside.kill()
        outside.kill()
        os.rmdir(group)


def test_per_syscall_tracepoint_hook(targets):
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "5")
    w = Watch("--comm", comm, "--hook", "tracepoint", "--count", "1")
    assert w.armed["hook"] == "tracepoint syscalls/sys_enter_write"
    t.go()
    assert w.finish() == 0, w.stderr
    ic = w.of("intercept", t.pid)[0]
    assert ic["hook"] == "tracepoint" and ic["data"] == "call 1\n"
    assert ic["args"][2] == len("call 1\n") and ic["args"][3:] == [0, 0, 0]   # write has 3
    assert w.of("exit", t.pid)[0]["exit_code"] == 0
