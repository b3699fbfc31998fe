"""The on-disk cache directory and its file discipline (no kernel involved).

Two caches live there: the kernel BTF index (:mod:`rawprobe.btf.kernel`) and the
CO-RE results (:mod:`rawprobe.corecache`); both key on the kernel's BTF, whose
identity (:func:`btf_key`) and module list are kept here for them, and on the
code that computed what they hold (:func:`code_key`).  Both are pure speed-ups: anything
missing, unreadable, stale or not ours is ignored and rebuilt, and a cache that
cannot be written costs the next start the same work again, nothing more.

Files are written whole to a temporary name and renamed over the old one, so a
reader sees an old file or a new one, never half of one (:func:`write_atomic`
is the only writer).  A file is only read if it belongs to our effective uid and
nobody else may write it: it is as trusted as the program's own code.

Temporary files do not outlive their writer.  An exception removes the file on
the way out; a writer killed outright (SIGKILL during a cold start) cannot, so
the first use of a cache directory in a process (:func:`cache_dir`) sweeps it:
one ``listdir`` of a handful of names.  A temporary file is named after its
writer, ``<file>.<pid namespace inode>-<thread id>.tmp``, and is removed when

* its writer is gone: the name is from our pid namespace and that thread id is
  no longer alive (``kill(tid, 0)``); a live writer is never touched.  The
  namespace is in the name because a cache directory may be shared with a tool
  running in a child pid namespace (``unshare --pid``), whose ids mean nothing
  in ours;
* or it has not been modified for STALE_TMP_S: every write is milliseconds
  long, so such a file belongs to a writer that died in another namespace, to
  a dead writer whose id was reused, or to an older rawprobe (``<file>.<pid>.tmp``,
  no namespace).  A writer stopped for that long loses only that write: its
  rename fails and the next start writes the file again.
"""
from __future__ import annotations

import _thread
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["VMLINUX", "btf_key", "cache_dir", "code_key", "is_private", "module_btf_names",
           "read_btf_key", "read_private", "sweep_temporaries", "temp_path", "write_atomic"]

VMLINUX = "/sys/kernel/btf/vmlinux"
KEY_ENDS = 16384        # bytes of each end of a BTF blob kept in its key
TMP_SUFFIX = ".tmp"
STALE_TMP_S = 300       # a temporary file untouched this long is abandoned
_PID_MAX_LIMIT = 1 << 22    # include/linux/threads.h: no pid or tid reaches it

_swept: set[str] = set()    # cache directories swept by this process
PACKAGE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> Optional[str]:
    """Where caches live: /var/cache/rawprobe as root, else
    $XDG_CACHE_HOME/rawprobe (~/.cache/rawprobe; None without an absolute home);
    RAWPROBE_CACHE_DIR overrides, and an empty RAWPROBE_CACHE_DIR disables
    caching.  The first call for a
    directory sweeps the temporary files dead writers left in it."""
    d = _cache_dir()
    if d is not None and d not in _swept:
        _swept.add(d)
        sweep_temporaries(d)
    return d


def _cache_dir() -> Optional[str]:
    d = os.environ.get("RAWPROBE_CACHE_DIR")
    if d is not None:
        return d or None
    if os.geteuid() == 0:
        return "/var/cache/rawprobe"
    # A relative XDG_CACHE_HOME is invalid (XDG base directory spec), and a user
    # with neither $HOME nor a passwd entry (a bare uid given capabilities in a
    # container) has "~" for a home: no cache then, never one under the cwd.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(xdg):
        xdg = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "rawprobe") if os.path.isabs(xdg) else None


def is_private(st: os.stat_result) -> bool:
    """A regular file of our effective uid that nobody else may write."""
    return (st.st_uid == os.geteuid() and not st.st_mode & 0o022
            and (st.st_mode & 0o170000) == 0o100000)


def read_private(path: str) -> Optional[bytes]:
    """The file's bytes if it is a regular file of ours that only we may write;
    None otherwise (absent, a symlink, another owner, group/world writable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not is_private(os.fstat(fd)):
            return None
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    except OSError:
        return None
    finally:
        os.close(fd)


def _pid_ns() -> int:
    """The inode of our pid namespace (0 if /proc cannot tell)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def temp_path(path: str) -> str:
    """The temporary name this thread writes ``path`` through (see the module's
    opening): unique among live writers, and says which writer it belongs to."""
    return f"{path}.{_pid_ns()}-{_thread.get_native_id()}{TMP_SUFFIX}"


