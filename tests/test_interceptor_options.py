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
from rawprobe.interceptor.optvalues import parse_duration, parse_kprobe, parse_signal, signal_name


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


@pytest.mark.parametrize("argv", _OUT_OF_RANGE, ids=lambda a: a[0] + " " + a[1][:24])
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
