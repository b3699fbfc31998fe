"""tracefs: where it is, tracepoint ids, and rawprobe's dynamic kprobe/uprobe events.

tracefs is the kernel's tracing control filesystem.  rawprobe needs it for three
things: the list of functions ftrace can trace (``available_filter_functions``,
where kprobe.multi patterns are looked up), the numeric id of a tracepoint (``events/<group>/<name>/id``, which
``perf_event_open(PERF_TYPE_TRACEPOINT)`` takes as ``config``) and, on kernels
without the kprobe/uprobe PMUs (before 4.17), creating probe events by writing
lines to ``kprobe_events`` / ``uprobe_events``.

Location.  Since 4.1 tracefs has its own mount point, ``/sys/kernel/tracing``;
older setups only have it inside debugfs at ``/sys/kernel/debug/tracing`` (which
the kernel automounts on first access when debugfs is mounted).  Many systems do
not mount it at boot.  When neither place is populated, :func:`tracefs_path`
mounts tracefs at ``/sys/kernel/tracing`` itself: that is the directory the
kernel created for exactly this purpose, mounting is idempotent, and it only
affects the caller's mount namespace.  It needs CAP_SYS_ADMIN; without it the
error says which command to run.

Dynamic events.  Each event rawprobe creates is named
``rawprobe_<pid>_<n>/<symbol>`` (group/event), so concurrent processes never
collide and a leftover event names the process that made it.  Events are
removed when their Link closes, on every failure path of an attach, and at
interpreter exit for Links that were never closed.  :func:`remove_stale_events`
removes events left by processes that died without cleaning up.

The files are opened with ``O_APPEND`` and never ``O_TRUNC``: opening
``kprobe_events`` for truncation deletes *every* kprobe event on the system,
including other tools'.
"""
from __future__ import annotations

import _thread
import errno
import os

from ..errors import NotFoundError, NotSupportedError, PermissionDeniedError, SyscallError
from ..names import sanitize

__all__ = [
    "tracefs_path", "tracepoint_id", "DynamicEvent", "create_event",
    "remove_event", "list_rawprobe_events", "remove_stale_events",
    "EVENT_PREFIX", "traceable_functions",
]

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACEFS = "/sys/kernel/debug/tracing"
TRACEFS_MAGIC = 0x74726163
EVENT_PREFIX = "rawprobe_"
# MAX_EVENT_NAME_LEN in kernel/trace/trace.h (group and event name each).
MAX_EVENT_NAME_LEN = 64
_MOUNT_HINT = ("mount it with: mount -t tracefs nodev /sys/kernel/tracing (in a container: "
               "bind the host's in, -v /sys/kernel/tracing:/sys/kernel/tracing, and run "
               "as uid 0); only tracepoint hooks and tracefs probe events need it")


def _populated(path: str) -> bool:
    # An unmounted mount point is an empty directory; a mounted tracefs always
    # has an "events" directory.  PermissionError: we may not look inside
    # (tracefs is mode 0700, root only, unless mounted with other options).
    return os.stat(os.path.join(path, "events")).st_mode & 0o170000 == 0o040000


# Where tracefs was found, once found (attaching a tracepoint is on every
# load's path: no functools/re/threading imports here).
_found: str | None = None


def _find_tracefs() -> str | None:
    """The tracefs mount point; None if there is none.  PermissionDeniedError
    when it is there but this user may not enter it (no mounting helps then)."""
    global _found
    if _found is None:
        denied = None
        for path in (TRACEFS, DEBUGFS_TRACEFS):
            try:
                if _populated(path):
                    _found = path
                    break
            except PermissionError:
                denied = denied or path
            except OSError:
                continue
        else:
            if denied is not None:
                raise PermissionDeniedError(
                    f"open {denied}", errno.EACCES,
                    f"tracefs at {denied} is root-only here: tracepoint hooks and "
                    "tracefs probe events need root, or uid 0 in a container (the raw_tp "
                    "hook does not)")
    return _found


def _mount_tracefs() -> None:
    from .._sys import fs
    try:
        fs.mount("nodev", TRACEFS, "tracefs", hint=_MOUNT_HINT)
    except SyscallError as e:
        if e.errno == errno.EBUSY:      # mounted meanwhile (another process)
            return
        if e.errno == errno.ENODEV:
            raise NotSupportedError(
                "tracefs: this kernel has no tracefs (CONFIG_TRACING is off), so "
                "tracepoints and tracefs probe events cannot be used") from None
        raise


def tracefs_path(mount: bool = True) -> str:
    """Return the tracefs mount point, mounting tracefs if it is not mounted.

    Raises NotSupportedError when tracefs cannot be found (and ``mount`` is
    false or mounting is impossible), PermissionDeniedError when it is mounted
    but this user may not enter it.
    """
    path = _find_tracefs()
    if path is not None:
        return path
    if mount:
        if not os.path.isdir(TRACEFS):
            raise NotSupportedError(
                f"tracefs: {TRACEFS} does not exist (kernel without CONFIG_TRACING, "
                "or /sys is not sysfs)")
        _mount_tracefs()
        path = _find_tracefs()
        if path is not None:
            return path
    raise NotSupportedError(f"tracefs is not mounted; {_MOUNT_HINT}")