def _open_new(tmp: str) -> int:
    # O_EXCL: never write through a name someone else put there (a symlink in a
    # shared directory).  The name is this live thread's, so a file already
    # under it was left by a dead writer that had our thread id: replace it, once.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(tmp, flags, 0o644)
    except FileExistsError:
        os.unlink(tmp)
        return os.open(tmp, flags, 0o644)


def write_atomic(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename (mode
    0644, directory created 0755).  False if that was not possible.  The
    temporary file is gone when this returns or raises."""
    tmp = temp_path(path)
    made = False
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = _open_new(tmp)
        made = True
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        made = False
        return True
    except BaseException as e:
        if made:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            return False
        raise


def _writer_gone(owner: str, ns: int) -> bool:
    """Whether the writer named by a temporary file's ``<ns>-<tid>`` is dead."""
    ns_s, _, tid_s = owner.rpartition("-")
    if not (ns_s.isdigit() and tid_s.isdigit()) or int(ns_s) != ns or not ns:
        return False                 # another namespace, or an old name: age decides
    tid = int(tid_s)
    if not 0 < tid < _PID_MAX_LIMIT:
        return False
    try:
        os.kill(tid, 0)
    except ProcessLookupError:
        return True
    except OSError:                  # EPERM: alive, another user's
        pass
    return False


def sweep_temporaries(d: str) -> None:
    """Remove the temporary files in ``d`` that no live writer will finish:
    ours (our euid, regular files) whose writer is gone or that are older than
    STALE_TMP_S.  Errors are ignored: a file left is retried next start."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    ns = None
    for name in names:
        if not name.endswith(TMP_SUFFIX):
            continue
        owner = name[:-len(TMP_SUFFIX)].rpartition(".")[2]
        if not owner.replace("-", "").isdigit():
            continue                 # not named by write_atomic
        p = os.path.join(d, name)
        try:
            st = os.lstat(p)
            if st.st_uid != os.geteuid() or (st.st_mode & 0o170000) != 0o100000:
                continue
            if ns is None:
                ns = _pid_ns()
            if (time.time_ns() - st.st_mtime_ns > STALE_TMP_S * 1_000_000_000
                    or _writer_gone(owner, ns)):
                os.unlink(p)
        except OSError:
            continue


def btf_key(path: str, size: int, head: bytes, tail: bytes) -> bytes:
    """What identifies the kernel BTF blob at ``path`` in a cache key, from its
    size and its first and last KEY_ENDS bytes.  The kernel cannot change its BTF
    without a reboot, and a reboot into another build changes uname or the blob;
    both ends of the blob (the header and first types, the last strings), kept
    verbatim, are the content check on top (no checksum: zlib is one more import)."""
    u = os.uname()
    return (f"{u.release}\0{u.version}\0{u.machine}\0{path}\0{size}\0".encode()
            + bytes(head) + bytes(tail))


def read_btf_key(path: str = VMLINUX) -> Optional[bytes]:
    """``btf_key`` of a BTF file, reading only its two ends; None without it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, KEY_ENDS, 0)
        tail = os.pread(fd, KEY_ENDS, max(0, size - KEY_ENDS))
    except OSError:
        return None
    finally:
        os.close(fd)
    return btf_key(path, size, head, tail)


def module_btf_names(vmlinux: str = VMLINUX) -> list[str]:
    """The loaded modules with BTF (``/sys/kernel/btf/<module>``, 5.11+), sorted."""
    try:
        names = os.listdir(os.path.dirname(vmlinux))
    except OSError:
        return []
    return sorted(n for n in names if n != os.path.basename(vmlinux))


def code_key(modules: tuple[str, ...], root: str = PACKAGE) -> bytes:
    """What identifies the code that computed a cached result: rawprobe's version
    and the size and mtime of each of ``modules`` (paths under ``root``, the
    package), so an upgrade or an edit of any of them starts afresh.  Only a
    ``stat`` each, no reading: this runs at every start."""
    from . import __version__
    parts = [__version__]
    for m in modules:
        try:
            st = os.stat(os.path.join(root, m))
            parts.append(f"{m} {st.st_size} {st.st_mtime_ns}")
        except OSError:
            parts.append(f"{m} ?")
    return "\0".join(parts).encode()
