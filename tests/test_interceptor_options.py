"""Argument parsing, the syscall table, the event decoders, output and summary: pure code."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rawprobe.errors import RawprobeError
from rawprobe.interceptor import (events, options, optvalues, output, procinfo, summary,
                                  syscalls)
from rawprobe.interceptor.options import UsageError, parse_watch
from rawprobe.interceptor.optvalues import (parse_duration, parse_kprobe, parse_signal, shown,
                                            signal_name)


@pytest.fixture
def sleepers():
    """Start live processes of the test's own (not ancestors of the tool): for --pid."""
    started: list[subprocess.Popen] = []

    def start(code: str = "import time; time.sleep(60)") -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                        text=True))
        return started[-1]
    yield start
    for p in started:
        p.kill()
        p.wait()


@pytest.fixture
def sleeper(sleepers):
    return sleepers()


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


def test_a_kprobe_offset_with_a_leading_zero_is_refused_not_a_crash():
    """int(, 0) raised ValueError for "f+010" (a traceback, not one line); the
    kernel's kprobe_events would take it as octal: ambiguous, so refused."""
    assert parse_kprobe("f+0") == ("f", 0) and parse_kprobe("f+0x010") == ("f", 16)
    for bad in ("f+010", "f+00", "f+09"):
        with pytest.raises(UsageError) as ei:
            parse_kprobe(bad)
        assert str(ei.value) == f"--kprobe '{bad}': an offset with a leading 0 is " \
                                "ambiguous; write it in decimal without the 0 or in hex (0x...)"


# -- the watch command line -----------------------------------------------------------

def test_watch_defaults_and_values(sleepers):
    p5, p6, p7 = (sleepers().pid for _ in range(3))
    o = parse_watch(["--comm", "java", "--skip", "3", "--kill-after", "300ms",
                     "--count", "2", "--duration", "10s", "--json"])
    assert (o.comm, o.syscall, o.skip, o.signal, o.kill_after_ns) == ("java", "write", 3, 15, 300_000_000)
    assert (o.count, o.duration_ns, o.json, o.action, o.hook) == (2, 10_000_000_000, "-", "auto", "auto")
    o = parse_watch(["--pid", f"{p5},{p6}", "--pid", str(p7), "--syscall", "__x64_sys_openat",
                     "--global-skip", "--action", "kernel-signal", "--json", "out.jsonl"],
                    arch="x86_64")
    assert o.pids == (p5, p6, p7) and o.syscall == "openat" and o.syscall_nr == 257
    assert o.skip_global and o.json == "out.jsonl"
    o = parse_watch(["--action", "report", "--kprobe", "ksys_write+0x10"])
    assert (o.kprobe, o.kprobe_offset, o.syscall) == ("ksys_write", 16, None)
    assert not o.busy_poll
    assert parse_watch(["--comm", "x", "--busy-poll"]).busy_poll          # the fast parser
    assert parse_watch(["--comm", "x", "--busy"]).busy_poll               # argparse (prefix)


def test_actions():
    assert parse_watch(["--comm", "x"]).action == "auto"
    for action in ("auto", "signal", "kernel-signal", "report"):
        assert parse_watch(["--comm", "x", "--action", action]).action == action


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


# -- filters that select everyone ------------------------------------------------------

@pytest.fixture
def cgroup2(tmp_path):
    """(the cgroup2 mount point, a new cgroup below it, a symlink to the root)."""
    tops = [ln.split()[4] for ln in open("/proc/self/mountinfo")
            if ln.split(" - ")[1].split()[0] == "cgroup2" and ln.split()[3] == "/"]
    if not tops:
        pytest.skip("no cgroup2 mount")
    child = os.path.join(tops[0], "rpt_" + os.urandom(4).hex())
    try:
        os.mkdir(child)
    except OSError as e:
        pytest.skip(f"cannot create a cgroup under {tops[0]}: {e.strerror}")
    link = tmp_path / "root_link"
    link.symlink_to(tops[0])
    yield tops[0], child, str(link)
    os.rmdir(child)


def _root_spellings(top: str, child: str, link: str) -> list[str]:
    name = os.path.basename(child)
    return ["", ".", "/", "//", top, top + "/", top + "/.", f"{child}/..", f"{name}/..",
            f"/{name}/..", f"{top}/../{os.path.basename(top)}", link, link + "/"]


@pytest.mark.parametrize("action", ["signal", "kernel-signal", None])
def test_the_cgroup2_root_in_any_spelling_is_refused_like_no_filter(cgroup2, action):
    top, child, link = cgroup2
    act = ["--action", action] if action else []
    for spelling in _root_spellings(top, child, link):
        with pytest.raises(UsageError, match="cgroup2 root, which holds every process"):
            parse_watch(["--cgroup", spelling, *act])
        # like no filter: a report may watch everyone; another filter narrows it
        assert parse_watch(["--cgroup", spelling, "--action", "report"]).cgroup_level == 0
        assert parse_watch(["--cgroup", spelling, "--comm", "x", *act]).cgroup_level == 0
    with pytest.raises(UsageError, match="cgroup2 root"):
        parse_watch(["--cgroup", top, "--uid", "0"])


def test_a_cgroup_below_the_root_is_enough_alone(cgroup2):
    top, child, _ = cgroup2
    name = os.path.basename(child)
    for spelling in (child, name, "/" + name, f"{child}/../{name}"):
        o = parse_watch(["--cgroup", spelling])
        assert (o.cgroup_id, o.cgroup_level) == (os.stat(child).st_ino, 1)


@pytest.mark.parametrize("uid", ["0", "root", " 0"])
def test_uid_0_alone_is_refused(uid):
    for act in ([], ["--action", "kernel-signal"]):
        with pytest.raises(UsageError, match="--uid 0 alone names nearly every process"):
            parse_watch(["--uid", uid, *act])
    assert parse_watch(["--uid", uid, "--action", "report"]).uid == 0
    assert parse_watch(["--uid", uid, "--comm", "x"]).uid == 0


def test_uid_0_with_a_pid_or_a_cgroup_is_accepted(cgroup2, sleeper):
    assert parse_watch(["--uid", "0", "--pid", str(sleeper.pid)]).pids == (sleeper.pid,)
    assert parse_watch(["--uid", "0", "--cgroup", cgroup2[1]]).cgroup_level == 1


def test_each_narrow_filter_is_enough_alone(sleeper):
    assert parse_watch(["--comm", "x"]).comm == "x"
    assert parse_watch(["--pid", str(sleeper.pid)]).pids == (sleeper.pid,)
    assert parse_watch(["--uid", "65534"]).uid == 65534
    assert parse_watch(["--uid", "1"]).uid == 1


