"""The ``watch`` command line: parsing and validation into a WatchOptions.

OPTIONS is the one table of the options: the argparse parser (--help, and any
command line out of the ordinary), the fast parser (plain command lines, without
importing argparse) and WatchOptions' fields and defaults are all made from it.
Every bad argument raises UsageError with one line that says what to write instead;
the CLI prints it and exits 2 (argparse's own usage dump is turned into the same).
"""
from __future__ import annotations

from .optvalues import (ERRNO_MAX, KPROBE_OFFSET_MAX, TASK_COMM_LEN, UID_MAX, parse_cgroup,
                        parse_comm, parse_count, parse_duration, parse_errno, parse_kprobe,
                        parse_listen, parse_lsm_hook, parse_pids, parse_signal, parse_size,
                        parse_syscall_name, parse_uid, shown, signal_name, spell_duration)
from .record import Record

from ..errors import UsageError, errno_name

HOOKS = ("auto", "raw_tp", "tracepoint", "kprobe", "fentry", "lsm", "fmod_ret")
# auto: kernel-signal where the kernel has bpf_send_signal, else signal (cli.py decides);
# deny, deny-signal: the call fails in the kernel (interceptor/deny.py)
ACTIONS = ("auto", "signal", "kernel-signal", "report", "deny", "deny-signal")


_DAY_NS = 86_400_000_000_000

# The ranges of the options that are a choice (the others are what the kernel holds:
# optvalues), said in --help.
KILL_AFTER_MAX_NS = _DAY_NS          # a timer deadline; nobody waits a day for an exit
# one epoll_wait() holds the whole of it: its timeout is an int of ms (24.8 days)
DURATION_MAX_NS = 24 * _DAY_NS
SKIP_MAX = 2**64 - 2                 # the kernel's per-process call count is a u64
MAX_IN_FLIGHT_MAX = 65536            # a pidfd each: the tool raises RLIMIT_NOFILE to fit
COUNT_MAX = 2**32
# The ring buffer's size: a power of two, at least a page; at most what a watch could
# sensibly lock in kernel memory.
RING_SIZE_MIN, RING_SIZE_MAX = 4096, 1 << 30


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


