"""The ``watch`` command line: parsing and validation into a WatchOptions.

OPTIONS is the one table of the options: the argparse parser (--help, and any
command line out of the ordinary), the fast parser (plain command lines, without
importing argparse) and WatchOptions' fields and defaults are all made from it.
Every bad argument raises UsageError with one line that says what to write instead;
the CLI prints it and exits 2 (argparse's own usage dump is turned into the same).
"""
from __future__ import annotations

import os

from .record import Record

from ..errors import UsageError

TASK_COMM_LEN = 16           # the kernel's comm buffer, NUL included
HOOKS = ("auto", "raw_tp", "tracepoint", "kprobe", "fentry")
# auto: kernel-signal where the kernel has bpf_send_signal, else signal (cli.py decides)
ACTIONS = ("auto", "signal", "kernel-signal", "report")


_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
_DAY_NS = 86_400_000_000_000

# The ranges of the options, said in --help.  Each is what its consumer can hold:
KILL_AFTER_MAX_NS = _DAY_NS          # a timer deadline; nobody waits a day for an exit
# one epoll_wait() holds the whole of it: its timeout is an int of ms (24.8 days)
DURATION_MAX_NS = 24 * _DAY_NS
SKIP_MAX = 2**64 - 2                 # the kernel's per-process call count is a u64
MAX_IN_FLIGHT_MAX = 65536            # a pidfd each: the tool raises RLIMIT_NOFILE to fit
COUNT_MAX = 2**32
UID_MAX = 2**32 - 2                  # uid_t; (uid_t)-1 means "no uid"
KPROBE_OFFSET_MAX = 2**32 - 1
KSYM_NAME_LEN = 512                  # the kernel's longest symbol, NUL included (6.1+)
PID_MAX_LIMIT = 4 * 1024 * 1024      # the most /proc/sys/kernel/pid_max can be (64-bit)


def _shown(text: str) -> str:
    """repr() of an argument, cut short: an error line stays one readable line."""
    r = repr(text)
    return r if len(r) <= 40 else r[:32] + "...'"


def _digits(text: str) -> str | None:
    """``text`` stripped, if it is decimal ASCII digits; else None (int() would
    also take "1_000", "+5", other scripts' digits, and refuse 4,301 of them)."""
    t = text.strip()
    return t if t.isascii() and t.isdigit() else None


def parse_duration(text: str, what: str = "duration", maximum_ns: int | None = None) -> int:
    """``"300ms"`` -> 300_000_000 ns.  Units: ms, s, m; ``0`` alone is allowed.
    Exact to the nanosecond (no float); above ``maximum_ns`` is a UsageError."""
    t = text.strip()
    if t == "0":
        return 0
    unit = next((u for u in ("ms", "s", "m") if t.endswith(u)), None)
    whole, _, frac = (t[:-len(unit)].rstrip() if unit else t).partition(".")
    if not (whole or frac) or not all(x.isascii() and x.isdigit() for x in (whole, frac) if x):
        raise UsageError(f"bad {what} {_shown(text)}: write a number with ms, s or m "
                         "(e.g. 300ms, 2s)")
    if unit is None:
        raise UsageError(f"{what} {_shown(text)} needs a unit: ms, s or m (e.g. 300ms, 2s, 1m)")
    u = _UNIT_NS[unit]
    frac = frac[:12]             # digits past a picosecond of a ms do not change the ns
    too_long = len(whole.lstrip("0")) > 20
    ns = 0 if too_long else int(whole or "0") * u + \
        (int(frac or "0") * u * 2 + 10 ** len(frac)) // (2 * 10 ** len(frac))
    if too_long or maximum_ns is not None and ns > maximum_ns:
        raise UsageError(f"{what} {_shown(text)} is too long: at most "
                         f"{_spell_duration(maximum_ns or 0)}")
    return ns