def test_no_filter_is_refused_unless_only_reporting():
    for act in ([], ["--action", "signal"], ["--action", "kernel-signal"]):
        with pytest.raises(UsageError, match="name the processes to act on"):
            parse_watch(act)
    assert parse_watch(["--action", "report"]).action == "report"


@pytest.fixture
def mounted(tmp_path):
    """mount(args..., name) -> tmp_path/name with a file system of the test's own
    mounted on it (unmounted afterwards, the last first)."""
    done: list[Path] = []

    def mount(*args: str, name: str) -> Path:
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        subprocess.run(["mount", *args, str(d)], check=True)
        done.append(d)
        return d
    yield mount
    for d in reversed(done):
        subprocess.run(["umount", str(d)], check=True)


def test_cgroups_on_mount_points_the_kernel_escapes(cgroup2, mounted):
    """mountinfo writes space, tab, newline and backslash as octal escapes: a
    cgroup2 mounted on such a path, and a bind mount of a cgroup below the root,
    are found, and each level counts from the hierarchy's root."""
    top, child, _ = cgroup2
    name = os.path.basename(child)
    whole = mounted("-t", "cgroup2", "none", name="c g\tx\ny")
    part = mounted("--bind", child, name="b\\d")
    found = {m.point: m for m in optvalues._mounts()}
    assert (found[str(whole)].fstype, found[str(whole)].root) == ("cgroup2", "/")
    assert (found[str(part)].fstype, found[str(part)].root) == ("cgroup2", "/" + name)
    ino = os.stat(child).st_ino
    assert optvalues.cgroup_id(f"{whole}/{name}") == (ino, 1)
    assert optvalues.cgroup_id(str(part)) == (ino, 1)
    # a relative path is below the hierarchy's root, not below a subtree's mount
    assert optvalues.cgroup_id(name) == (ino, 1)
    os.mkdir(f"{child}/g")
    try:
        assert optvalues.cgroup_id(f"{part}/g") == (os.stat(f"{child}/g").st_ino, 2)
    finally:
        os.rmdir(f"{child}/g")


def test_a_cgroup2_hidden_by_a_later_mount_is_not_taken(cgroup2, mounted):
    """The last mount on a point is the one a path reaches: a tmpfs over a cgroup2
    mount hides it, even with a file named cgroup.procs in it."""
    hidden = mounted("-t", "cgroup2", "none", name="cg")
    assert optvalues.cgroup_id(str(hidden)) == (os.stat(cgroup2[0]).st_ino, 0)
    mounted("-t", "tmpfs", "none", name="cg")
    (hidden / "cgroup.procs").write_text("")
    assert _refusal(optvalues.cgroup_id, str(hidden)) == \
        f"--cgroup {shown(str(hidden))} is not a cgroup v2 directory (cgroup2 is mounted on " \
        f"{cgroup2[0]}, {hidden})"


def test_the_mount_a_path_lies_on():
    m = optvalues._Mount
    mounts = [m(point="/", fstype="ext4", root="/"), m(point="/sys/fs/cgroup", fstype="cgroup2",
                                                       root="/"),
              m(point="/sys/fs/cgroupX", fstype="tmpfs", root="/")]

    def on(path: str, ms=mounts) -> str:
        return optvalues._mount_of(path, ms).fstype
    assert [on(p) for p in ("/sys/fs/cgroup", "/sys/fs/cgroup/a", "/sys/fs/cgroupX/a",
                            "/sys/fs/cgroupXY", "/", "/sys")] == \
        ["cgroup2", "cgroup2", "tmpfs", "ext4", "ext4", "ext4"]
    assert on("/a", []) == ""                        # no table: the root, unknown
    later = [*mounts, m(point="/sys/fs/cgroup", fstype="tmpfs", root="/")]
    assert on("/sys/fs/cgroup/a", later) == "tmpfs"  # the later mount hides the earlier


def test_unescape_mountinfo_fields():
    assert optvalues._unescape(rb"/a\040b\011c\012d\134e\134040") == "/a b\tc\nd\\e\\040"
    assert optvalues._unescape(b"/\xff") == "/\udcff"        # bytes as os.fsdecode keeps them


# -- pids, syscalls and symbols that would surprise --------------------------------------

def _a_kernel_thread_other_than_2() -> int:
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if name.isdigit() and int(name) > 2:
            st_ = procinfo.read_stat(int(name))
            if st_ is not None and st_.kernel_thread:
                return int(name)
    pytest.skip("no kernel thread visible in /proc")


def _a_dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()                          # reaped: nothing has this pid now (until reused)
    return p.pid


@pytest.mark.parametrize("which,needle", [
    (lambda: 1, "is init"),
    (lambda: 2, "is a kernel thread (kthreadd)"),
    (_a_kernel_thread_other_than_2, "is a kernel thread"),
    (lambda: optvalues.pid_max(), "out of range"),
    (_a_dead_pid, "no such process"),
    (os.getpid, "this tool or one of its ancestors"),
    (os.getppid, "this tool or one of its ancestors"),
])
def test_pids_that_would_surprise_are_refused(which, needle):
    needle = re.escape(needle)
    for act in ("report", "kernel-signal"):
        with pytest.raises(UsageError, match=needle) as ei:
            parse_watch(["--pid", str(which()), "--action", act])
        assert "\n" not in str(ei.value)
    with pytest.raises(UsageError, match=needle):        # with another filter too
        parse_watch(["--comm", "x", "--pid", str(which())])


def test_cgroup_refusals_say_what_to_give(cgroup2):
    top, child, _ = cgroup2
    cgroup_id = optvalues.cgroup_id
    for bad in ("a\0b", "\ud800"):
        assert _refusal(cgroup_id, bad) == f"--cgroup {shown(bad)} is not a path"
    gone = "rpt_gone_" + os.urandom(4).hex()
    assert _refusal(optvalues.parse_cgroup, gone) == \
        f"--cgroup {shown(gone)}: No such file or directory; give a cgroup v2 directory such " \
        f"as {top}/system.slice/foo.service"
    # a directory (or a file) that is not a cgroup of the hierarchy, absolute or not
    for bad in ("/tmp", f"{top}/cgroup.procs", "cgroup.procs", f"{child}/cgroup.procs"):
        assert _refusal(cgroup_id, bad, "--cg") == \
            f"--cg {shown(bad)} is not a cgroup v2 directory (cgroup2 is mounted on {top})"
    assert optvalues.parse_cgroup(child) == (child, os.stat(child).st_ino, 1)
    assert _refusal(optvalues.parse_cgroup, gone, "--cg").startswith(f"--cg {shown(gone)}: ")


