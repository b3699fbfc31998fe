"""The ``watch`` command line: parsing and validation into a WatchOptions.

Every bad argument raises UsageError with one line that says what to write instead;
the CLI prints it and exits 2 (argparse's own usage dump is turned into the same).
"""
from __future__ import annotations

import os

from .record import Record

from ..errors import UsageError

TASK_COMM_LEN = 16           # the kernel's comm buffer, NUL included
HOOKS = ("auto", "raw_tp", "tracepoint", "kprobe", "fentry")
ACTIONS = ("signal", "kernel-signal", "report")
DEFAULT_MAX_IN_FLIGHT = 4096


_DURATION = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)\s*$"
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}


def parse_duration(text: str, what: str = "duration") -> int:
    """``"300ms"`` -> 300_000_000 ns.  Units: ms, s, m; ``0`` alone is allowed."""
    if text.strip() == "0":
        return 0
    # the usual "2s" / "300ms" without importing re (milliseconds at start-up)
    for unit in ("ms", "s", "m"):
        if text.endswith(unit) and text[:-len(unit)].isdigit() and text[:-len(unit)].isascii():
            return int(text[:-len(unit)]) * _UNIT_NS[unit]
    import re
    m = re.match(_DURATION, text)
    if not m:
        if re.match(r"^\s*\d+(\.\d*)?\s*$", text):
            raise UsageError(f"{what} {text!r} needs a unit: ms, s or m (e.g. 300ms, 2s, 1m)")
        raise UsageError(f"bad {what} {text!r}: write a number with ms, s or m (e.g. 300ms, 2s)")
    return round(float(m.group(1)) * _UNIT_NS[m.group(2)])


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm``, ``15``, ``RTMIN+2`` -> signal number."""
    import _signal            # the C module: ``signal`` builds enums (ms at start-up)
    t = text.strip().upper()
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    if t.isdigit():
        n = int(t)
    else:
        if t.startswith("SIG"):
            t = t[3:]
        m = None
        if t.startswith("RT"):
            import re
            m = re.match(r"^RTMIN(?:\+(\d+))?$", t) or re.match(r"^RTMAX(?:-(\d+))?$", t)
        if m:
            off = int(m.group(1) or 0)
            n = rtmin + off if t.startswith("RTMIN") else rtmax - off
        else:
            # the names signal.Signals has: SIG + letters and digits (not SIG_DFL...)
            sig = getattr(_signal, "SIG" + t, None) if t.isalnum() and t.isascii() else None
            if sig is None:
                raise UsageError(f"unknown signal {text!r}: use a name like TERM, INT, KILL, "
                                 "USR1 or a number 1-64")
            n = int(sig)
    if not 1 <= n <= rtmax:
        raise UsageError(f"signal {text!r} is out of range: use 1-{rtmax}")
    return n


_SIGNAL_NAMES: dict[int, str] = {}


def signal_name(n: int) -> str:
    import _signal
    if not _SIGNAL_NAMES:
        # signal.Signals(n).name without the enum, whose members are sorted by
        # (value, name): of aliases the alphabetically first wins (SIGABRT, not SIGIOT)
        for k, v in vars(_signal).items():
            if k.startswith("SIG") and not k.startswith("SIG_") and isinstance(v, int):
                if k < _SIGNAL_NAMES.get(v, "SIH"):
                    _SIGNAL_NAMES[v] = k
    try:
        return _SIGNAL_NAMES[n]
    except KeyError:
        if _signal.SIGRTMIN <= n <= _signal.SIGRTMAX:
            return f"SIGRTMIN+{n - _signal.SIGRTMIN}"
        return f"SIG{n}"


def _re():
    import re      # only for the rarer inputs: re costs milliseconds at start-up
    return re


_SYMBOL = r"^([A-Za-z_][A-Za-z0-9_.]*)(?:\+(0x[0-9a-fA-F]+|\d+))?$"


def parse_kprobe(text: str) -> tuple[str, int]:
    """``do_sys_openat2+0x1a`` -> (``"do_sys_openat2"``, 26)."""
    m = _re().match(_SYMBOL, text.strip())
    if not m:
        raise UsageError(f"bad --kprobe {text!r}: write SYMBOL or SYMBOL+OFFSET "
                         "(e.g. ksys_write or ksys_write+0x10)")
    off = m.group(2)
    return m.group(1), (int(off, 0) if off else 0)


def parse_count(text: str, what: str, minimum: int = 0) -> int:
    try:
        n = int(text, 10)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a whole number") from None
    if n < minimum:
        raise UsageError(f"{what} must be at least {minimum}, not {n}")
    return n


def parse_pids(values: list[str]) -> tuple[int, ...]:
    pids: list[int] = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                pids.append(parse_count(part.strip(), "--pid", 1))
    return tuple(dict.fromkeys(pids))


def parse_uid(text: str) -> int:
    if text.strip().isdigit():
        return int(text)
    import pwd
    try:
        return pwd.getpwnam(text.strip()).pw_uid
    except KeyError:
        raise UsageError(f"unknown user {text!r} for --uid: give a user name or number") from None


def _cgroup2_mounts() -> list[str]:
    try:
        with open("/proc/self/mounts") as f:
            return [ln.split()[1] for ln in f if ln.split()[2:3] == ["cgroup2"]]
    except OSError:
        return []


def cgroup_id(path: str) -> tuple[int, int]:
    """A cgroup v2 directory -> (id, level).  The id is the directory's inode number
    (what ``bpf_get_current_cgroup_id()`` reports); the level is its depth below the
    cgroup2 root (root = 0), for ``bpf_get_current_ancestor_cgroup_id(level)``."""
    mounts = _cgroup2_mounts() or ["/sys/fs/cgroup"]
    p = path if os.path.isabs(path) else os.path.join(mounts[0], path)
    p = os.path.realpath(p)
    try:
        st = os.stat(p)
    except OSError as e:
        raise UsageError(f"--cgroup {path!r}: {e.strerror}; give a cgroup v2 directory "
                         "such as /sys/fs/cgroup/system.slice/foo.service") from None
    if not os.path.isdir(p) or not os.path.exists(os.path.join(p, "cgroup.procs")):
        raise UsageError(f"--cgroup {path!r} is not a cgroup v2 directory (no cgroup.procs)")
    root = max((m for m in mounts if p == m or p.startswith(m.rstrip("/") + "/")),
               key=len, default=None)
    if root is None:
        raise UsageError(f"--cgroup {path!r} is not under a cgroup2 mount ({', '.join(mounts)})")
    rel = os.path.relpath(p, root)
    level = 0 if rel == "." else len(rel.split("/"))
    return st.st_ino, level


class WatchOptions(Record):
    """A validated ``watch`` command line (see build_parser for the meaning)."""
    __slots__ = ("comm", "pids", "cgroup", "cgroup_id", "cgroup_level", "uid", "syscall",
                 "syscall_nr", "kprobe", "kprobe_offset", "hook", "skip", "skip_global",
                 "signal", "kill_after_ns", "action", "max_in_flight", "count", "duration_ns",
                 "json", "syslog", "quiet", "busy_poll")
    _defaults = {"comm": None, "pids": (), "cgroup": None, "cgroup_id": None,
                 "cgroup_level": 0, "uid": None, "syscall": "write", "syscall_nr": None,
                 "kprobe": None, "kprobe_offset": 0, "hook": "auto", "skip": 0,
                 "skip_global": False, "signal": 15, "kill_after_ns": 2_000_000_000,
                 "action": "signal", "max_in_flight": DEFAULT_MAX_IN_FLIGHT, "count": None,
                 "duration_ns": None, "json": None, "syslog": False, "quiet": False,
                 "busy_poll": False}

    @property
    def has_filter(self) -> bool:
        return bool(self.comm or self.pids or self.cgroup_id is not None or self.uid is not None)


def build_parser(for_help: bool = True):
    """The ``watch`` argparse parser; its errors raise UsageError (one line).
    ``for_help=False``: for parsing only, at a fixed width, so argparse does not
    import shutil (and bz2, lzma...) to ask the terminal's, which costs ms at start."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse would print usage and exit(2)
            raise UsageError(message)

    extra = {} if for_help else {
        "formatter_class": lambda prog: argparse.HelpFormatter(prog, width=80)}
    ap = _Parser(prog="rawprobe watch", description=(
        "Signal the processes that call a kernel routine and time their exit."), **extra)
    f = ap.add_argument_group("which processes")
    f.add_argument("--comm", help="task name (as in /proc/PID/comm, at most 15 bytes)")
    f.add_argument("--pid", action="append", default=[], metavar="PID",
                   help="process id(s); repeat or comma-separate")
    f.add_argument("--cgroup", metavar="PATH", help="cgroup v2 directory")
    f.add_argument("--uid", help="the caller's real user, a name or id")
    r = ap.add_argument_group("which routine")
    r.add_argument("--syscall", help="syscall name or number (default: write)")
    r.add_argument("--kprobe", metavar="SYMBOL[+OFFSET]", help="kernel function and offset")
    r.add_argument("--hook", default="auto", help="auto|raw_tp|tracepoint|kprobe|fentry")
    r.add_argument("--skip", default="0", metavar="N", help="let N matching calls through")
    r.add_argument("--global-skip", action="store_true",
                   help="count --skip across all matching processes, not per process")
    a = ap.add_argument_group("what to do")
    a.add_argument("--action", default="signal", help="signal|kernel-signal|report")
    a.add_argument("--signal", default="TERM", help="signal name or number (default TERM)")
    a.add_argument("--kill-after", default="2s", metavar="DURATION",
                   help="SIGKILL if not exited by then (default 2s; 0 = never)")
    a.add_argument("--max-in-flight", default=str(DEFAULT_MAX_IN_FLIGHT), metavar="N")
    a.add_argument("--count", metavar="N", help="stop after N targets were handled")
    a.add_argument("--duration", metavar="DURATION", help="stop after this long")
    a.add_argument("--busy-poll", action="store_true",
                   help="never sleep: keeps one CPU busy all along, and --action signal "
                        "reaches its targets about a third sooner")
    o = ap.add_argument_group("output")
    o.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="JSON lines to FILE (default stdout)")
    o.add_argument("--syslog", action="store_true", help="also log to syslog")
    o.add_argument("--quiet", "-q", action="store_true", help="only the summary")
    return ap


