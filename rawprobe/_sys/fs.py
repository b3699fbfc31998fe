"""Filesystem calls rawprobe needs: mount(2).

Used to mount tracefs when a system has not (``rawprobe.link.tracefs``); a
bpffs mount would go here too.  Mounting affects only the caller's mount
namespace and needs CAP_SYS_ADMIN in the user namespace that owns it.
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

__all__ = ["mount"]


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