def test_a_cgroup_path_as_proc_writes_it_is_found_below_the_mount(cgroup2):
    """/proc/PID/cgroup writes "/NAME": below the cgroup2 mount, whatever NAME
    begins with."""
    x = os.path.join(cgroup2[0], "X" + os.path.basename(cgroup2[1]))
    os.mkdir(x)
    try:
        assert optvalues.cgroup_id("/" + os.path.basename(x)) == (os.stat(x).st_ino, 1)
    finally:
        os.rmdir(x)


def test_pid_refusals_say_why_and_what_to_do(sleeper):
    check = optvalues.check_pid
    assert _refusal(check, 1, frozenset()) == \
        "--pid 1 is init: signalling it takes the system (or container) down; name another " \
        "process"
    assert _refusal(check, 2, frozenset(), "--p") == \
        "--p 2 is a kernel thread (kthreadd): it calls no syscalls of its own and takes no " \
        "signals; name a user process"
    dead = _a_dead_pid()
    assert _refusal(check, dead, frozenset()) == \
        f"--pid {dead}: no such process (a process started later could be given that pid: " \
        "start the watch once it runs)"
    me = procinfo.read_comm(sleeper.pid)
    assert _refusal(check, sleeper.pid, frozenset({sleeper.pid})) == \
        f"--pid {sleeper.pid} is this tool or one of its ancestors ({me}); name another process"
    assert check(sleeper.pid, frozenset({os.getpid()})) is None


def test_a_thread_id_is_refused_for_its_process(sleepers):
    p = sleepers("import threading, time\n"
                 "t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
                 "t.start(); print(t.native_id, flush=True); time.sleep(60)")
    tid = int(p.stdout.readline())
    with pytest.raises(UsageError, match=f"is a thread of process {p.pid}: .* give {p.pid}"):
        parse_watch(["--pid", str(tid)])
    assert parse_watch(["--pid", str(p.pid)]).pids == (p.pid,)


def test_a_pid_is_checked_among_others(sleeper):
    with pytest.raises(UsageError, match="--pid 1 is init"):
        parse_watch(["--pid", f"{sleeper.pid},1"])
    with pytest.raises(UsageError, match="--pid 2 is a kernel thread"):
        parse_watch(["--pid", str(sleeper.pid), "--pid", "2"])


@pytest.mark.parametrize("argv,needle", [
    (["--syscall", ""], "names no syscall"),
    (["--syscall", "  "], "names no syscall"),
    (["--syscall", "\t"], "names no syscall"),
    (["--syscall="], "names no syscall"),
    (["--kprobe", ""], "bad --kprobe"),
    (["--kprobe", " "], "bad --kprobe"),
    (["--kprobe="], "bad --kprobe"),
])
def test_empty_routines_are_refused(argv, needle):
    with pytest.raises(UsageError, match=needle):
        parse_watch(["--comm", "x", *argv])


# -- every option has a range ----------------------------------------------------------

_OUT_OF_RANGE = [
    ["--duration", "100000000000000000000m"], ["--duration", "34561m"],
    ["--duration", "9" * 5000 + "s"],
    ["--kill-after", "100000000000000000000s"], ["--kill-after", "1441m"],
    ["--kill-after", "86400.001s"],
    ["--pid", "99999999999"], ["--pid", str(optvalues.pid_max())], ["--pid", "9" * 5000],
    ["--pid", "\u00b2"], ["--pid", "5,"], ["--pid", ""],
    ["--skip", str(2**64 - 1)], ["--skip", "9" * 5000], ["--skip", "1_000"],
    ["--max-in-flight", "65537"], ["--count", str(2**32 + 1)],
    ["--uid", str(2**32 - 1)], ["--uid", "9" * 5000], ["--uid", "\u00b2"],
    ["--signal", "65"], ["--signal", "9" * 5000], ["--signal", "RTMIN+" + "9" * 5000],
    ["--signal", "\u00b2"],
    ["--kprobe", "f+0x100000000"], ["--kprobe", "f+" + "9" * 5000], ["--kprobe", "f" * 512],
    ["--comm", "\udcff" * 16], ["--comm", "\u00e9" * 8], ["--comm", "\ud800"],
    ["--syscall", "9" * 5000], ["--syscall", "\u00b2"],
]


def _ascii_id(argv: list[str]) -> str:
    """The test id: printable ASCII, no backslash.  pytest escapes other characters
    and, collecting again in the same process (mutmut's runs do), escapes its own
    escapes: the id would change and the test not be found."""
    return "".join(c if " " <= c <= "~" and c != "\\" else f"U+{ord(c):04X}"
                   for c in argv[0] + " " + argv[1][:24])


@pytest.mark.parametrize("argv", _OUT_OF_RANGE, ids=_ascii_id)
def test_out_of_range_is_one_line(argv):
    with pytest.raises(UsageError) as ei:
        parse_watch(["--action", "report", *argv])
    assert "\n" not in str(ei.value) and len(str(ei.value)) < 200, str(ei.value)


def test_the_ends_of_each_range_are_accepted():
    import _signal
    o = parse_watch(["--action", "report", "--kill-after", "1440m", "--duration", "34560m",
                     "--skip", str(2**64 - 2), "--max-in-flight", "65536",
                     "--count", str(2**32), "--uid", str(2**32 - 2), "--signal", "RTMAX",
                     "--kprobe", "f+0xffffffff"])
    assert (o.kill_after_ns, o.duration_ns) == (86_400 * 10**9, 24 * 86_400 * 10**9)
    assert (o.skip, o.max_in_flight, o.count, o.uid) == (2**64 - 2, 65536, 2**32, 2**32 - 2)
    assert (o.signal, o.kprobe_offset) == (_signal.SIGRTMAX, 0xFFFFFFFF)
    o = parse_watch(["--action", "report", "--kill-after", "0", "--duration", "1ms",
                     "--skip", "0", "--max-in-flight", "1", "--count", "1", "--uid", "0",
                     "--signal", "1", "--kprobe", "f" * 511 + "+0"])
    assert (o.kill_after_ns, o.duration_ns, o.skip, o.max_in_flight) == (0, 10**6, 0, 1)
    assert (o.count, o.uid, o.signal, o.kprobe_offset) == (1, 0, 1, 0)


