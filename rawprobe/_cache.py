"""The on-disk cache directory and its file discipline (no kernel involved).

Two caches live there: the kernel BTF index (:mod:`rawprobe.btf.kernel`) and the
CO-RE results (:mod:`rawprobe.corecache`); both key on the kernel's BTF, whose
identity (:func:`btf_key`) and module list are kept here for them, and on the
code that computed what they hold (:func:`code_key`).  Both are pure speed-ups: anything
missing, unreadable, stale or not ours is ignored and rebuilt, and a cache that
cannot be written costs the next start the same work again, nothing more.

Files are written whole to a temporary name and renamed over the old one, so a
reader sees an old file or a new one, never half of one.  A file is only read if
it belongs to our effective uid and nobody else may write it: it is as trusted
as the program's own code.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["VMLINUX", "btf_key", "cache_dir", "code_key", "is_private", "module_btf_names",
           "read_btf_key", "read_private", "write_atomic"]

VMLINUX = "/sys/kernel/btf/vmlinux"
KEY_ENDS = 16384        # bytes of each end of a BTF blob kept in its key
PACKAGE = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> Optional[str]:
    """Where caches live: /var/cache/rawprobe as root, else
    $XDG_CACHE_HOME/rawprobe (~/.cache/rawprobe); RAWPROBE_CACHE_DIR overrides,
    and an empty RAWPROBE_CACHE_DIR disables caching."""
    d = os.environ.get("RAWPROBE_CACHE_DIR")
    if d is not None:
        return d or None
    if os.geteuid() == 0:
        return "/var/cache/rawprobe"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "rawprobe")


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


def write_atomic(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename (mode
    0644, directory created 0755).  False if that was not possible."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


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