def _choice(text: str, what: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise UsageError(f"{what} {text!r}: choose one of {', '.join(choices)}")
    return text


def _positive_duration(text: str, what: str) -> int:
    ns = parse_duration(text, what, DURATION_MAX_NS)
    if ns == 0:
        raise UsageError(f"{what} must be longer than 0")
    return ns


def _spell_signal(n: int) -> str:
    return signal_name(n)[3:]


_WHICH, _ROUTINE, _WHAT, _OUTPUT = "which processes", "which routine", "what to do", "output"

OPTIONS: tuple[Option, ...] = (
    Option(flags=("--comm",), fields={"comm": None}, metavar="NAME",
           parse=parse_comm, group=_WHICH,
           help=f"task name, as in /proc/PID/comm: 1 to {TASK_COMM_LEN - 1} bytes"),
    Option(flags=("--pid",), fields={"pids": ()}, kind="append", metavar="PID",
           parse=parse_pids, group=_WHICH,
           help="process id(s) of live user processes; repeat or comma-separate"),
    Option(flags=("--cgroup",), fields={"cgroup": None, "cgroup_id": None, "cgroup_level": 0},
           metavar="PATH", parse=parse_cgroup, group=_WHICH,
           help="cgroup v2 directory, or its path below the cgroup2 mount "
                "(as in /proc/PID/cgroup)"),
    Option(flags=("--uid",), fields={"uid": None}, metavar="USER",
           parse=parse_uid, group=_WHICH,
           help=f"the caller's real user, a name or id (0 to {UID_MAX})"),
    # --syscall is looked up (for the architecture) once --kprobe is known: parse_watch
    Option(flags=("--syscall",), fields={"syscall": "write", "syscall_nr": None},
           metavar="NAME", spell=str, parse=lambda v, what: (parse_syscall_name(v, what), None),
           group=_ROUTINE, help="syscall name or number"),
    Option(flags=("--kprobe",), fields={"kprobe": None, "kprobe_offset": 0},
           metavar="SYMBOL[+OFFSET]", parse=parse_kprobe, group=_ROUTINE,
           help=f"kernel function and offset (the offset at most {KPROBE_OFFSET_MAX:#x})"),
    Option(flags=("--lsm",), fields={"lsm": None}, metavar="HOOK", parse=parse_lsm_hook,
           group=_ROUTINE,
           help="deny at this LSM hook (file_open, socket_connect, ...): in any syscall, "
                "or only --syscall's if given; with --action deny or deny-signal"),
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
           help="(default {default}: the kernel signals at the call where it can; deny and "
                "deny-signal make the call itself fail, with --errno)"),
    Option(flags=("--errno",), fields={"deny_errno": 1}, metavar="NAME",
           spell=lambda n: errno_name(n), parse=parse_errno, group=_WHAT,
           help=f"what a denied call returns: an errno name or number (1 to {ERRNO_MAX})"),
    Option(flags=("--signal",), fields={"signal": 15}, metavar="SIGNAL", spell=_spell_signal,
           parse=parse_signal, group=_WHAT,
           help="signal name or number (1 to SIGRTMAX)"),
    Option(flags=("--kill-after",), fields={"kill_after_ns": 2_000_000_000},
           metavar="DURATION", spell=spell_duration, group=_WHAT,
           parse=lambda v, what: parse_duration(v, what, KILL_AFTER_MAX_NS),
           help=f"SIGKILL if not exited by then, 0 = never (at most "
                f"{spell_duration(KILL_AFTER_MAX_NS)}, 1 day)"),
    Option(flags=("--max-in-flight",), fields={"max_in_flight": 4096}, metavar="N", spell=str,
           parse=lambda v, what: parse_count(v, what, 1, MAX_IN_FLIGHT_MAX), group=_WHAT,
           help=f"targets signalled and not yet exited at once (1 to {MAX_IN_FLIGHT_MAX})"),
    Option(flags=("--count",), fields={"count": None}, metavar="N",
           parse=lambda v, what: parse_count(v, what, 1, COUNT_MAX), group=_WHAT,
           help=f"stop after N targets were handled (1 to {COUNT_MAX})"),
    Option(flags=("--duration",), fields={"duration_ns": None}, metavar="DURATION",
           parse=_positive_duration, group=_WHAT,
           help=f"stop after this long (at most {spell_duration(DURATION_MAX_NS)}, "
                "24 days)"),
    Option(flags=("--ring-size",), fields={"ring_size": None}, metavar="BYTES",
           parse=lambda v, what: parse_size(v, what, RING_SIZE_MIN, RING_SIZE_MAX),
           group=_WHAT,
           help="the kernel-to-tool ring buffer (default as built: 4M, room for a burst of "
                "about 8,000 targets at once; a power of two, 4K to 1024M)"),
    Option(flags=("--busy-poll",), fields={"busy_poll": False}, kind="flag", group=_WHAT,
           help="never sleep: keeps one CPU busy all along, and --action signal "
                "reaches its targets about a third sooner"),
    Option(flags=("--json",), fields={"json": None}, kind="optional", const="-",
           metavar="FILE", group=_OUTPUT, help="JSON lines to FILE (default stdout)"),
    Option(flags=("--syslog",), fields={"syslog": False}, kind="flag", group=_OUTPUT,
           help="also log to syslog"),
    Option(flags=("--quiet", "-q"), fields={"quiet": False}, kind="flag", group=_OUTPUT,
           help="only the summary"),
    Option(flags=("--metrics",), fields={"metrics": None}, metavar="ADDR:PORT",
           parse=parse_listen, group=_OUTPUT,
           help="serve the counters and the time-to-exit and latency histograms to "
                "Prometheus at http://ADDR:PORT/metrics (:PORT: every address; needs "
                "pip install 'rawprobe[metrics]')"),
)

# The value of every WatchOptions field when its option is not given.
DEFAULTS: dict = {f: d for opt in OPTIONS for f, d in opt.fields.items()}


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
            raise UsageError(f"--cgroup {shown(self.cgroup)} is the cgroup2 root, which holds "
                             "every process: name a cgroup below it, or add --comm, --pid or "
                             "a --uid other than 0" + report)
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
    elif o.lsm is not None and ns.syscall is None:
        o.syscall = None                  # --lsm alone: the hook, in any syscall
    else:
        from .syscalls import UnknownSyscallError, resolve
        try:
            o.syscall, o.syscall_nr = resolve(o.syscall, arch)
        except UnknownSyscallError as e:
            raise UsageError(f"--syscall: {e}") from None
    if o.action in ("deny", "deny-signal") or o.hook in ("lsm", "fmod_ret") or \
            "lsm" in given or "deny_errno" in given:
        from .deny import check_deny_options
        check_deny_options(o, set(given))

    # Signalling every caller of write() on the machine is never what anyone meant.
    o.check_filter()
    return o