def test_durations_are_exact():
    assert parse_duration("0.1s") == 100_000_000            # float: 100000000.00000001
    assert parse_duration("1.0000005ms") == 1_000_001       # rounded half up
    assert parse_duration("1." + "9" * 5000 + "s") == 2_000_000_000
    assert parse_duration("86400s", maximum_ns=86_400 * 10**9) == 86_400 * 10**9
    with pytest.raises(UsageError, match="at most 1440m"):
        parse_duration("86400.000000001s", "--kill-after", maximum_ns=86_400 * 10**9)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"rpt_\xff\xfe\x80abcdefgh", "caf\u00e9".encode()])
def test_comm_is_bytes_the_kernel_keeps(raw):
    """argv's undecodable bytes arrive as surrogates: a comm that is not UTF-8 is
    accepted and stays the same bytes (up to 15 of them)."""
    o = parse_watch(["--comm", os.fsdecode(raw)])
    assert os.fsencode(o.comm) == raw
    with pytest.raises(UsageError, match="15 bytes") as ei:
        parse_watch(["--comm", os.fsdecode(raw * 8)])
    assert repr(os.fsdecode((raw * 8)[:15])) in str(ei.value)     # what to use instead


_any_text = st.text(st.characters(blacklist_categories=()), max_size=12) | \
    st.from_regex(r"\A[0-9]{1,40}(\.[0-9]{0,5})?(ms|s|m)?\Z")


@given(st.sampled_from([o for o in options.OPTIONS if o.parse is not None]), _any_text)
@settings(max_examples=600, deadline=None)
def test_option_values_raise_only_usage_errors(opt, text):
    try:
        opt.parse([text] if opt.kind == "append" else text, opt.flags[0])
    except UsageError as e:
        assert "\n" not in str(e)


# -- each value parser at its limits, and what its refusal tells -------------------------

def _refusal(parse, *args) -> str:
    with pytest.raises(UsageError) as ei:
        parse(*args)
    return str(ei.value)


def test_a_long_argument_is_cut_short_in_a_message():
    assert optvalues.shown("a" * 38) == "'" + "a" * 38 + "'"          # 40 characters: kept
    assert optvalues.shown("a" * 39) == "'" + "a" * 31 + "...'"       # 41: cut to 35
    assert _refusal(parse_duration, "9" * 5000 + "h", "--duration") == \
        "bad --duration '" + "9" * 31 + "...': write a number with ms, s or m (e.g. 300ms, 2s)"


@pytest.mark.parametrize("text,ns", [
    ("2 s", 2_000_000_000), ("1.5m", 90_000_000_000), ("0s", 0), ("0.0ms", 0),
    ("0" * 30 + "300ms", 300_000_000),                 # leading zeros do not count
    ("9" * 20 + "s", int("9" * 20) * 10**9),           # 20 digits: exact, no maximum
    ("0.0000004ms", 0), ("0.0000005ms", 1), ("0.0000000015s", 2), ("0.0000000014s", 1),
    ("1.00000000000001m", 60_000_000_000), ("0.000000000025m", 2),   # 1.5 ns: half up
    ("0.000000000024999m", 1),
])
def test_durations_to_the_nanosecond(text, ns):
    assert parse_duration(text) == ns


@given(st.integers(0, 10**6), st.text("0123456789", max_size=15), st.sampled_from("ms m s".split()))
def test_durations_round_half_up_like_exact_arithmetic(whole, frac, unit):
    from fractions import Fraction
    per = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9}[unit]
    exact = (whole + Fraction(int(frac or "0"), 10**len(frac))) * per
    assert parse_duration(f"{whole}.{frac}{unit}") == int(exact + Fraction(1, 2))


def test_duration_refusals_say_what_to_write():
    assert _refusal(parse_duration, "2h") == \
        "bad duration '2h': write a number with ms, s or m (e.g. 300ms, 2s)"
    assert _refusal(parse_duration, "20", "--kill-after") == \
        "--kill-after '20' needs a unit: ms, s or m (e.g. 300ms, 2s, 1m)"
    for bad in (".s", "s", "1.2.3s", "1 .5s", "00"):
        assert _refusal(parse_duration, bad)
    # past 20 digits the number is not read: too long, even with no maximum
    assert _refusal(parse_duration, "1" + "0" * 20 + "ms") == \
        "duration '100000000000000000000ms' is too long"
    assert _refusal(parse_duration, "2s", "--x", 10**9) == "--x '2s' is too long: at most 1s"


def test_durations_are_spelt_the_shortest_exact_way():
    for ns, text in [(0, "0m"), (120 * 10**9, "2m"), (90 * 10**9, "90s"), (10**9, "1s"),
                     (250 * 10**6, "250ms"), (1_500_000, "1.5ms"), (1, "0.000001ms"),
                     (1_000_001, "1.000001ms"), (10**9 + 1, "1000.000001ms")]:
        assert optvalues.spell_duration(ns) == text
        assert parse_duration(text) == ns


def test_signal_names_are_the_enums_with_the_real_time_ones_counted():
    """signal.Signals' own names (of aliases the alphabetically first: SIGABRT
    not SIGIOT, SIGCHLD not SIGCLD, SIGIO not SIGPOLL), without importing the enum."""
    for s in signal.Signals:
        assert signal_name(s.value) == s.name
    assert signal_name(signal.SIGRTMIN + 29) == "SIGRTMIN+29"
    assert (signal_name(signal.SIGRTMAX + 1), signal_name(0)) == (f"SIG{signal.SIGRTMAX + 1}",
                                                                  "SIG0")


def test_count_limits():
    count = optvalues.parse_count
    assert (count("0", "n"), count(str(2**64 - 1), "n")) == (0, 2**64 - 1)   # a u64
    assert count(" 7 ", "n", 7, 7) == 7
    for bad in (str(2**64), "9" * 40, "9" * 5000):
        assert _refusal(count, bad, "--n") == f"--n must be 0 to {2**64 - 1}, not {shown(bad)}"
    assert _refusal(count, "6", "--count", 7, 9) == "--count must be 7 to 9, not '6'"
    assert _refusal(count, "1e3", "--count", 1, 9) == "--count '1e3' is not a whole number (1 to 9)"


@pytest.mark.parametrize("text,n", [
    ("4096", 4096), ("4K", 4096), ("64k", 65536), ("64KB", 65536), ("64KiB", 65536),
    ("64kib", 65536), (" 8K ", 8192), ("4m", 4 << 20), ("1024M", 1 << 30), ("1G", 1 << 30),
    ("1GB", 1 << 30), ("4096B", 4096),
])
def test_ring_sizes(text, n):
    assert options.parse_watch(["--comm", "x", "--ring-size", text]).ring_size == n