_VALUE_OPTS = {"--comm": "comm", "--cgroup": "cgroup", "--uid": "uid", "--syscall": "syscall",
               "--kprobe": "kprobe", "--hook": "hook", "--skip": "skip", "--action": "action",
               "--signal": "signal", "--kill-after": "kill_after",
               "--max-in-flight": "max_in_flight", "--count": "count", "--duration": "duration"}
_FLAG_OPTS = {"--global-skip": "global_skip", "--syslog": "syslog", "--quiet": "quiet",
              "-q": "quiet", "--busy-poll": "busy_poll"}


class _Args:
    pass


def _fast_args(argv: list[str]) -> _Args | None:
    """What build_parser().parse_args(argv) gives, for plain command lines (full
    option names, values not starting with '-'); None for anything else, which
    argparse then parses and reports.  Saves importing argparse, gettext, locale
    and re: several milliseconds of every start."""
    ns = _Args()
    ns.__dict__.update(comm=None, pid=[], cgroup=None, uid=None, syscall=None, kprobe=None,
                       hook="auto", skip="0", global_skip=False, action="signal",
                       signal="TERM", kill_after="2s",
                       max_in_flight=str(DEFAULT_MAX_IN_FLIGHT), count=None,
                       duration=None, json=None, syslog=False, quiet=False, busy_poll=False)
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAG_OPTS and not eq:
            setattr(ns, _FLAG_OPTS[name], True)
            continue
        if name == "--json":
            if not eq:
                value = "-"
                if i < n and argv[i] and not argv[i].startswith("-"):
                    value = argv[i]
                    i += 1
            ns.json = value
            continue
        if name not in _VALUE_OPTS and name != "--pid":
            return None
        if not eq:
            if i >= n or argv[i].startswith("-"):
                return None
            value = argv[i]
            i += 1
        if name == "--pid":
            ns.pid = [*ns.pid, value]
        else:
            setattr(ns, _VALUE_OPTS[name], value)
    return ns


