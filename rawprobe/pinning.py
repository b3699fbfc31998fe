"""Maps pinned by name (``__uint(pinning, LIBBPF_PIN_BY_NAME)``), as libbpf pins them.

A map so declared lives at ``<pin_path>/<map name>`` in a bpffs; ``pin_path``
defaults to /sys/fs/bpf, as libbpf's does.  A load first opens what is pinned
there and reuses it when it matches the object's definition in the fields
libbpf compares (map type, key size, value size, max_entries, flags,
map_extra), so that loads -- and loaders: libbpf reuses rawprobe's pins and
the reverse -- share one map.  A reused map keeps its contents: it is not
written, frozen or given initial slots again.  A pinned map that differs is an
error, never replaced.  With nothing pinned there the map is created, filled,
then pinned; a pin this load made is removed again if the load fails.  Pins
outlive the process: remove one with :meth:`rawprobe.Map.unpin` (or ``rm``).

Kernel: BPF_OBJ_PIN/BPF_OBJ_GET 4.4; reuse compares through
BPF_OBJ_GET_INFO_BY_FD, 4.13.
"""
from __future__ import annotations

import errno as _errno
import os

from ._sys import bpf as _bpf
from .errors import PinError, SyscallError
from .uapi import MapFlags, MapType

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._sys.fd import FD
    from .spec import MapSpec

__all__ = ["DEFAULT_PIN_PATH", "pin_file", "prepare_dir", "open_pinned", "check_reusable",
           "pin"]

DEFAULT_PIN_PATH = "/sys/fs/bpf"
_MOUNT_HINT = "mount one there with `mount -t bpf bpf DIR`, or pin under /sys/fs/bpf"


def pin_file(pin_path: str, map_name: str) -> str:
    """Where a map called ``map_name`` is pinned under ``pin_path`` (libbpf's rule:
    the map's full name, not the 15-character name the kernel keeps)."""
    return os.path.join(pin_path, map_name)


def prepare_dir(pin_path: str) -> None:
    """Make ``pin_path`` (one level, mode 0700, as libbpf does) and check that it
    is a directory of a bpffs, where alone the kernel pins objects."""
    try:
        os.mkdir(pin_path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise PinError(f"pin_path {pin_path!r}: cannot make the directory "
                       f"({e.strerror}); give an existing directory on a bpffs") from None
    if not os.path.isdir(pin_path):
        raise PinError(f"pin_path {pin_path!r} is not a directory")
    from ._sys.fs import fs_type
    kind = fs_type(pin_path)
    if kind is not None and kind != "bpf":
        raise PinError(f"pin_path {pin_path!r} is on a {kind} filesystem, not a bpffs: "
                       f"{_MOUNT_HINT}")


def open_pinned(path: str, map_name: str) -> FD | None:
    """The map pinned at ``path``, or None when nothing is."""
    try:
        fd = _bpf.obj_get(path)
    except SyscallError as e:
        if e.errno == _errno.ENOENT:
            return None
        if e.errno == _errno.EACCES and os.path.exists(path):
            # what BPF_OBJ_GET says of a file that is not a pinned BPF object
            raise PinError(f"map {map_name!r}: {path} exists but is not a pinned BPF "
                           f"object; remove it or choose another pin_path") from None
        raise type(e)(f"{e.call} of {path} (pinned map {map_name!r})", e.errno,
                      e.hint) from None
    try:
        kind = os.readlink(f"/proc/self/fd/{fd.fileno()}")
    except OSError:
        kind = "anon_inode:bpf-map"
    if kind != "anon_inode:bpf-map":
        fd.close()
        what = kind.partition(":bpf-")[2] or kind
        raise PinError(f"map {map_name!r}: {path} holds a BPF {what}, not a map; remove "
                       f"it or choose another pin_path")
    return fd


def check_reusable(fd: FD, m: MapSpec, max_entries: int, path: str) -> None:
    """Raise PinError unless the map behind ``fd`` (pinned at ``path``) is what
    ``m`` declares, in the fields libbpf compares.  ``max_entries`` is the one
    the loader would create (a PERF_EVENT_ARRAY's 0 resolved)."""
    info = _bpf.map_get_info(fd)
    flags = info["map_flags"]
    if m.type in (MapType.DEVMAP, MapType.DEVMAP_HASH):
        flags &= ~MapFlags.RDONLY_PROG   # the kernel adds it to every device map
    pinned = (info["type"], info["key_size"], info["value_size"], info["max_entries"],
              flags, info["map_extra"])
    wanted = (m.type, m.key_size, m.value_size, max_entries, m.map_flags, m.map_extra)
    names = ("type", "key_size", "value_size", "max_entries", "map_flags", "map_extra")
    diff = [f"{n} {p} (object: {w})" for n, p, w in zip(names, pinned, wanted) if p != w]
    if diff:
        raise PinError(f"map {m.name!r}: the map pinned at {path} differs from the "
                       f"object's: {', '.join(diff)}; remove the pin (rm {path}) to "
                       f"start afresh, or load with another pin_path")


def pin(fd: FD, path: str, map_name: str) -> bool:
    """Pin ``fd`` at ``path``; False when something got pinned there first."""
    try:
        _bpf.obj_pin(fd, path)
    except SyscallError as e:
        if e.errno == _errno.EEXIST:
            return False
        raise type(e)(f"{e.call} of map {map_name!r} at {path}", e.errno, e.hint) from None
    return True