@pytest.mark.parametrize("text", ["2048", "2K", "2G", "3M", "12K", "0", "", "K", "KB", "B",
                                  "64KK", "1T", "-4K", "4.0K", "0x1000", "9" * 5000])
def test_ring_sizes_refused(text):
    with pytest.raises(UsageError) as ei:
        parse_watch(["--comm", "x", f"--ring-size={text}"])
    assert str(ei.value) == f"--ring-size {shown(text)}: give a power of two from 4K to 1024M " \
                            "(e.g. 64K, 4M, 16M)"


@pytest.mark.parametrize("flag,field,text,want", [
    ("--signal", "signal", "15", 15), ("--errno", "deny_errno", "13", 13),
    ("--skip", "skip", "7", 7), ("--uid", "uid", "65534", 65534),
    ("--metrics", "metrics", ":9464", ("0.0.0.0", 9464)), ("--ring-size", "ring_size", "4K", 4096),
    ("--max-in-flight", "max_in_flight", "8", 8),
])
def test_leading_zeros_do_not_make_a_number_too_long(flag, field, text, want):
    """Each number is capped in length before int(): the cap counts significant
    digits, so 40 leading zeros leave the value as it is (they made "00015" a
    signal "out of range" before)."""
    padded = text.replace(":", ":" + "0" * 40) if text.startswith(":") else "0" * 40 + text
    argv = ["--comm", "x", "--action", "deny" if flag == "--errno" else "report"]
    assert getattr(parse_watch([*argv, flag, padded], arch="x86_64"), field) == want


def test_errno_values():
    errno_ = optvalues.parse_errno
    assert (errno_("1"), errno_("4095"), errno_(" 13 "), errno_("0013")) == (1, 4095, 13, 13)
    assert (errno_("eacces"), errno_(" EIO "), errno_("Enospc")) == (13, 5, 28)
    for bad in ("0", "4096", "99999", "9" * 5000):
        assert _refusal(errno_, bad) == f"--errno {shown(bad)}: an errno number is 1 to 4095"
    for bad in ("E", "EFOO", "errorcode", "E-1", "", "13x", "EPERM.x"):
        assert _refusal(errno_, bad, "--x") == \
            f"--x {shown(bad)} is no errno: write a name such as EPERM, EACCES, EIO or " \
            "ENOSPC, or a number 1 to 4095"


def test_lsm_hook_names():
    hook = optvalues.parse_lsm_hook
    for text in ("file_open", "bpf_lsm_file_open", "security_file_open", " file_open "):
        assert hook(text) == "file_open"
    assert hook("inode_setxattr") == "inode_setxattr" and hook("x") == "x"
    assert hook("a" * 503) == "a" * 503 == hook("bpf_lsm_" + "a" * 503)   # 8 + 503 < 512
    for bad in ("", "bpf_lsm_", "security_", "File_open", "file-open", "file open",
                "1file", "f\u00efle", "_", "a" * 504, "bpf_lsm_" + "a" * 504):
        assert _refusal(hook, bad) == \
            f"--lsm {shown(bad)} is no LSM hook name: write one such as file_open, " \
            "file_permission, socket_connect, task_kill"


def test_kprobe_refusals_say_what_to_write():
    assert _refusal(parse_kprobe, "f-1") == \
        "bad --kprobe 'f-1': write SYMBOL or SYMBOL+OFFSET (e.g. ksys_write or ksys_write+0x10)"
    assert _refusal(parse_kprobe, "f" * 512, "--k") == \
        f"--k {shown('f' * 512)}: no kernel symbol is longer than 511 characters"
    assert _refusal(parse_kprobe, "f+4294967296") == \
        "--kprobe 'f+4294967296': the offset must be at most 0xffffffff"
    assert parse_kprobe(" f.cold+0X10 ".replace("X", "x")) == ("f.cold", 16)


def test_signal_refusals_and_real_time_spellings():
    import _signal
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    assert (parse_signal("RTMAX-1"), parse_signal("sigrtmin"), parse_signal(" iot ")) == \
        (rtmax - 1, rtmin, signal.SIGABRT)
    assert _refusal(parse_signal, "RTMIN+31") == \
        f"--signal 'RTMIN+31' is out of range: use 1-{rtmax}"
    assert _refusal(parse_signal, "65", "--s") == f"--s '65' is out of range: use 1-{rtmax}"
    for bad in ("FOO", "SIG_DFL", "RTMIN+x", "RTMIN-1", "\u00e9"):
        assert _refusal(parse_signal, bad) == \
            f"--signal: unknown signal {shown(bad)}: use a name like TERM, INT, KILL, USR1 " \
            f"or a number 1-{rtmax}"


def test_comm_syscall_and_uid_refusals_say_what_to_write():
    comm = optvalues.parse_comm
    assert comm("a" * 15) == "a" * 15
    assert _refusal(comm, "a" * 16) == \
        f"--comm {'a' * 16!r} is longer than the kernel keeps (15 bytes); use {'a' * 15!r}"
    for bad in ("", "a\0b"):
        assert _refusal(comm, bad) == "--comm must be a non-empty name without NUL"
    assert _refusal(comm, "\ud800", "--c") == \
        "--c '\\ud800' is not a file system string (name the bytes as the command line " \
        "passes them)"
    name = optvalues.parse_syscall_name
    assert (name(" openat "), name("a" * 64)) == ("openat", "a" * 64)
    assert _refusal(name, " ") == "--syscall ' ' names no syscall: give a name or number " \
                                  "(e.g. write, openat, 1)"
    for bad in ("a" * 65, "\u00b2"):
        assert _refusal(name, bad, "--s") == f"--s {shown(bad)} is no syscall name or number"
    uid = optvalues.parse_uid
    assert (uid("root"), uid(" 0 "), uid(str(2**32 - 2))) == (0, 0, 2**32 - 2)
    assert _refusal(uid, str(2**32 - 1), "--u") == f"--u must be 0 to {2**32 - 2}, not " \
                                                    f"'{2**32 - 1}'"
    for bad in ("no_such_user_rawprobe", "a\0b", "\ud800"):
        assert _refusal(uid, bad) == f"unknown user {shown(bad)} for --uid: give a user name " \
                                     "or number"