def parse_watch(argv: list[str], arch: str | None = None) -> WatchOptions:
    ns = _fast_args(argv) or build_parser(for_help=False).parse_args(argv)
    o = WatchOptions()
    if ns.comm is not None:
        comm = ns.comm
        if not comm or "\0" in comm:
            raise UsageError("--comm must be a non-empty name")
        if len(comm.encode()) >= TASK_COMM_LEN:
            raise UsageError(f"--comm {comm!r} is longer than the kernel keeps (15 bytes); "
                             f"use {comm.encode()[:15].decode(errors='ignore')!r}")
        o.comm = comm
    o.pids = parse_pids(ns.pid)
    if ns.cgroup is not None:
        o.cgroup = ns.cgroup
        o.cgroup_id, o.cgroup_level = cgroup_id(ns.cgroup)
    if ns.uid is not None:
        o.uid = parse_uid(ns.uid)

    if ns.hook not in HOOKS:
        raise UsageError(f"--hook {ns.hook!r}: choose one of {', '.join(HOOKS)}")
    o.hook = ns.hook
    if ns.kprobe is not None:
        if ns.syscall is not None:
            raise UsageError("give --syscall or --kprobe, not both")
        if o.hook in ("raw_tp", "tracepoint"):
            raise UsageError(f"--kprobe needs --hook kprobe, fentry or auto, not {o.hook}")
        o.kprobe, o.kprobe_offset = parse_kprobe(ns.kprobe)
        o.syscall = None
        if o.hook == "fentry" and o.kprobe_offset:
            raise UsageError("fentry attaches at a function's start: drop the +OFFSET "
                             "or use --hook kprobe")
    else:
        from .syscalls import UnknownSyscallError, resolve
        try:
            o.syscall, o.syscall_nr = resolve(ns.syscall or "write", arch)
        except UnknownSyscallError as e:
            raise UsageError(f"--syscall: {e}") from None

    o.skip = parse_count(ns.skip, "--skip")
    o.skip_global = ns.global_skip
    if ns.action not in ACTIONS:
        raise UsageError(f"--action {ns.action!r}: choose one of {', '.join(ACTIONS)}")
    o.action = ns.action
    o.signal = parse_signal(ns.signal)
    o.kill_after_ns = parse_duration(ns.kill_after, "--kill-after")
    o.max_in_flight = parse_count(ns.max_in_flight, "--max-in-flight", 1)
    if ns.count is not None:
        o.count = parse_count(ns.count, "--count", 1)
    if ns.duration is not None:
        o.duration_ns = parse_duration(ns.duration, "--duration")
        if o.duration_ns == 0:
            raise UsageError("--duration must be longer than 0")
    o.json, o.syslog, o.quiet, o.busy_poll = ns.json, ns.syslog, ns.quiet, ns.busy_poll

    # Signalling every caller of write() on the machine is never what anyone meant.
    if not o.has_filter and o.action != "report":
        raise UsageError("name the processes to act on with --comm, --pid, --cgroup or --uid "
                         "(or use --action report to only watch)")
    return o
