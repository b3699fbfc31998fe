"""CO-RE results kept on disk, so a later load of the same object on the same
kernel skips computing its relocations (and reading the kernel's BTF for them).

A load that computes CO-RE relocations stores, per program, its instructions as
relocated against the running kernel; the next load takes them from here when
everything they were computed from is byte for byte the same:

* the kernel: ``uname`` (release, version, machine), the size of
  /sys/kernel/btf/vmlinux and its first and last 16 KiB (its header, first
  types and last strings) -- a kernel's BTF cannot change without a reboot, and
  another build differs in these;
* the object's BTF blob, as parsed;
* the program: its instructions before relocation and its CO-RE records;
* the code that computed them: rawprobe's version and the size and mtime of
  ``btf/core.py`` (an upgrade or an edit starts afresh);
* for a program with a type vmlinux lacks (looked for in the modules' BTF):
  the loaded modules' BTF files, by name, size and mtime.

No hash stands in for any of them: they are stored and compared whole, so a
match cannot be a collision.  Map file descriptors are written into the
instructions after this step, never before.  One file per object name in
:func:`rawprobe._cache.cache_dir`, in ``marshal`` format (read only if it is
ours and only we may write it, see :mod:`rawprobe._cache`).

Used by :class:`rawprobe.Collection` when it reads the kernel's own BTF (not
when ``kernel_btf=`` is given).  Nothing here talks to the kernel beyond reading
that file; nothing is held open.
"""
from __future__ import annotations

import marshal
import os

from ._cache import VMLINUX, cache_dir, module_btf_names, read_private, write_atomic
from ._cache import read_btf_key as kernel_key
from .names import sanitize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

_FORMAT = 2


def modules_key(vmlinux: str = VMLINUX) -> tuple:
    """(name, size, mtime) of each loaded module's BTF file, sorted."""
    d = os.path.dirname(vmlinux)
    out = []
    for name in module_btf_names(vmlinux):
        try:
            st = os.stat(os.path.join(d, name))
        except OSError:
            continue
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _impl_key() -> str:
    from . import __version__
    try:
        st = os.stat(os.path.join(os.path.dirname(os.path.abspath(__file__)), "btf", "core.py"))
    except OSError:
        return f"{__version__}\0?"
    return f"{__version__}\0{st.st_size}\0{st.st_mtime_ns}"


def _file_name(object_name: str) -> str:
    safe = sanitize(object_name, "._-")[:64]
    return f"core-{safe or 'object'}.bin"


class CoreCache:
    """The stored CO-RE results for one object on this kernel.

    ``get(program)`` -> relocated instructions or None; ``put(program, insns,
    modules=False)`` after computing them (``modules``: the answer depends on
    the modules' BTF); ``save()`` writes the file if anything was put."""

    def __init__(self, path: str, key: bytes, local_btf: bytes) -> None:
        """``key``: the kernel's identity and the computing code's (see above)."""
        self.path = path
        self._key = key
        self._btf = local_btf
        self._progs: dict[str, tuple[bytes, tuple, bytes, Any]] = {}
        self._dirty = False
        self._modules: Optional[tuple] = None     # modules_key(), taken once when needed
        data = read_private(path)
        if data:
            try:
                stored = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                return
            if (type(stored) is tuple and len(stored) == 4 and stored[0] == _FORMAT
                    and stored[1] == key and stored[2] == local_btf
                    and type(stored[3]) is dict):
                self._progs = stored[3]

    @classmethod
    def open(cls, object_name: str, local_btf: Optional[bytes]) -> Optional["CoreCache"]:
        """The cache for an object, or None when there is no cache directory, no
        kernel BTF, or no parsed BTF blob to key on."""
        d = cache_dir()
        if not d or local_btf is None:
            return None
        kernel = kernel_key()
        if kernel is None:
            return None
        return cls(os.path.join(d, _file_name(object_name)), _impl_key().encode() + b"\0" + kernel,
                   local_btf)

    @staticmethod
    def _relos(p: Any) -> tuple:
        return tuple((r.insn_off, r.type_id, int(r.kind), r.access_str) for r in p.core_relos)

    def get(self, p: Any) -> Optional[bytes]:
        hit = self._progs.get(p.name)
        if (hit is not None and type(hit) is tuple and len(hit) == 4
                and hit[0] == p.insns and hit[1] == self._relos(p)
                and type(hit[2]) is bytes and len(hit[2]) == len(p.insns)
                and (hit[3] is None or hit[3] == self._modules_key())):
            return hit[2]
        return None

    def _modules_key(self) -> tuple:
        if self._modules is None:
            self._modules = modules_key()
        return self._modules

    def put(self, p: Any, relocated: bytes, modules: bool = False) -> None:
        self._progs[p.name] = (bytes(p.insns), self._relos(p), bytes(relocated),
                               self._modules_key() if modules else None)
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            self._dirty = False
            write_atomic(self.path, marshal.dumps(
                (_FORMAT, self._key, self._btf, self._progs)))