def test_pid_lists(sleepers):
    p, q = sleepers().pid, sleepers().pid
    assert optvalues.parse_pids([f"{p}, {q}", str(p), f" {q}"]) == (p, q)     # once each
    assert optvalues.parse_pids([]) == ()
    top = optvalues.pid_max() - 1
    assert optvalues.pid_max() == int(Path("/proc/sys/kernel/pid_max").read_text())
    for bad in ("0", str(top + 1), "9" * 5000):
        assert _refusal(optvalues.parse_pids, [f"{p},{bad}"]) == \
            f"--pid {shown(bad)} is out of range: pids are 1 to {top} here (pid_max is {top + 1})"
    try:                              # the highest pid is in range (whether it runs or not)
        optvalues.parse_pids([str(top)])
    except UsageError as e:
        assert "out of range" not in str(e)
    assert _refusal(optvalues.parse_pids, [f"{p},1"], "--p").startswith("--p 1 is init")
    for bad in (f"{p};{q}", f"{p},", "x"):
        assert _refusal(optvalues.parse_pids, [bad], "--p") == \
            f"--p {shown(bad)}: give process ids, e.g. --p 1234 or --p 1234,1235"


# -- one option table, two parsers ----------------------------------------------------

def _argparse(argv: list[str]):
    return options.build_parser(for_help=False).parse_args(argv)


_plain_value = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6).filter(
    lambda v: not v.startswith("-"))


@st.composite
def _plain_command_lines(draw) -> list[str]:
    """Command lines the fast parser must take: full option names from the table,
    each in every form it has (``--opt v``, ``--opt=v``, ``--json`` alone...)."""
    argv: list[str] = []
    for opt in draw(st.lists(st.sampled_from(options.OPTIONS), max_size=8)):
        flag = draw(st.sampled_from(opt.flags))
        if opt.kind == "flag":
            argv.append(flag)
            continue
        form = draw(st.sampled_from(["sep", "eq", "alone"] if opt.kind == "optional"
                                    else ["sep", "eq"]))
        value = draw(_plain_value)
        if form == "alone":
            argv.append(flag)
        elif form == "eq":
            argv.append(f"{flag}={value}")
        else:
            argv += [flag, value or "x"] if opt.kind == "optional" else [flag, value]
    return argv


@given(_plain_command_lines())
@settings(max_examples=400, deadline=None)
def test_fast_parser_agrees_with_argparse_on_plain_lines(argv):
    fast = options._fast_args(argv)
    assert fast is not None, argv
    assert vars(fast) == vars(_argparse(argv)), argv


_tokens = st.sampled_from([f for opt in options.OPTIONS for f in opt.flags] + [
    "--busy", "--co", "--comm=", "--quiet=1", "-q", "-x", "--", "-", "-1", "", "x", "2s",
    "a b", "-a b", "--json=", "--pid=4", "--hel"])


@given(st.lists(_tokens, max_size=8))
@settings(max_examples=400, deadline=None)
def test_fast_parser_takes_nothing_argparse_would_read_otherwise(argv):
    """Anything the fast parser accepts, argparse accepts with the same result;
    everything else is left to argparse (None)."""
    fast = options._fast_args(argv)
    if fast is None:
        return
    try:
        slow = _argparse(argv)
    except (UsageError, SystemExit):
        raise AssertionError(f"fast parser accepted {argv}, argparse refuses it") from None
    assert vars(fast) == vars(slow), argv


def test_the_table_gives_every_default():
    """Not given: both parsers say None/False, and parse_watch fills in the
    table's value; the default --help shows reads back as that value."""
    assert vars(options._fast_args([])) == vars(_argparse([]))
    assert set(vars(_argparse([]))) == {opt.field for opt in options.OPTIONS}
    o = parse_watch(["--action", "report"], arch="x86_64")
    assert o.as_dict() == {**options.DEFAULTS, "action": "report", "syscall_nr": 1}
    assert options.WatchOptions().as_dict() == options.DEFAULTS
    for opt in options.OPTIONS:
        if opt.spell is not None and opt.parse is not None:
            want = tuple(opt.fields.values()) if len(opt.fields) > 1 else opt.default
            assert opt.parse(opt.spell(opt.default), opt.flags[0]) == want, opt.flags
    # what tracker.py takes its defaults from
    assert {k: options.DEFAULTS[k] for k in ("action", "signal", "kill_after_ns",
                                            "max_in_flight", "count")} == {
        "action": "auto", "signal": 15, "kill_after_ns": 2_000_000_000,
        "max_in_flight": 4096, "count": None}


def test_every_option_reaches_its_field():
    """Each option, given through either parser, lands in its own WatchOptions field."""
    for opt in options.OPTIONS:
        for argv in ([opt.flags[0], "x"], [f"{opt.flags[0]}=x"]) if opt.kind != "flag" \
                else ([opt.flags[-1]],):
            fast, slow = options._fast_args(argv), _argparse(argv)
            assert vars(fast) == vars(slow)
            want = True if opt.kind == "flag" else (["x"] if opt.kind == "append" else "x")
            assert getattr(slow, opt.field) == want, opt.flags


# -- --help and the refusals, as the user reads them ----------------------------------

def _help_sections(text: str) -> dict[str, list[str]]:
    """--help's lines by section title ("which processes", ...)."""
    sections: dict[str, list[str]] = {}
    title = ""
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            title = line[:-1]
        elif title:
            sections.setdefault(title, []).append(line)
    return sections


def test_help_shows_each_option_in_its_group_with_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")         # --help wraps at the terminal's width
    text = options.build_parser().format_help()
    assert text.startswith("usage: rawprobe watch [-h] [--comm NAME] ")
    assert "\nSignal the processes that call a kernel routine and time their exit.\n" in text
    assert text.endswith(options._EPILOG + "\n")         # as written (raw, not re-wrapped)
    assert max(map(len, text.splitlines())) > 100
    sections = _help_sections(text)
    groups = {opt.group for opt in options.OPTIONS}
    for opt in options.OPTIONS:         # each option in its group, and in no other
        where = [t for t, lines in sections.items() if t in groups
                 and any(ln.startswith(f"  {opt.flags[0]}") for ln in lines)]
        assert where == [opt.group], (opt.flags, where)
    assert "{default}" not in text
    # a default is said once: inside the range's parentheses, after the text, or
    # where the help puts it; an option without a spelling says none
    shown = " ".join(text.split())
    for line in ("--max-in-flight N targets signalled and not yet exited at once "
                 "(1 to 65536; default 4096) --count N stop after N targets were handled "
                 "(1 to 4294967296) --duration",
                 "--syscall NAME syscall name or number (default write) --kprobe",
                 "--action auto|signal|kernel-signal|report|deny|deny-signal (default auto: "
                 "the kernel signals at the call where it can;",
                 "--errno NAME what a denied call returns: an errno name or number "
                 "(1 to 4095; default EPERM) --signal SIGNAL signal name or number "
                 "(1 to SIGRTMAX; default TERM) --kill-after"):
        assert line in shown, line