def traceable_functions(mount: bool = True) -> tuple[str, bytes] | None:
    """The functions ftrace can hook (what fprobes, so kprobe.multi, attach
    to): the path of the list read and its text, or None without tracefs.
    ``available_filter_functions_addrs`` (6.5+: ``<address> <name>
    [<module>]`` per line) is read where it exists, else
    ``available_filter_functions`` (``<name> [<module>]``).  Both are root-only."""
    try:
        root = tracefs_path(mount)
    except NotSupportedError:
        return None
    for name in ("available_filter_functions_addrs", "available_filter_functions"):
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as f:
                return path, f.read()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise PermissionDeniedError(f"open {path}", e.errno or errno.EACCES,
                                        "the list of traceable functions is root-only") \
                from None
    return None


def _check_name(kind: str, name: str) -> None:
    # A group or event name may not escape the events directory.
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise NotFoundError(f"{kind} {name!r} is not a valid tracefs name")


def tracepoint_id(group: str, name: str, *, root: str | None = None) -> int:
    """Numeric id of tracepoint ``group/name`` from ``events/<group>/<name>/id``."""
    _check_name("tracepoint group", group)
    _check_name("tracepoint", name)
    root = root or tracefs_path()
    path = os.path.join(root, "events", group, name, "id")
    try:
        with open(path, "rb") as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise NotFoundError(
            f"tracepoint {group}/{name} not found: no {path} "
            f"(the list of tracepoints is {os.path.join(root, 'available_events')})"
        ) from None
    except PermissionError as e:
        raise PermissionDeniedError(f"read {path}", e.errno or errno.EACCES,
                                    "reading tracepoint ids needs root") from None
    except ValueError:
        raise NotFoundError(f"tracepoint {group}/{name}: {path} holds no id") from None


# -- dynamic events --------------------------------------------------------

_lock = _thread.allocate_lock()       # threading.Lock without importing threading
_counter = 0
# (file, group, event) of every event this process created and has not removed.
_live: set[tuple[str, str, str]] = set()
_atexit_installed = False


def _sanitize(name: str, limit: int) -> str:
    # every character but [A-Za-z0-9_] becomes "_"
    s = sanitize(name[:limit], "_") or "probe"
    return s if not s[0].isdigit() else "_" + s[:limit - 1]


class DynamicEvent:
    """A kprobe or uprobe event this process wrote to tracefs; ``remove()`` deletes it."""

    __slots__ = ("file", "group", "event", "root", "removed", "__weakref__")

    def __init__(self, file: str, group: str, event: str, root: str) -> None:
        self.file = file        # "kprobe_events" or "uprobe_events"
        self.group = group
        self.event = event
        self.root = root
        self.removed = False

    @property
    def name(self) -> str:
        return f"{self.group}/{self.event}"

    def id(self) -> int:
        return tracepoint_id(self.group, self.event, root=self.root)

    def remove(self) -> None:
        """Delete the event.  Idempotent.  Close the perf events using it first."""
        if self.removed:
            return
        remove_event(self.file, self.group, self.event, root=self.root)
        self.removed = True

    def remove_quietly(self) -> None:
        """remove() for failure paths: a second error must not hide the first,
        so a failure to remove becomes a warning."""
        try:
            self.remove()
        except Exception as e:  # noqa: BLE001
            import warnings
            warnings.warn(f"rawprobe: could not remove tracefs event {self.name} "
                          f"from {self.file}: {e}", RuntimeWarning, stacklevel=2)

    def __repr__(self) -> str:
        state = " removed" if self.removed else ""
        return f"<DynamicEvent {self.file}:{self.name}{state}>"


