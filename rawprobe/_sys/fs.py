"""Filesystem calls rawprobe needs: mount(2), and which filesystem holds a path.

``mount`` mounts tracefs when a system has not (``rawprobe.link.tracefs``); a
bpffs mount would go here too.  Mounting affects only the caller's mount
namespace and needs CAP_SYS_ADMIN in the user namespace that owns it.
``fs_type`` tells whether a directory is on a bpffs (map pinning) by this
process's mount table, which needs no statfs(2) declaration.
"""
from __future__ import annotations

import errno as _E
import os

from ._native import call, ffi, lib
from .errno import syscall_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional, Union

    _PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__ = ["mount", "fs_type"]


def _hint(err: int, fstype: str, target: str) -> str:
    if err == _E.ENODEV:
        return f"this kernel has no {fstype!r} filesystem"
    if err == _E.ENOENT:
        return f"{target} does not exist"
    if err == _E.EBUSY:
        return f"something is already mounted on {target}"
    return ""


def mount(source: _PathLike, target: _PathLike, fstype: str, flags: int = 0,
          data: Optional[bytes] = None, *, hint: str = "") -> None:
    """mount(2): mount ``fstype`` from ``source`` on ``target``.

    ``flags`` are the MS_* mount flags; ``data`` is the filesystem's option
    string (e.g. ``b"mode=0700"``) or None.  Failure raises a SyscallError
    carrying the errno (PermissionDeniedError without CAP_SYS_ADMIN);
    ``hint`` is appended to its message.
    """
    src, tgt = os.fsencode(source), os.fsencode(target)
    r = call(lib.mount, src, tgt, fstype.encode(), flags,
             ffi.NULL if data is None else ffi.new("char[]", data))
    if r < 0:
        err = -r
        shown = os.fsdecode(tgt)
        own = _hint(err, fstype, shown)
        raise syscall_error(f"mount {fstype} on {shown}", err,
                            f"{own}; {hint}" if own and hint else own or hint,
                            permission_hint="mounting needs CAP_SYS_ADMIN")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def fs_type(path: _PathLike) -> Optional[str]:
    """The type of the filesystem ``path`` (an existing file or directory) is
    on, as this process's mount table names it (``"bpf"``, ``"tracefs"``,
    ...); None if the table cannot be read."""
    real = os.path.realpath(os.fsdecode(path))
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, best_len = None, -1
    for line in lines:
        fields = line.split(" ")
        try:
            point = _unescape(fields[4])
            fstype = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        under = real == point or real.startswith(point.rstrip("/") + "/")
        # the longest mount point holding the path; the later of two equal
        # ones is mounted over the earlier
        if under and len(point) >= best_len:
            best, best_len = fstype, len(point)
    return best