def test_the_parsing_parser_does_not_ask_the_terminals_width(monkeypatch):
    """build_parser(for_help=False) (argparse for unusual command lines) has a fixed
    width: asking the terminal's imports shutil and more, milliseconds of a start."""
    import shutil

    def no_terminal(*a, **kw):
        raise AssertionError("asked the terminal's size")
    monkeypatch.setattr(shutil, "get_terminal_size", no_terminal)
    monkeypatch.setenv("COLUMNS", "200")
    ap = options.build_parser(for_help=False)
    assert ap.parse_args(["--comm", "x", "--busy"]).busy_poll
    assert parse_watch(["--comm", "x", "--busy"]).busy_poll      # argparse: a prefix
    text = ap.format_help()
    # wrapped near 80 columns, not at the terminal's width (COLUMNS=200)
    assert text.startswith("usage: rawprobe watch ") and max(map(len, text.splitlines())) < 90
    with pytest.raises(AssertionError, match="terminal"):
        options.build_parser().format_help()


def test_argparse_errors_say_what_was_wrong():
    with pytest.raises(UsageError, match="^unrecognized arguments: --bogus$"):
        parse_watch(["--comm", "x", "--bogus"])
    with pytest.raises(UsageError, match="--co.* could match --comm, --count"):
        parse_watch(["--co", "x"])


def test_the_filter_refusals_say_what_to_add():
    report = " (or use --action report to only watch)"
    with pytest.raises(UsageError) as ei:
        parse_watch([])
    assert str(ei.value) == "name the processes to act on with --comm, --pid, --cgroup " \
                            "or --uid" + report
    with pytest.raises(UsageError) as ei:
        parse_watch(["--uid", "0"])
    assert str(ei.value) == "--uid 0 alone names nearly every process (root runs most of " \
                            "them): add --comm, --pid or --cgroup" + report


def test_the_cgroup_root_refusal_names_the_path_given(cgroup2):
    top = cgroup2[0]
    with pytest.raises(UsageError) as ei:
        parse_watch(["--cgroup", top + "/."])
    assert str(ei.value) == f"--cgroup {top + '/.'!r} is the cgroup2 root, which holds every " \
                            "process: name a cgroup below it, or add --comm, --pid or a " \
                            "--uid other than 0 (or use --action report to only watch)"


def test_a_zero_duration_is_refused_saying_so():
    with pytest.raises(UsageError, match="^--duration must be longer than 0$"):
        parse_watch(["--comm", "x", "--duration", "0ms"])
    with pytest.raises(UsageError, match="^bad --duration '2h': "):
        parse_watch(["--comm", "x", "--duration", "2h"])


def test_the_routine_refusals_say_what_to_change():
    with pytest.raises(UsageError, match=r"^give --syscall or --kprobe, not both$"):
        parse_watch(["--comm", "x", "--kprobe", "f", "--syscall", "write"])
    for hook in ("raw_tp", "tracepoint"):
        with pytest.raises(UsageError) as ei:
            parse_watch(["--comm", "x", "--kprobe", "f", "--hook", hook])
        assert str(ei.value) == f"--kprobe needs --hook kprobe, fentry or auto, not {hook}"
    with pytest.raises(UsageError) as ei:
        parse_watch(["--comm", "x", "--kprobe", "f+4", "--hook", "fentry"])
    assert str(ei.value) == "fentry attaches at a function's start: drop the +OFFSET or " \
                            "use --hook kprobe"
    assert parse_watch(["--comm", "x", "--kprobe", "f", "--hook", "fentry"]).kprobe == "f"
    with pytest.raises(UsageError, match=r"^--syscall: .*'wrte'.*did you mean 'write'"):
        parse_watch(["--comm", "x", "--syscall", "wrte"])


def test_the_syscall_is_looked_up_for_the_architecture_asked():
    o = parse_watch(["--comm", "x", "--syscall", "openat"], arch="aarch64")
    assert (o.syscall, o.syscall_nr) == ("openat", 56)
    o = parse_watch(["--comm", "x", "--syscall", "openat"], arch="x86_64")
    assert (o.syscall, o.syscall_nr) == ("openat", 257)


def test_a_choice_refusal_lists_the_choices():
    with pytest.raises(UsageError) as ei:
        parse_watch(["--comm", "x", "--hook", "uprobe"])
    assert str(ei.value) == "--hook 'uprobe': choose one of auto, raw_tp, tracepoint, kprobe, " \
                            "fentry, lsm, fmod_ret"


def test_plain_command_lines_import_no_argparse_nor_re(sleeper):
    """The fast parser's point: a plain watch command line is parsed without
    argparse, re or gettext (each costs milliseconds of every start)."""
    root = Path(__file__).resolve().parent.parent
    code = ("import sys; before = set(sys.modules)\n"
            "from rawprobe.interceptor.options import parse_watch\n"
            f"parse_watch(['--comm', 'x', '--pid', '{sleeper.pid}', "
            "'--kill-after', '300ms', '--duration', '10s', '--max-in-flight', '8', "
            "'--count', '2', '--signal', 'KILL', '--skip', '1', '--json', "
            "'--hook', 'raw_tp', '--quiet'])\n"
            "print(' '.join(sorted(set(sys.modules) - before)))\n")
    env = dict(os.environ, PYTHONPATH=str(root))
    out = set(subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=root,
                             check=True, capture_output=True, text=True).stdout.split())
    heavy = {"argparse", "re", "gettext", "locale", "shutil", "typing", "enum", "signal"}
    assert "rawprobe.interceptor.options" in out and not heavy & out, sorted(heavy & out)


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
    # up to init, not to the swapper's 0
    assert 1 in procinfo.ancestors() and 0 not in procinfo.ancestors()