def _spell_duration(ns: int) -> str:
    """ns -> the shortest exact way to write it: 2_000_000_000 -> "2s"."""
    for unit in ("m", "s", "ms"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns // 1_000_000}.{ns % 1_000_000:06d}".rstrip("0") + "ms"


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm``, ``15``, ``RTMIN+2`` -> signal number."""
    import _signal            # the C module: ``signal`` builds enums (ms at start-up)
    t = text.strip().upper()
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    if _digits(t) is not None:
        n = int(t) if len(t) < 5 else rtmax + 1
    else:
        if t.startswith("SIG"):
            t = t[3:]
        m = None
        if t.startswith("RT"):
            import re
            m = re.match(r"^RTMIN(?:\+([0-9]{1,4}))?$", t) or \
                re.match(r"^RTMAX(?:-([0-9]{1,4}))?$", t)
        if m:
            off = int(m.group(1) or 0)
            n = rtmin + off if t.startswith("RTMIN") else rtmax - off
        else:
            # the names signal.Signals has: SIG + letters and digits (not SIG_DFL...)
            sig = getattr(_signal, "SIG" + t, None) if t.isalnum() and t.isascii() else None
            if sig is None:
                raise UsageError(f"unknown signal {_shown(text)}: use a name like TERM, INT, "
                                 f"KILL, USR1 or a number 1-{rtmax}")
            n = int(sig)
    if not 1 <= n <= rtmax:
        raise UsageError(f"signal {_shown(text)} is out of range: use 1-{rtmax}")
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


_SYMBOL = r"^([A-Za-z_][A-Za-z0-9_.]*)(?:\+(0x[0-9a-fA-F]{1,16}|[0-9]{1,20}))?$"


def parse_kprobe(text: str) -> tuple[str, int]:
    """``do_sys_openat2+0x1a`` -> (``"do_sys_openat2"``, 26)."""
    m = _re().match(_SYMBOL, text.strip())
    if not m:
        raise UsageError(f"bad --kprobe {_shown(text)}: write SYMBOL or SYMBOL+OFFSET "
                         "(e.g. ksys_write or ksys_write+0x10)")
    symbol, off = m.group(1), int(m.group(2) or "0", 0)
    if len(symbol) >= KSYM_NAME_LEN:
        raise UsageError(f"--kprobe {_shown(text)}: no kernel symbol is longer than "
                         f"{KSYM_NAME_LEN - 1} characters")
    if off > KPROBE_OFFSET_MAX:
        raise UsageError(f"--kprobe {_shown(text)}: the offset must be at most "
                         f"{KPROBE_OFFSET_MAX:#x}")
    return symbol, off


def parse_comm(text: str, what: str = "--comm") -> str:
    """The kernel's comm is bytes: the text is what ``os.fsdecode`` makes of them
    (argv's undecodable bytes arrive as surrogates), so ``os.fsencode`` gives them back."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise UsageError(f"{what} {_shown(text)} is not a file system string "
                         "(name the bytes as the command line passes them)") from None
    if not raw or b"\0" in raw:
        raise UsageError(f"{what} must be a non-empty name without NUL")
    if len(raw) >= TASK_COMM_LEN:
        raise UsageError(f"{what} {_shown(text)} is longer than the kernel keeps "
                         f"({TASK_COMM_LEN - 1} bytes); use {os.fsdecode(raw[:15])!r}")
    return text


def parse_syscall_name(text: str) -> str:
    """A syscall name or number as written; parse_watch looks it up."""
    t = text.strip()
    if not t:
        raise UsageError(f"--syscall {text!r} names no syscall: give a name or number "
                         "(e.g. write, openat, 1)")
    if t.isdigit() and _digits(t) is None or len(t) > 64:
        raise UsageError(f"--syscall {_shown(text)} is no syscall name or number")
    return t


def parse_count(text: str, what: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    """A whole number from ``minimum`` to ``maximum``: decimal ASCII digits only."""
    t = _digits(text)
    if t is None:
        raise UsageError(f"{what} {_shown(text)} is not a whole number "
                         f"({minimum} to {maximum})")
    n = int(t) if len(t) <= 30 else maximum + 1
    if not minimum <= n <= maximum:
        raise UsageError(f"{what} must be {minimum} to {maximum}, not {_shown(text)}")
    return n


def pid_max() -> int:
    """/proc/sys/kernel/pid_max: every pid is below it."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return PID_MAX_LIMIT


def parse_pids(values: list[str]) -> tuple[int, ...]:
    """``["5,6", "7"]`` -> (5, 6, 7): each below pid_max and a live user process,
    neither init nor this tool nor one of its ancestors (see check_pid)."""
    pids: list[int] = []
    top = pid_max() - 1
    for v in values:
        for part in v.split(","):
            t = _digits(part)
            if t is None:
                raise UsageError(f"--pid {_shown(v)}: give process ids, e.g. --pid 1234 "
                                 "or --pid 1234,1235")
            n = int(t) if len(t) <= 10 else top + 1
            if not 1 <= n <= top:
                raise UsageError(f"--pid {_shown(part.strip())} is out of range: pids are "
                                 f"1 to {top} here (pid_max is {top + 1})")
            pids.append(n)
    pids = list(dict.fromkeys(pids))
    if pids:
        from .procinfo import ancestors
        protected = ancestors()
        for pid in pids:
            check_pid(pid, protected)
    return tuple(pids)


def check_pid(pid: int, protected: frozenset[int]) -> None:
    """Refuse a pid that would surprise: init, a kernel thread, a thread id, a pid
    no process has now (the next process to get it would be watched, the way
    ``strace -p`` refuses it too), or one of ``protected`` (the tool and its ancestors)."""
    from .procinfo import read_stat
    if pid == 1:
        raise UsageError("--pid 1 is init: signalling it takes the system (or container) "
                         "down; name another process")
    st = read_stat(pid)
    if st is None:
        raise UsageError(f"--pid {pid}: no such process (a process started later could be "
                         "given that pid: start the watch once it runs)")
    if st.kernel_thread:
        raise UsageError(f"--pid {pid} is a kernel thread ({st.comm}): it calls no syscalls "
                         "of its own and takes no signals; name a user process")
    tgid = _tgid(pid)
    if tgid is not None and tgid != pid:
        raise UsageError(f"--pid {pid} is a thread of process {tgid}: --pid takes process "
                         f"ids; give {tgid}")
    if pid in protected:
        raise UsageError(f"--pid {pid} is this tool or one of its ancestors ({st.comm}); "
                         "name another process")


def _tgid(pid: int) -> int | None:
    """The process a task id belongs to (``Tgid:`` of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for ln in f:
                if ln.startswith(b"Tgid:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return None


def parse_uid(text: str) -> int:
    """A user name or a uid from 0 to UID_MAX."""
    if _digits(text) is not None:
        return parse_count(text, "--uid", 0, UID_MAX)
    import pwd
    try:
        uid = pwd.getpwnam(text.strip()).pw_uid
    except (KeyError, ValueError):       # ValueError: a NUL or an unencodable name
        raise UsageError(f"unknown user {_shown(text)} for --uid: give a user name "
                         "or number") from None
    return uid


class _Mount(Record):
    """A line of /proc/self/mountinfo: where a file system is mounted, its type, and
    which of its directories is mounted there (not "/" for a bind mount of a subtree)."""
    __slots__ = ("point", "fstype", "root")


def _mounts() -> list[_Mount]:
    """/proc/self/mountinfo, in its order (a later mount on a point hides an earlier)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for ln in lines:
        parts = ln.split()
        sep = parts.index(b"-")          # optional fields come before it
        root, point = (_unescape(x) for x in parts[3:5])
        out.append(_Mount(point=point, fstype=parts[sep + 1].decode(), root=root))
    return out


def _unescape(field: bytes) -> str:
    # the kernel writes space, tab, newline and backslash as octal escapes
    for esc, raw in ((rb"\040", b" "), (rb"\011", b"\t"), (rb"\012", b"\n"),
                     (rb"\134", b"\\")):
        field = field.replace(esc, raw)
    return os.fsdecode(field)


def _mount_of(path: str, mounts: list[_Mount]) -> _Mount:
    """The mount a resolved absolute path lies on."""
    best = _Mount(point="/", fstype="", root="/")
    for m in mounts:
        if (path == m.point or path.startswith(m.point.rstrip("/") + "/")) and \
                len(m.point) >= len(best.point):
            best = m
    return best


def cgroup_id(path: str) -> tuple[int, int]:
    """A cgroup v2 directory -> (id, level).  The id is the directory's inode number
    (what ``bpf_get_current_cgroup_id()`` reports); the level is its depth below the
    cgroup2 root (root = 0), for ``bpf_get_current_ancestor_cgroup_id(level)``.

    A relative path is taken below the cgroup2 mount, and so is an absolute one that
    is not a cgroup2 directory itself: ``/system.slice/foo.service`` as
    /proc/PID/cgroup writes it.  Symlinks and ``..`` are resolved first, so every
    spelling of the root ("", ".", "/", the mount point...) comes back as level 0."""
    try:
        if "\0" in path:
            raise ValueError
        os.fsencode(path)
    except ValueError:          # UnicodeEncodeError too
        raise UsageError(f"--cgroup {_shown(path)} is not a path") from None
    mounts = _mounts()
    # the hierarchy's root first: a bind mount of a cgroup below it may come earlier
    cg2 = sorted((m for m in mounts if m.fstype == "cgroup2"), key=lambda m: m.root != "/")
    if not cg2:
        raise UsageError("--cgroup needs a cgroup v2 hierarchy and none is mounted "
                         "(mount -t cgroup2 none /sys/fs/cgroup)")
    top = cg2[0].point

    def cgroup_dir(p: str) -> bool:
        return _mount_of(p, mounts).fstype == "cgroup2" and \
            os.path.isfile(os.path.join(p, "cgroup.procs"))

    p = os.path.realpath(os.path.join(top, path))     # join keeps an absolute path
    if not cgroup_dir(p) and os.path.isabs(path):
        below = os.path.realpath(os.path.join(top, path.lstrip("/")))
        p = below if cgroup_dir(below) else p
    try:
        st = os.stat(p)
    except OSError as e:
        raise UsageError(f"--cgroup {_shown(path)}: {e.strerror}; give a cgroup v2 directory "
                         f"such as {top}/system.slice/foo.service") from None
    if not cgroup_dir(p):
        raise UsageError(f"--cgroup {_shown(path)} is not a cgroup v2 directory (cgroup2 is "
                         f"mounted on {', '.join(m.point for m in cg2)})")
    m = _mount_of(p, mounts)
    # its path in the hierarchy: the mounted directory, then the path below the mount
    rel = os.path.normpath(os.path.join(m.root, os.path.relpath(p, m.point)))
    level = 0 if rel == "/" else len(rel.strip("/").split("/"))
    return st.st_ino, level


class Option(Record):
    """One ``watch`` option: the one place its names, kind, default and help live.

    ``fields``: the WatchOptions fields it fills, with their defaults (the first is
    the option's own value; the others are derived from it, e.g. a cgroup's id).
    ``kind``: "value" (one argument), "append" (repeatable), "optional" (an
    argument may follow; alone it means ``const``), or "flag" (no argument).
    ``parse``: text (a list for "append") -> the value, or a tuple for every field;
    None keeps the text.  ``spell``: the default as one would write it, for --help.
    """
    __slots__ = ("flags", "fields", "kind", "parse", "spell", "metavar", "help", "group",
                 "const")
    _defaults = {"kind": "value", "parse": None, "spell": None, "metavar": None,
                 "const": None}

    @property
    def field(self) -> str:
        return next(iter(self.fields))

    @property
    def default(self):
        return self.fields[self.field]


def _spell_signal(n: int) -> str:
    return signal_name(n)[3:]


_WHICH, _ROUTINE, _WHAT, _OUTPUT = "which processes", "which routine", "what to do", "output"

OPTIONS: tuple[Option, ...] = (
    Option(flags=("--comm",), fields={"comm": None}, metavar="NAME",
           parse=parse_comm, group=_WHICH,
           help=f"task name, as in /proc/PID/comm: 1 to {TASK_COMM_LEN - 1} bytes"),
    Option(flags=("--pid",), fields={"pids": ()}, kind="append", metavar="PID",
           parse=lambda v, what: parse_pids(v), group=_WHICH,
           help="process id(s) of live user processes; repeat or comma-separate"),
    Option(flags=("--cgroup",), fields={"cgroup": None, "cgroup_id": None, "cgroup_level": 0},
           metavar="PATH", parse=lambda v, what: (v, *cgroup_id(v)), group=_WHICH,
           help="cgroup v2 directory, or its path below the cgroup2 mount "
                "(as in /proc/PID/cgroup)"),
    Option(flags=("--uid",), fields={"uid": None}, metavar="USER",
           parse=lambda v, what: parse_uid(v), group=_WHICH,
           help=f"the caller's real user, a name or id (0 to {UID_MAX})"),
    # --syscall is looked up (for the architecture) once --kprobe is known: parse_watch
    Option(flags=("--syscall",), fields={"syscall": "write", "syscall_nr": None},
           metavar="NAME", spell=str, parse=lambda v, what: (parse_syscall_name(v), None),
           group=_ROUTINE, help="syscall name or number"),
    Option(flags=("--kprobe",), fields={"kprobe": None, "kprobe_offset": 0},
           metavar="SYMBOL[+OFFSET]", parse=lambda v, what: parse_kprobe(v), group=_ROUTINE,
           help=f"kernel function and offset (the offset at most {KPROBE_OFFSET_MAX:#x})"),
    Option(flags=("--hook",), fields={"hook": "auto"}, metavar="|".join(HOOKS), spell=str,
           parse=lambda v, what: _choice(v, what, HOOKS), group=_ROUTINE,
           help="how to hook the routine"),
    Option(flags=("--skip",), fields={"skip": 0}, metavar="N", spell=str,
           parse=lambda v, what: parse_count(v, what, 0, SKIP_MAX), group=_ROUTINE,
           help="let N matching calls through (0 to 2^64-2)"),
    Option(flags=("--global-skip",), fields={"skip_global": False}, kind="flag",
           group=_ROUTINE, help="count --skip across all matching processes, not per process"),
    Option(flags=("--action",), fields={"action": "auto"}, metavar="|".join(ACTIONS),
           spell=str, parse=lambda v, what: _choice(v, what, ACTIONS), group=_WHAT,
           help="(default {default}: the kernel signals at the call where it can)"),
    Option(flags=("--signal",), fields={"signal": 15}, metavar="SIGNAL", spell=_spell_signal,
           parse=lambda v, what: parse_signal(v), group=_WHAT,
           help="signal name or number (1 to SIGRTMAX)"),
    Option(flags=("--kill-after",), fields={"kill_after_ns": 2_000_000_000},
           metavar="DURATION", spell=_spell_duration, group=_WHAT,
           parse=lambda v, what: parse_duration(v, what, KILL_AFTER_MAX_NS),
           help=f"SIGKILL if not exited by then, 0 = never (at most "
                f"{_spell_duration(KILL_AFTER_MAX_NS)}, 1 day)"),
    Option(flags=("--max-in-flight",), fields={"max_in_flight": 4096}, metavar="N", spell=str,
           parse=lambda v, what: parse_count(v, what, 1, MAX_IN_FLIGHT_MAX), group=_WHAT,
           help=f"targets signalled and not yet exited at once (1 to {MAX_IN_FLIGHT_MAX})"),
    Option(flags=("--count",), fields={"count": None}, metavar="N",
           parse=lambda v, what: parse_count(v, what, 1, COUNT_MAX), group=_WHAT,
           help=f"stop after N targets were handled (1 to {COUNT_MAX})"),
    Option(flags=("--duration",), fields={"duration_ns": None}, metavar="DURATION",
           parse=lambda v, what: _positive_duration(v, what), group=_WHAT,
           help=f"stop after this long (at most {_spell_duration(DURATION_MAX_NS)}, "
                "24 days)"),
    Option(flags=("--busy-poll",), fields={"busy_poll": False}, kind="flag", group=_WHAT,
           help="never sleep: keeps one CPU busy all along, and --action signal "
                "reaches its targets about a third sooner"),
    Option(flags=("--json",), fields={"json": None}, kind="optional", const="-",
           metavar="FILE", group=_OUTPUT, help="JSON lines to FILE (default stdout)"),
    Option(flags=("--syslog",), fields={"syslog": False}, kind="flag", group=_OUTPUT,
           help="also log to syslog"),
    Option(flags=("--quiet", "-q"), fields={"quiet": False}, kind="flag", group=_OUTPUT,
           help="only the summary"),
)

# The value of every WatchOptions field when its option is not given.
DEFAULTS: dict = {f: d for opt in OPTIONS for f, d in opt.fields.items()}


def _choice(text: str, what: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise UsageError(f"{what} {text!r}: choose one of {', '.join(choices)}")
    return text


def _positive_duration(text: str, what: str) -> int:
    ns = parse_duration(text, what, DURATION_MAX_NS)
    if ns == 0:
        raise UsageError(f"{what} must be longer than 0")
    return ns


class WatchOptions(Record):
    """A validated ``watch`` command line (see OPTIONS for the meaning)."""
    __slots__ = tuple(DEFAULTS)
    _defaults = DEFAULTS

    def check_filter(self) -> None:
        """Refuse to signal when the filters select every process, or nearly: no
        filter, the cgroup2 root, or --uid 0 with nothing else.  --comm, --pid, a
        cgroup below the root and any other uid are each narrow enough alone (they
        all must match).  A report signals nobody and may watch everything."""
        if self.action == "report":
            return
        root = self.cgroup_id is not None and self.cgroup_level == 0
        if self.comm or self.pids or self.cgroup_id is not None and not root or \
                self.uid not in (None, 0):
            return
        report = " (or use --action report to only watch)"
        if root:
            raise UsageError(f"--cgroup {_shown(self.cgroup)} is the cgroup2 root, which holds "
                             "every process: name a cgroup below it, or add --comm, --pid or "
                             "another --uid than 0"
                             + report)
        if self.uid == 0:
            raise UsageError("--uid 0 alone names nearly every process (root runs most of "
                             "them): add --comm, --pid or --cgroup" + report)
        raise UsageError("name the processes to act on with --comm, --pid, --cgroup or --uid"
                         + report)


_EPILOG = """\
which processes are narrow enough:
  --comm, --pid, a --cgroup below the cgroup2 root, and --uid N for any N but 0
  are each enough alone (given together, all must match).  Refused, because they
  select every process or nearly: no filter; the cgroup2 root in any spelling
  ("", ".", "/", its mount point, a path or symlink resolving to it); --uid 0
  (root) without --comm, --pid or a cgroup.  --action report signals nobody and
  may watch without a filter.
  --pid takes live user processes only: not init (1), not a kernel thread, not
  this tool or one of its ancestors, and not a pid that does not exist now (the
  next process given that pid would be signalled).

A bad command line prints one line and exits with status 2."""


def build_parser(for_help: bool = True):
    """The ``watch`` argparse parser, made from OPTIONS; its errors raise UsageError
    (one line).  ``for_help=False``: for parsing only, at a fixed width, so argparse
    does not import shutil (and bz2, lzma...) to ask the terminal's, which costs ms
    at start.  Every option's default is None (False for a flag): parse_watch
    fills in DEFAULTS, so both parsers give the same namespace."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse would print usage and exit(2)
            raise UsageError(message)

    fmt = argparse.RawDescriptionHelpFormatter
    ap = _Parser(prog="rawprobe watch", epilog=_EPILOG, formatter_class=fmt if for_help else
                 lambda prog: fmt(prog, width=80), description=(
                     "Signal the processes that call a kernel routine and time their exit."))
    groups: dict = {}
    for opt in OPTIONS:
        g = groups.get(opt.group) or groups.setdefault(opt.group,
                                                       ap.add_argument_group(opt.group))
        text = opt.help
        if opt.spell is None:
            pass
        elif "{default}" in text:
            text = text.replace("{default}", opt.spell(opt.default))
        else:                           # "(1 to 9)" -> "(1 to 9; default 4)"
            shown = f"default {opt.spell(opt.default)}"
            text = text[:-1] + f"; {shown})" if text.endswith(")") else f"{text} ({shown})"
        kw: dict = {"dest": opt.field, "help": text}
        if opt.kind == "flag":
            kw["action"] = "store_true"
        else:
            kw["metavar"] = opt.metavar
            if opt.kind == "append":
                kw["action"] = "append"
            elif opt.kind == "optional":
                kw.update(nargs="?", const=opt.const)
        g.add_argument(*opt.flags, **kw)
    return ap


# option name -> Option, for the fast parser
_BY_FLAG = {flag: opt for opt in OPTIONS for flag in opt.flags}


class _Args:
    pass


def _fast_args(argv: list[str]) -> _Args | None:
    """What build_parser().parse_args(argv) gives, for plain command lines (full
    option names, values not starting with '-'); None for anything else, which
    argparse then parses and reports.  Saves importing argparse, gettext, locale
    and re: several milliseconds of every start."""
    ns = _Args()
    d = ns.__dict__
    for opt in OPTIONS:
        d[opt.field] = False if opt.kind == "flag" else None
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = _BY_FLAG.get(name)
        if opt is None:
            return None
        kind = opt.kind
        if kind == "flag":
            if eq:
                return None
            d[opt.field] = True
            continue
        if not eq:
            if kind == "optional":
                value = opt.const
                if i < n and argv[i] and not argv[i].startswith("-"):
                    value = argv[i]
                    i += 1
            elif i >= n or argv[i].startswith("-"):
                return None
            else:
                value = argv[i]
                i += 1
        d[opt.field] = [*(d[opt.field] or ()), value] if kind == "append" else value
    return ns


def parse_watch(argv: list[str], arch: str | None = None) -> WatchOptions:
    ns = _fast_args(argv) or build_parser(for_help=False).parse_args(argv)
    given = {}
    for opt in OPTIONS:
        raw = getattr(ns, opt.field)
        if raw is None or raw is False:
            continue                      # not given: DEFAULTS has its value
        if opt.parse is None:
            given[opt.field] = raw
        elif len(opt.fields) > 1:
            given.update(zip(opt.fields, opt.parse(raw, opt.flags[0]), strict=True))
        else:
            given[opt.field] = opt.parse(raw, opt.flags[0])
    o = WatchOptions(**given)

    if o.kprobe is not None:
        if ns.syscall is not None:
            raise UsageError("give --syscall or --kprobe, not both")
        if o.hook in ("raw_tp", "tracepoint"):
            raise UsageError(f"--kprobe needs --hook kprobe, fentry or auto, not {o.hook}")
        o.syscall = None
        if o.hook == "fentry" and o.kprobe_offset:
            raise UsageError("fentry attaches at a function's start: drop the +OFFSET "
                             "or use --hook kprobe")
    else:
        from .syscalls import UnknownSyscallError, resolve
        try:
            o.syscall, o.syscall_nr = resolve(o.syscall, arch)
        except UnknownSyscallError as e:
            raise UsageError(f"--syscall: {e}") from None

    # Signalling every caller of write() on the machine is never what anyone meant.
    o.check_filter()
    return o
