"""Argument parsing, the syscall table, the event decoders, output and summary: pure code."""
from __future__ import annotations

import io
import json
import os
import signal
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rawprobe.errors import RawprobeError
from rawprobe.interceptor import events, output, procinfo, summary, syscalls
from rawprobe.interceptor.options import (UsageError, parse_duration, parse_kprobe,
                                          parse_signal, parse_watch, signal_name)


# -- durations, signals, kprobe targets ----------------------------------------------

@pytest.mark.parametrize("text,ns", [("300ms", 300_000_000), ("2s", 2_000_000_000),
                                     ("1.5s", 1_500_000_000), ("1m", 60_000_000_000),
                                     ("0", 0), (" 10ms ", 10_000_000), (".5s", 500_000_000)])
def test_durations(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["2", "2h", "ms", "-1s", "1e3ms", "", "2 s s"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text)


@given(st.text(max_size=12))
def test_duration_garbage_raises_only_usage_errors(text):
    try:
        assert parse_duration(text) >= 0
    except UsageError:
        pass


@pytest.mark.parametrize("text,n", [("TERM", 15), ("SIGTERM", 15), ("sigkill", 9), ("15", 15),
                                    ("usr1", signal.SIGUSR1), ("RTMIN+2", signal.SIGRTMIN + 2),
                                    ("SIGRTMAX", signal.SIGRTMAX)])
def test_signals(text, n):
    assert parse_signal(text) == n


@pytest.mark.parametrize("text", ["0", "65", "FOO", "SIG", "", "RTMIN+x"])
def test_bad_signals(text):
    with pytest.raises(UsageError):
        parse_signal(text)


def test_signal_names():
    assert signal_name(15) == "SIGTERM"
    assert signal_name(signal.SIGRTMIN + 1) == "SIGRTMIN+1"


def test_kprobe_targets():
    assert parse_kprobe("ksys_write") == ("ksys_write", 0)
    assert parse_kprobe("do_sys_openat2+0x1a") == ("do_sys_openat2", 26)
    assert parse_kprobe("vfs_write+16") == ("vfs_write", 16)
    for bad in ("", "+4", "a+b", "x y", "f+0xz"):
        with pytest.raises(UsageError):
            parse_kprobe(bad)


# -- the watch command line -----------------------------------------------------------

def test_watch_defaults_and_values():
    o = parse_watch(["--comm", "java", "--skip", "3", "--kill-after", "300ms",
                     "--count", "2", "--duration", "10s", "--json"])
    assert (o.comm, o.syscall, o.skip, o.signal, o.kill_after_ns) == ("java", "write", 3, 15, 300_000_000)
    assert (o.count, o.duration_ns, o.json, o.action, o.hook) == (2, 10_000_000_000, "-", "signal", "auto")
    o = parse_watch(["--pid", "5,6", "--pid", "7", "--syscall", "__x64_sys_openat",
                     "--global-skip", "--action", "kernel-signal", "--json", "out.jsonl"],
                    arch="x86_64")
    assert o.pids == (5, 6, 7) and o.syscall == "openat" and o.syscall_nr == 257
    assert o.skip_global and o.json == "out.jsonl"
    o = parse_watch(["--action", "report", "--kprobe", "ksys_write+0x10"])
    assert (o.kprobe, o.kprobe_offset, o.syscall) == ("ksys_write", 16, None)
    assert not o.busy_poll
    assert parse_watch(["--comm", "x", "--busy-poll"]).busy_poll          # the fast parser
    assert parse_watch(["--comm", "x", "--busy"]).busy_poll               # argparse (prefix)


@pytest.mark.parametrize("argv", [
    [],                                               # no filter, would signal everyone
    ["--comm", "x", "--bogus"],
    ["--comm", "a" * 16],
    ["--comm", "x", "--syscall", "wrte"],
    ["--comm", "x", "--hook", "uprobe"],
    ["--comm", "x", "--action", "kill"],
    ["--comm", "x", "--skip", "-1"],
    ["--comm", "x", "--max-in-flight", "0"],
    ["--comm", "x", "--count", "0"],
    ["--comm", "x", "--duration", "0"],
    ["--comm", "x", "--kprobe", "f", "--syscall", "write"],
    ["--comm", "x", "--kprobe", "f+4", "--hook", "fentry"],
    ["--comm", "x", "--kprobe", "f", "--hook", "raw_tp"],
    ["--comm", "x", "--pid", "0"],
    ["--comm", "x", "--uid", "no_such_user_rawprobe"],
    ["--comm", "x", "--cgroup", "/nonexistent"],
])
def test_watch_rejects_with_one_line(argv):
    with pytest.raises(UsageError) as ei:
        parse_watch(argv)
    assert "\n" not in str(ei.value) and str(ei.value)


@given(st.lists(st.sampled_from(["--comm", "x", "--skip", "3", "--pid", "-1", "--signal",
                                 "--kill-after", "2s", "--hook", "kprobe", "--json", "zz",
                                 "--count", "0", "--kprobe", "f+1", "--syscall", "read"]),
                max_size=8))
def test_watch_garbage_raises_only_usage_errors(argv):
    try:
        parse_watch(argv)
    except UsageError:
        pass


# -- syscalls ----------------------------------------------------------------------------

def test_syscall_table_basics():
    assert syscalls.resolve("write", "x86_64") == ("write", 1)
    assert syscalls.resolve("write", "aarch64") == ("write", 64)
    assert syscalls.resolve("sys_openat", "aarch64") == ("openat", 56)
    assert syscalls.resolve("__arm64_sys_write", "aarch64") == ("write", 64)
    assert syscalls.resolve("newfstat", "x86_64") == ("fstat", 5)
    assert syscalls.resolve("0", "x86_64") == ("read", 0)
    assert syscalls.resolve("file_setattr", "x86_64") == ("file_setattr", 469)
    assert "open" not in syscalls.table("aarch64")       # generic table has only openat
    assert syscalls.name_of(1, "x86_64") == "write" and syscalls.name_of(9999, "x86_64") == "syscall_9999"
    assert syscalls.tracepoint_for("fstat") == "sys_enter_newfstat"
    assert syscalls.entry_symbol("write", "x86_64") == "__x64_sys_write"
    with pytest.raises(RawprobeError):
        syscalls.resolve("write", "mips")


def test_every_syscall_tracepoint_of_this_kernel_is_in_the_table():
    root = "/sys/kernel/tracing/events/syscalls"
    if syscalls.machine() != "x86_64" or not os.path.isdir(root):
        pytest.skip("needs tracefs and x86_64 to compare against the running kernel")
    names = {n[len("sys_enter_"):] for n in os.listdir(root) if n.startswith("sys_enter_")}
    missing = []
    for n in names:
        try:
            syscalls.resolve(n)
        except RawprobeError:
            missing.append(n)
    assert not missing


# -- /proc and the start-time guard ------------------------------------------------------

def test_read_stat_of_self():
    st_ = procinfo.read_stat(os.getpid())
    assert st_.ppid == os.getppid() and not st_.kernel_thread and st_.state in "RS"
    assert procinfo.read_stat(2).kernel_thread           # kthreadd
    assert procinfo.read_stat(0x3FFFFFFF) is None
    assert os.getpid() in procinfo.ancestors() and os.getppid() in procinfo.ancestors()


def test_start_time_comparison():
    tick = procinfo.TICK_NS
    assert procinfo.start_time_matches(123, 123 * tick + 5, "boottime")
    assert not procinfo.start_time_matches(124, 123 * tick + 5, "boottime")
    # monotonic stamp: /proc's boottime may be ahead by the time spent suspended
    assert procinfo.start_time_matches(123, 123 * tick, "monotonic", offset_ns=0)
    assert procinfo.start_time_matches(125, 123 * tick, "monotonic", offset_ns=2 * tick)
    assert not procinfo.start_time_matches(126, 123 * tick, "monotonic", offset_ns=2 * tick)
    assert not procinfo.start_time_matches(122, 123 * tick, "monotonic", offset_ns=2 * tick)


def test_read_comm_of_a_renamed_process():
    import secrets
    import subprocess
    import sys
    # any bytes but NUL, kept as given: not UTF-8, blanks and an X at the end
    comm = b"rpo_" + secrets.token_hex(2).encode() + b"\xff X "
    # a child that renames itself (as prctl(PR_SET_NAME) does), reports, then waits
    code = (f"import os; fd = os.open('/proc/self/comm', os.O_WRONLY); os.write(fd, {comm!r}); "
            "print('ready', flush=True); import sys; sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        assert Path(f"/proc/{p.pid}/comm").read_bytes() == comm + b"\n"
        assert procinfo.read_comm(p.pid) == comm.decode(errors="replace")
    finally:
        p.stdin.close()
        p.wait()
    assert procinfo.read_comm(p.pid) is None          # reaped: no /proc entry


def test_boot_offset_is_boottime_minus_monotonic():
    import time
    boot0, mono0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns()
    got = procinfo.boot_offset_ns()
    boot1, mono1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns()
    # sampled between the two readings of each clock
    assert max(0, boot0 - mono1) <= got <= boot1 - mono0


def test_start_time_of_a_live_process_matches_on_either_clock():
    """This process's own start: /proc's ticks against the boottime stamp they are
    made from, and against monotonic stamps: the boottime start less the time
    suspended since boot matches; a monotonic start after the boottime one cannot."""
    st_ = procinfo.read_stat(os.getpid())
    boot_ns = st_.starttime * procinfo.TICK_NS
    assert procinfo.start_time_matches(st_.starttime, boot_ns, "boottime")
    mono_ns = boot_ns - procinfo.boot_offset_ns()
    assert procinfo.start_time_matches(st_.starttime, mono_ns, "monotonic")
    assert not procinfo.start_time_matches(st_.starttime, boot_ns + procinfo.TICK_NS,
                                           "monotonic")


# -- decoding the kernel's records -------------------------------------------------------

def test_decode_intercept():
    rec = events.INTERCEPT.pack(1, 100, 101, 0, b"rpt_x\0".ljust(16, b"\0"), 1, 1, 1, 0,
                                3, 0x7F00, 5, 0, 0, 0, 1000, 2000, 3000, 4, 55, 5, 0,
                                b"hello".ljust(64, b"\0"), 77)
    ev = events.decode(rec)
    assert isinstance(ev, events.Intercept)
    assert (ev.tgid, ev.pid, ev.comm, ev.nr, ev.hit) == (100, 101, "rpt_x", 1, 4)
    assert ev.args == (3, 0x7F00, 5, 0, 0, 0) and ev.data == b"hello"
    assert (ev.start_ns, ev.start_clock) == (3000, "boottime") and ev.kernel_signalled
    assert ev.hook == "raw_tp" and ev.cgroup_id == 55 and ev.pid_ino == 77


def test_decode_signal_and_exit():
    s = events.SIGNAL.pack(2, 100, 101, events.RP_SIG_DELIVER, 15, 0, 100, 0, 7, 5, b"x" * 16)
    ks = events.decode(s)
    assert (ks.tgid, ks.kind, ks.sig, ks.ktime_ns, ks.intercept_ns) == (100, 2, 15, 7, 5)
    e = events.EXIT.pack(3, 100, 101, 143 << 8, b"x" * 16, 900, 100, 200, 0, 210, 2, 1, 4, 3000,
                         15, 0)
    kx = events.decode(e)
    assert (kx.tgid, kx.exit_ns, kx.signal_ns, kx.deliver_ns) == (100, 900, 200, 210)
    assert (kx.exit_code, kx.slipped, kx.after_signal) == (143 << 8, 2, 1)


@given(st.binary(max_size=300))
def test_decode_garbage_never_crashes(data):
    ev = events.decode(data)
    assert ev is None or isinstance(ev, (events.Intercept, events.KernelSignal, events.KernelExit))


# -- output and summary ------------------------------------------------------------------

def test_json_lines_and_text():
    j, t = io.StringIO(), io.StringIO()
    out = output.Output(text=t, json=j)
    out.emit({"event": "intercept", "pid": 5, "comm": "a", "tid": 5, "syscall": "write",
              "args": [1, 2, 3, 0, 0, 0], "hit": 4, "data": "hi"})
    out.emit({"event": "exit", "pid": 5, "comm": "a", "time_to_exit_us": 1500.0,
              "time_to_exit_pidfd_us": 1600.0, "escalated": False, "exit_code": 0,
              "slipped_calls": 0})
    lines = [json.loads(x) for x in j.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["intercept", "exit"]
    assert lines[0]["hit"] == 4 and lines[1]["time_to_exit_us"] == 1500.0
    text = t.getvalue().splitlines()
    assert "write(1, 2, 3, 0, 0, 0)" in text[0] and "call #4" in text[0]
    assert "1.500 ms (kernel)" in text[1]


def test_percentiles_and_histogram():
    vals = list(range(1, 101))
    d = summary.distribution(vals)
    assert (d["min"], d["p50"], d["p90"], d["p99"], d["max"], d["n"]) == (1, 50, 90, 99, 100, 100)
    assert summary.distribution([]) is None
    lines = summary.histogram([3, 3, 5, 300, 1000])
    assert len(lines) == 9 and lines[0].strip().startswith("[2us, 4us)")
    assert lines[0].count("#") == 40          # the tallest bucket is full width


def test_syslog_sink_opens(monkeypatch):
    calls = []
    import syslog
    monkeypatch.setattr(syslog, "syslog", lambda *a: calls.append(a))
    out = output.Output(text=None, use_syslog=True)
    out.emit({"event": "refused", "pid": 1, "comm": "init", "reason": "pid 1"})
    out.close()
    assert calls and calls[0][0] == syslog.LOG_WARNING and "refused" in calls[0][1]


# -- the record layouts against the shipped object's own BTF -----------------------------

@pytest.mark.parametrize("name,fmt", [("rp_intercept_event", events.INTERCEPT),
                                      ("rp_signal_event", events.SIGNAL),
                                      ("rp_exit_event", events.EXIT)])
def test_struct_formats_match_the_objects_btf(name, fmt):
    """intercept.bpf.o carries its record types in BTF: every member of the C struct
    must sit where the Python format puts it (one format item per member)."""
    import re

    import rawprobe
    from rawprobe.interceptor.probe import object_path
    spec = rawprobe.ObjectSpec.from_file(object_path())
    st = spec.btf.type_by_id(spec.btf.types_by_name(name)[0])
    items = re.findall(r"\d*[a-zA-Z]", fmt.format[1:])
    assert len(items) == len(st.members)
    for i, m in enumerate(st.members):
        assert struct.calcsize("<" + "".join(items[:i])) * 8 == m.offset, (name, m.name)
    assert fmt.size == st.size


def test_decode_flags():
    rec = events.INTERCEPT.pack(1, 1, 1, 0, b"init".ljust(16, b"\0"), 1, 1,
                                events.RP_F_PROTECTED, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0,
                                b"\0" * 64, 0)
    ev = events.decode(rec)
    assert ev.protected and not ev.kernel_signalled and ev.start_clock == "monotonic"


# -- JSON lines without the json module ---------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(st.dictionaries(st.text(), _json_values, max_size=8))
@settings(max_examples=300, deadline=None)
def test_json_lines_match_json_dumps(ev):
    assert output.json_dumps()(ev) == json.dumps(ev, separators=(",", ":"), default=str)


def test_json_lines_use_default_str_for_other_values():
    ev = {"path": Path("/x"), "t": (1, 2), "b": b"\x00"}
    assert output.json_dumps()(ev) == json.dumps(ev, separators=(",", ":"), default=str)
    assert output.json_dumps().__name__ == "dumps"      # the C encoder, not the fallback