def test_start_time_comparison():
    tick = procinfo.TICK_NS
    assert procinfo.start_time_matches(123, 123 * tick + 5, "boottime")
    assert not procinfo.start_time_matches(124, 123 * tick + 5, "boottime")
    # monotonic stamp: /proc's boottime may be ahead by the time spent suspended
    assert procinfo.start_time_matches(123, 123 * tick, "monotonic", offset_ns=0)
    assert procinfo.start_time_matches(125, 123 * tick, "monotonic", offset_ns=2 * tick)
    assert not procinfo.start_time_matches(126, 123 * tick, "monotonic", offset_ns=2 * tick)
    assert not procinfo.start_time_matches(122, 123 * tick, "monotonic", offset_ns=2 * tick)
    # within the start's own tick (the ticks are truncated)
    assert procinfo.start_time_matches(123, 123 * tick + 5, "monotonic", offset_ns=0)
    # a boottime stamp is exact, whatever the time suspended: no range as for monotonic
    assert not procinfo.start_time_matches(124, 123 * tick, "boottime", offset_ns=2 * tick)


@pytest.mark.parametrize("tail", [b"\xff X ", b" \xffX"], ids=["blank", "X"])
def test_read_comm_of_a_renamed_process(tail):
    import secrets
    import subprocess
    import sys
    # any bytes but NUL, kept as given: parentheses, not UTF-8, a blank or an X at the end
    comm = b"rp(" + secrets.token_hex(2).encode() + b")" + tail
    # a child that renames itself (as prctl(PR_SET_NAME) does), reports, then waits
    code = (f"import os; fd = os.open('/proc/self/comm', os.O_WRONLY); os.write(fd, {comm!r}); "
            "print('ready', flush=True); import sys; sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        assert Path(f"/proc/{p.pid}/comm").read_bytes() == comm + b"\n"
        assert procinfo.read_comm(p.pid) == comm.decode(errors="replace")
        # /proc/PID/stat: the comm between the first '(' and the last ')', then the fields
        st_ = procinfo.read_stat(p.pid)
        assert (st_.pid, st_.comm, st_.ppid) == (p.pid, comm.decode(errors="replace"),
                                                 os.getpid()) and st_.state in "RS"
        # its ancestors are it and ours
        assert procinfo.ancestors(p.pid) == procinfo.ancestors() | {p.pid}
    finally:
        p.stdin.close()
        p.wait()
    assert procinfo.read_comm(p.pid) is None          # reaped: no /proc entry
    # a process gone is its own only ancestor (the walk stops where /proc does)
    assert procinfo.ancestors(p.pid) == frozenset({p.pid})


def test_boot_offset_is_boottime_minus_monotonic():
    import time
    boot0, mono0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns()
    got = procinfo.boot_offset_ns()
    boot1, mono1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME), time.monotonic_ns()
    # sampled between the two readings of each clock
    assert max(0, boot0 - mono1) <= got <= boot1 - mono0


def test_time_namespace_offsets_in_each_form_the_kernel_writes():
    """/proc/PID/timens_offsets names its clocks (5.6's first form gave their ids);
    seconds and nanoseconds add up, a negative offset has positive nanoseconds, and
    a clock not named (no time namespaces: no file at all) has offset 0."""
    parse = procinfo.parse_timens_offsets
    assert parse("monotonic -2 250000000\nboottime 5000 750000000\n") == \
        (-1_750_000_000, 5_000_750_000_000)
    assert parse("1 3 5\n7 -1 999999999\n") == (3_000_000_005, -1)
    assert parse("boottime 1 0\n") == (0, 10**9)
    assert parse("monotonic 0 1\n") == (1, 0)
    assert parse("") == (0, 0)


@pytest.mark.skipif(not os.path.exists("/proc/self/timens_offsets"),
                    reason="the kernel has no time namespaces (CONFIG_TIME_NS, 5.6+)")
def test_time_namespace_offsets_are_read_and_taken_out_of_the_suspended_time():
    """In a time namespace with offsets, the tool reads them, and the suspended time
    it derives is the host's (the offsets cancel), not the namespace's skew."""
    code = ("from rawprobe.interceptor import procinfo as p; "
            "print(*p.timens_offsets(), p.boot_offset_ns())")
    out = subprocess.run(["unshare", "--time", "--boottime", "5000", "--monotonic", "-2",
                          "--fork", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    mono, boot, suspended = map(int, out.split())
    assert (mono, boot) == (-2 * 10**9, 5000 * 10**9)
    assert abs(suspended - procinfo.boot_offset_ns()) < 10**9


# Run with CLONE_NEWTIME unshared (the caller stays outside, its children enter): set
# offsets with nanoseconds, then run, inside, a process that reports its start as /proc
# shows it there and, given its start on the host's clock, what procinfo makes of both.
_TIMENS_PARENT = """
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x80) != 0:                                  # CLONE_NEWTIME
    sys.exit("unshare(CLONE_NEWTIME): " + os.strerror(ctypes.get_errno()))
with open("/proc/self/timens_offsets", "w") as f:
    f.write("monotonic -2 250000000\\nboottime 5000 750000000\\n")
sys.exit(subprocess.run([sys.executable, "-c", sys.argv[1]]).returncode)
"""
_TIMENS_CHILD = """
import os, sys
from rawprobe.interceptor import procinfo as p
print(os.getpid(), p.read_stat(os.getpid()).starttime, *p.timens_offsets(), flush=True)
host_ns = int(sys.stdin.readline())             # this process's start, on the host's clock
ticks = p.read_stat(os.getpid()).starttime
print(p.start_time_matches(ticks, host_ns, "boottime"),
      p.start_time_matches(ticks, host_ns, "monotonic", offset_ns=0),
      p.start_time_matches(ticks, host_ns + p.TICK_NS, "boottime"))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/timens_offsets"),
                    reason="the kernel has no time namespaces (CONFIG_TIME_NS, 5.6+)")
def test_start_times_are_matched_in_the_frame_proc_shows_in_a_time_namespace():
    """Inside a time namespace, /proc's start times carry the namespace's boottime
    offset (to the nanosecond) and the kernel's stamps are the host's: a process
    there reads the offsets exactly and matches its host-clock start against the
    ticks /proc shows it, on either clock; a stamp a tick later does not match."""
    child = subprocess.Popen([sys.executable, "-c", _TIMENS_PARENT, _TIMENS_CHILD],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        pid, inside, mono_off, boot_off = map(int, child.stdout.readline().split())
        host_ticks = procinfo.read_stat(pid).starttime      # read from out here
        assert procinfo.start_time_matches(host_ticks, host_ticks * procinfo.TICK_NS,
                                           "boottime")      # where no offset applies
        assert (mono_off, boot_off) == (-1_750_000_000, 5_000_750_000_000)
        assert inside == host_ticks + boot_off // procinfo.TICK_NS
        child.stdin.write(f"{host_ticks * procinfo.TICK_NS}\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["True", "True", "False"]
    finally:
        child.stdin.close()
        assert child.wait() == 0


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
