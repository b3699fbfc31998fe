"""The value of each ``watch`` option, from its text: parsed, range-checked and,
for the process filters, checked against /proc and the mounts.

Each parser takes the text (and the option's name, for its message) and returns
the value or raises UsageError with one line saying what to write instead.  No
``re`` or ``argparse`` for the usual spellings: they cost milliseconds of start-up.
"""
from __future__ import annotations

import os

from .record import Record

from ..errors import UsageError

_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}

# what the kernel can hold
TASK_COMM_LEN = 16                   # the comm buffer, NUL included
UID_MAX = 2**32 - 2                  # uid_t; (uid_t)-1 means "no uid"
KPROBE_OFFSET_MAX = 2**32 - 1
KSYM_NAME_LEN = 512                  # the longest symbol, NUL included (6.1+)
PID_MAX_LIMIT = 4 * 1024 * 1024      # the most /proc/sys/kernel/pid_max can be (64-bit)


def shown(text: str) -> str:
    """repr() of an argument, cut short: an error line stays one readable line."""
    r = repr(text)
    return r if len(r) <= 40 else r[:32] + "...'"


def _digits(text: str) -> str | None:
    """The significant digits of ``text`` ("0" for zero), if it is decimal ASCII
    digits; else None (int() would also take "1_000", "+5", other scripts' digits,
    and refuse 4,301 of them).  Callers cap the length before int(): leading zeros
    must not make a number in range look too long."""
    t = text.strip()
    return (t.lstrip("0") or "0") if t.isascii() and t.isdigit() else None


def parse_duration(text: str, what: str = "duration", maximum_ns: int | None = None) -> int:
    """``"300ms"`` -> 300_000_000 ns.  Units: ms, s, m; ``0`` alone is allowed.
    Exact to the nanosecond (no float); above ``maximum_ns`` is a UsageError."""
    t = text.strip()
    if t == "0":
        return 0
    unit = next((u for u in ("ms", "s", "m") if t.endswith(u)), None)
    whole, _, frac = (t[:-len(unit)].rstrip() if unit else t).partition(".")
    if not (whole or frac) or not all(x.isascii() and x.isdigit() for x in (whole, frac) if x):
        raise UsageError(f"bad {what} {shown(text)}: write a number with ms, s or m "
                         "(e.g. 300ms, 2s)")
    if unit is None:
        raise UsageError(f"{what} {shown(text)} needs a unit: ms, s or m (e.g. 300ms, 2s, 1m)")
    u = _UNIT_NS[unit]
    frac = frac[:15]             # a 1e-15 of a minute is less than a ns: no more digits
    too_long = len(whole.lstrip("0")) > 20      # and no int() of 5,000 digits
    ns = 0 if too_long else int(whole or "0") * u + \
        (int(frac or "0") * u * 2 + 10 ** len(frac)) // (2 * 10 ** len(frac))   # rounded
    if too_long or maximum_ns is not None and ns > maximum_ns:
        limit = "" if maximum_ns is None else f": at most {spell_duration(maximum_ns)}"
        raise UsageError(f"{what} {shown(text)} is too long{limit}")
    return ns