def _error_log_tail(root: str, command: str = "") -> str:
    """The kernel's reason for rejecting ``command`` from ``error_log`` (4.19+).

    Entries are ``[time] subsystem: error: <reason>`` followed by a
    ``Command: <line>`` line and a caret line; only an entry whose command is
    ours counts (the log also holds other writers' old errors).
    """
    try:
        with open(os.path.join(root, "error_log"), "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for i in range(len(lines) - 1, 0, -1):
        text = lines[i].strip()
        if text.startswith("Command:") and (not command or text[8:].strip() == command):
            reason = lines[i - 1]
            return reason.split("error:", 1)[-1].strip()
    return ""


def _write(root: str, file: str, line: str) -> None:
    path = os.path.join(root, file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _no_file(file, root) from None
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def _no_file(file: str, root: str) -> NotSupportedError:
    what = "kprobes" if file.startswith("kprobe") else "uprobes"
    cfg = "CONFIG_KPROBE_EVENTS" if what == "kprobes" else "CONFIG_UPROBE_EVENTS"
    return NotSupportedError(
        f"{what}: this kernel has no tracefs {file} ({os.path.join(root, file)} is "
        f"missing: {cfg} is off)")


def _install_atexit() -> None:
    global _atexit_installed
    if not _atexit_installed:
        import atexit
        atexit.register(_cleanup_at_exit)
        _atexit_installed = True


def _cleanup_at_exit() -> None:
    # Links still open at exit hold perf fds that keep their events busy;
    # close them (rawprobe.link registers a hook for that) then remove.
    for hook in list(_before_exit_cleanup):
        try:
            hook()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
    for file, group, event in list(_live):
        try:
            remove_event(file, group, event)
        except Exception:  # noqa: BLE001
            pass


_before_exit_cleanup: list = []


def create_event(file: str, kind: str, target: str, label: str) -> DynamicEvent:
    """Write ``<kind>:rawprobe_<pid>_<n>/<label> <target>`` to ``file``.

    ``kind`` is ``"p"`` (entry) or ``"r"`` (return); ``target`` is
    ``symbol+offset`` for kprobe_events or ``/path:0xoffset`` for uprobe_events.
    Returns the event; its tracepoint id is ``event.id()``.
    """
    global _counter
    root = tracefs_path()
    if not os.path.exists(os.path.join(root, file)):
        raise _no_file(file, root)
    pid = os.getpid()
    event = _sanitize(label, MAX_EVENT_NAME_LEN - 1)
    for _ in range(16):
        with _lock:
            _counter += 1
            group = f"{EVENT_PREFIX}{pid}_{_counter}"
        line = f"{kind}:{group}/{event} {target}"
        # Tracked before the write, so that an interruption right after it
        # still leaves the event to the atexit cleanup.
        with _lock:
            _live.add((file, group, event))
            _install_atexit()
        try:
            _write(root, file, line)
        except OSError as e:
            with _lock:
                _live.discard((file, group, event))
            err = e.errno or errno.EINVAL
            if err == errno.EEXIST:  # same pid in another pid namespace: next n
                continue
            if err in (errno.EPERM, errno.EACCES):
                raise PermissionDeniedError(f"write {line!r} to {file}", err,
                                            "tracefs probe events need root") from None
            hint = _error_log_tail(root, line)
            if err == errno.ENOENT:
                raise NotFoundError(
                    f"{file}: cannot probe {target!r}: target not found"
                    + (f" (kernel says: {hint})" if hint else "")) from None
            raise SyscallError(f"write {line!r} to {file}", err, hint) from None
        return DynamicEvent(file, group, event, root)
    raise SyscallError(f"create a unique event in {file}", errno.EEXIST,
                       "16 names were taken; run rawprobe.link.tracefs.remove_stale_events()")


def remove_event(file: str, group: str, event: str, *, root: str | None = None) -> None:
    """Delete ``group/event`` from ``file``; a missing event is not an error.

    EBUSY means a perf event still uses it; perf fds are released in close(),
    so the retry loop only covers release work the kernel has not finished.
    """
    root = root or tracefs_path(mount=False)
    line = f"-:{group}/{event}"
    delay = 0.0005
    for attempt in range(12):
        try:
            _write(root, file, line)
            break
        except OSError as e:
            if e.errno == errno.ENOENT:
                break               # already gone
            if e.errno == errno.EBUSY and attempt < 11:
                import time
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise SyscallError(f"write {line!r} to {file}", e.errno or errno.EIO,
                               _error_log_tail(root, line)) from None
    with _lock:
        _live.discard((file, group, event))


_EVENT_LINE = r"^[pr]\d*:(?P<group>[^/\s]+)/(?P<event>\S+)\s"


def list_rawprobe_events(file: str) -> list[str]:
    """``group/event`` of every rawprobe event in ``file`` (any process)."""
    import re
    event_line = re.compile(_EVENT_LINE)
    root = tracefs_path(mount=False)
    try:
        with open(os.path.join(root, file)) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        m = event_line.match(line)
        if m and m["group"].startswith(EVENT_PREFIX):
            out.append(f"{m['group']}/{m['event']}")
    return out


def remove_stale_events() -> list[str]:
    """Remove rawprobe events whose creating process no longer exists.

    Not done automatically: tracefs is shared by every pid namespace, so a pid
    that is dead here may be alive in another container.  Events in use are
    refused by the kernel (EBUSY) and kept.  Returns the names removed.
    """
    removed = []
    for file in ("kprobe_events", "uprobe_events"):
        for name in list_rawprobe_events(file):
            group, event = name.split("/", 1)
            try:
                pid = int(group[len(EVENT_PREFIX):].split("_", 1)[0])
            except ValueError:
                continue
            if pid == os.getpid() or _alive(pid):
                continue
            try:
                remove_event(file, group, event)
                removed.append(name)
            except SyscallError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