def spell_duration(ns: int) -> str:
    """ns -> the shortest exact way to write it: 2_000_000_000 -> "2s"."""
    for unit in ("m", "s", "ms"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns // 1_000_000}.{ns % 1_000_000:06d}".rstrip("0") + "ms"


def parse_signal(text: str, what: str = "--signal") -> int:
    """``TERM``, ``SIGTERM``, ``sigterm``, ``15``, ``RTMIN+2`` -> signal number."""
    import _signal            # the C module: ``signal`` builds enums (ms at start-up)
    t = text.strip().upper()
    rtmin, rtmax = _signal.SIGRTMIN, _signal.SIGRTMAX
    digits = _digits(t)
    if digits is not None:
        n = int(digits) if len(digits) < 5 else rtmax + 1
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
                raise UsageError(f"{what}: unknown signal {shown(text)}: use a name like "
                                 f"TERM, INT, KILL, USR1 or a number 1-{rtmax}")
            n = int(sig)
    if not 1 <= n <= rtmax:
        raise UsageError(f"{what} {shown(text)} is out of range: use 1-{rtmax}")
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


_SYMBOL = r"^([A-Za-z_][A-Za-z0-9_.]*)(?:\+(0x[0-9a-fA-F]{1,16}|[0-9]{1,20}))?$"


def parse_kprobe(text: str, what: str = "--kprobe") -> tuple[str, int]:
    """``do_sys_openat2+0x1a`` -> (``"do_sys_openat2"``, 26)."""
    import re      # a rarer option: re costs milliseconds at start-up
    m = re.match(_SYMBOL, text.strip())
    if not m:
        raise UsageError(f"bad {what} {shown(text)}: write SYMBOL or SYMBOL+OFFSET "
                         "(e.g. ksys_write or ksys_write+0x10)")
    symbol, digits = m.group(1), m.group(2) or "0"
    if digits[0] == "0" and digits[1:2].isdigit():
        # int(, 0) refuses it, and the kernel's kprobe_events would read it as octal
        raise UsageError(f"{what} {shown(text)}: an offset with a leading 0 is ambiguous; "
                         "write it in decimal without the 0 or in hex (0x...)")
    off = int(digits, 0)
    if len(symbol) >= KSYM_NAME_LEN:
        raise UsageError(f"{what} {shown(text)}: no kernel symbol is longer than "
                         f"{KSYM_NAME_LEN - 1} characters")
    if off > KPROBE_OFFSET_MAX:
        raise UsageError(f"{what} {shown(text)}: the offset must be at most "
                         f"{KPROBE_OFFSET_MAX:#x}")
    return symbol, off


def parse_comm(text: str, what: str = "--comm") -> str:
    """The kernel's comm is bytes: the text is what ``os.fsdecode`` makes of them
    (argv's undecodable bytes arrive as surrogates), so ``os.fsencode`` gives them back."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise UsageError(f"{what} {shown(text)} is not a file system string "
                         "(name the bytes as the command line passes them)") from None
    if not raw or b"\0" in raw:
        raise UsageError(f"{what} must be a non-empty name without NUL")
    if len(raw) >= TASK_COMM_LEN:
        raise UsageError(f"{what} {shown(text)} is longer than the kernel keeps "
                         f"({TASK_COMM_LEN - 1} bytes); use {os.fsdecode(raw[:15])!r}")
    return text


def parse_syscall_name(text: str, what: str = "--syscall") -> str:
    """A syscall name or number as written; parse_watch looks it up."""
    t = text.strip()
    if not t:
        raise UsageError(f"{what} {text!r} names no syscall: give a name or number "
                         "(e.g. write, openat, 1)")
    if t.isdigit() and _digits(t) is None or len(t) > 64:
        raise UsageError(f"{what} {shown(text)} is no syscall name or number")
    return t


ERRNO_MAX = 4095                     # MAX_ERRNO: the largest error a kernel call returns


def parse_errno(text: str, what: str = "--errno") -> int:
    """An errno by name (``EACCES``, any case) or number (1 to 4095)."""
    t = text.strip()
    digits = _digits(t)
    if digits is not None:
        n = int(digits) if len(digits) <= 4 else 0
        if 1 <= n <= ERRNO_MAX:
            return n
        raise UsageError(f"{what} {shown(text)}: an errno number is 1 to {ERRNO_MAX}")
    import errno
    name = t.upper()
    n = getattr(errno, name, None) if name.startswith("E") and name.isidentifier() else None
    if type(n) is not int:
        raise UsageError(f"{what} {shown(text)} is no errno: write a name such as EPERM, "
                         f"EACCES, EIO or ENOSPC, or a number 1 to {ERRNO_MAX}")
    return n


def parse_lsm_hook(text: str, what: str = "--lsm") -> str:
    """An LSM hook's name (``file_open``; ``bpf_lsm_file_open`` and
    ``security_file_open`` are taken too): whether the kernel has it is
    asked at arming, from its BTF."""
    t = text.strip()
    for prefix in ("bpf_lsm_", "security_"):
        if t.startswith(prefix):
            t = t[len(prefix):]
    if not (t and t.isascii() and (t.replace("_", "a").isalnum()) and t.islower()
            and not t[0].isdigit() and len(t) < KSYM_NAME_LEN - 8):
        raise UsageError(f"{what} {shown(text)} is no LSM hook name: write one such as "
                         "file_open, file_permission, socket_connect, task_kill")
    return t


def parse_count(text: str, what: str, minimum: int = 0, maximum: int = 2**64 - 1) -> int:
    """A whole number from ``minimum`` to ``maximum``: decimal ASCII digits only."""
    t = _digits(text)
    if t is None:
        raise UsageError(f"{what} {shown(text)} is not a whole number "
                         f"({minimum} to {maximum})")
    n = int(t) if len(t) <= 30 else maximum + 1
    if not minimum <= n <= maximum:
        raise UsageError(f"{what} must be {minimum} to {maximum}, not {shown(text)}")
    return n


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str, what: str, minimum: int, maximum: int) -> int:
    """``"64K"``, ``"4M"``, ``"1048576"`` -> bytes: a power of two from ``minimum`` to
    ``maximum`` (what a BPF ring buffer's size must be: a power of 2, page-aligned)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] and t[-1:] in _SIZE_UNITS else ""
    digits = _digits(t[:len(t) - len(unit)])
    n = int(digits) * _SIZE_UNITS[unit] if digits is not None and len(digits) <= 12 else None
    if n is None or not minimum <= n <= maximum or n & (n - 1):
        raise UsageError(f"{what} {shown(text)}: give a power of two from "
                         f"{minimum >> 10}K to {maximum >> 20}M (e.g. 64K, 4M, 16M)")
    return n


def pid_max() -> int:
    """/proc/sys/kernel/pid_max: every pid is below it."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return PID_MAX_LIMIT


def parse_pids(values: list[str], what: str = "--pid") -> tuple[int, ...]:
    """``["5,6", "7"]`` -> (5, 6, 7): each below pid_max and a live user process,
    neither init nor this tool nor one of its ancestors (see check_pid)."""
    pids: list[int] = []
    top = pid_max() - 1
    for v in values:
        for part in v.split(","):
            t = _digits(part)
            if t is None:
                raise UsageError(f"{what} {shown(v)}: give process ids, e.g. {what} 1234 "
                                 f"or {what} 1234,1235")
            n = int(t) if len(t) <= 10 else top + 1
            if not 1 <= n <= top:
                raise UsageError(f"{what} {shown(part.strip())} is out of range: pids are "
                                 f"1 to {top} here (pid_max is {top + 1})")
            pids.append(n)
    pids = list(dict.fromkeys(pids))
    if pids:
        from .procinfo import ancestors
        protected = ancestors()
        for pid in pids:
            check_pid(pid, protected, what)
    return tuple(pids)


def check_pid(pid: int, protected: frozenset[int], what: str = "--pid") -> None:
    """Refuse a pid that would surprise: init, a kernel thread, a thread id, a pid
    no process has now (the next process to get it would be watched, the way
    ``strace -p`` refuses it too), or one of ``protected`` (the tool and its ancestors)."""
    from .procinfo import read_stat
    if pid == 1:
        raise UsageError(f"{what} 1 is init: signalling it takes the system (or container) "
                         "down; name another process")
    st = read_stat(pid)
    if st is None:
        raise UsageError(f"{what} {pid}: no such process (a process started later could be "
                         "given that pid: start the watch once it runs)")
    if st.kernel_thread:
        raise UsageError(f"{what} {pid} is a kernel thread ({st.comm}): it calls no syscalls "
                         "of its own and takes no signals; name a user process")
    tgid = _tgid(pid)
    if tgid is not None and tgid != pid:
        raise UsageError(f"{what} {pid} is a thread of process {tgid}: {what} takes process "
                         f"ids; give {tgid}")
    if pid in protected:
        raise UsageError(f"{what} {pid} is this tool or one of its ancestors ({st.comm}); "
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


def parse_uid(text: str, what: str = "--uid") -> int:
    """A user name or a uid from 0 to UID_MAX."""
    if _digits(text) is not None:
        return parse_count(text, what, 0, UID_MAX)
    import pwd
    try:
        uid = pwd.getpwnam(text.strip()).pw_uid
    except (KeyError, ValueError):       # ValueError: a NUL or an unencodable name
        raise UsageError(f"unknown user {shown(text)} for {what}: give a user name "
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


def cgroup_id(path: str, what: str = "--cgroup") -> tuple[int, int]:
    """A cgroup v2 directory -> (id, level).  The id is the directory's inode number
    (what ``bpf_get_current_cgroup_id()`` reports); the level is its depth below the
    cgroup2 root (root = 0), for ``bpf_get_current_ancestor_cgroup_id(level)``: the
    real root's, also from inside a cgroup namespace.

    A relative path is taken below the cgroup2 mount, and so is an absolute one that
    is not a cgroup2 directory itself: ``/system.slice/foo.service`` as
    /proc/PID/cgroup writes it.  Symlinks and ``..`` are resolved first, so every
    spelling of the root ("", ".", "/", the mount point...) comes back as level 0."""
    try:
        if "\0" in path:
            raise ValueError
        os.fsencode(path)
    except ValueError:          # UnicodeEncodeError too
        raise UsageError(f"{what} {shown(path)} is not a path") from None
    mounts = _mounts()
    # the hierarchy's root first: a bind mount of a cgroup below it may come earlier
    cg2 = sorted((m for m in mounts if m.fstype == "cgroup2"), key=lambda m: m.root != "/")
    if not cg2:
        raise UsageError(f"{what} needs a cgroup v2 hierarchy and none is mounted "
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
        raise UsageError(f"{what} {shown(path)}: {e.strerror}; give a cgroup v2 directory "
                         f"such as {top}/system.slice/foo.service") from None
    if not cgroup_dir(p):
        raise UsageError(f"{what} {shown(path)} is not a cgroup v2 directory (cgroup2 is "
                         f"mounted on {', '.join(m.point for m in cg2)})")
    m = _mount_of(p, mounts)
    # Its depth: the mounted directory's, then the path below the mount.  In a cgroup
    # namespace of our own the mount's root is written relative to the namespace's
    # root ("/" for a cgroup2 mounted there, "/../.." for the host's): BPF counts
    # from the real root, so the namespace root's own level is added (rawprobe.cgroup).
    from ..cgroup import in_initial_namespace, path_depth
    level = path_depth(m.root) + path_depth(os.path.relpath(p, m.point))
    if not in_initial_namespace():
        from ..cgroup import namespace_root_level
        level += namespace_root_level()
    return st.st_ino, level


def parse_cgroup(text: str, what: str = "--cgroup") -> tuple[str, int, int]:
    """--cgroup's fields: (the path as given, its cgroup id, its level)."""
    return (text, *cgroup_id(text, what))


PORT_MAX = 65535


def parse_listen(text: str, what: str = "--metrics") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every IPv4 address) -> (host,
    port).  The host is resolved when the server binds (``metrics.MetricsServer``):
    parsing stays free of the resolver."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"{what} {shown(text)}: write an IPv6 address in brackets, "
                         "as [::1]:9464")
    digits = _digits(port)
    if not sep or digits is None:
        raise UsageError(f"bad {what} {shown(text)}: write ADDR:PORT, as 127.0.0.1:9464 "
                         "or :9464 (every address)")
    n = int(digits) if len(digits) <= 6 else PORT_MAX + 1
    if not 1 <= n <= PORT_MAX:
        raise UsageError(f"{what} {shown(text)}: the port must be 1 to {PORT_MAX}")
    return host or "0.0.0.0", n
