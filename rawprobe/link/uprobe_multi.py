"""uprobe.multi and uretprobe.multi: one BPF link on many offsets of one file.

Minimum kernel 6.6 (BPF_TRACE_UPROBE_MULTI); older kernels refuse the attach
type, and :func:`attach_uprobe_multi` says so with a NotSupportedError.

``BPF_LINK_CREATE`` takes the file's ``path``, the probed *file* offsets (as a
uprobe's, :mod:`.uprobe`), for each an optional reference counter offset (a
USDT semaphore, incremented while the probe is attached) and a cookie
(``bpf_get_attach_cookie``), the return flag (BPF_F_UPROBE_MULTI_RETURN) and a
pid (0: every process mapping the file).

Functions are named by a glob (``SEC("uprobe.multi/<path>:<pattern>")``,
``*`` and ``?``), resolved in the file's symbol tables by
:func:`.uprobe.symbol_file_offsets` as libbpf resolves them, or by exact names
(:func:`.uprobe.symbol_file_offset`, the uprobe rule), or given as offsets.
"""
from __future__ import annotations

import errno
import os

from ..errors import (InvalidValueError, NotFoundError, NotSupportedError, ObjectFormatError,
                      SyscallError)
from ..uapi import AttachType, MultiLinkFlags, ProgType
from . import Link, _attach
from .uprobe import resolve_binary_path, symbol_file_offset, symbol_file_offsets

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Sequence

__all__ = ["attach_uprobe_multi"]

NEEDS = "uprobe.multi needs Linux 6.6+; attach one uprobe/ program per function instead"


def _translate(err: SyscallError, target: str, pid: int) -> Exception:
    e = err.errno
    if e in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP):
        from .. import features
        f = features.uprobe_multi()
        if not f.supported:
            return NotSupportedError(f"uprobe.multi {target}: not supported by this "
                                     f"kernel ({f.detail}); {NEEDS}")
        return SyscallError(f"uprobe.multi {target}", e,
                            "an offset may lie beyond the end of the file")
    if e == errno.ESRCH:
        return NotFoundError(f"uprobe.multi {target}: no process with pid {pid}")
    if e == errno.ENOENT:
        return NotFoundError(f"uprobe.multi {target}: the kernel cannot find the file")
    return err


def attach_uprobe_multi(prog: Any, path: str, pattern: str | None = None, *,
                        syms: Sequence[str] | None = None,
                        offsets: Sequence[int] | None = None,
                        ref_ctr_offsets: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None,
                        pid: int = -1, retprobe: bool = False) -> Link:
    """Attach a uprobe.multi program to many functions of ``path`` at once.

    Give exactly one of ``pattern`` (a glob over the file's function names),
    ``syms`` (exact names, ``name@VERSION`` accepted) or ``offsets`` (file
    offsets).  ``ref_ctr_offsets`` and ``cookies``, one per function, go with
    ``syms`` or ``offsets``.  ``pid``: -1 every process, 0 this one, else that
    process.  ``retprobe`` runs the program at the functions' returns.
    Minimum kernel 6.6; NotSupportedError before.
    """
    from .._sys import bpf
    _attach.check_type(prog, (ProgType.KPROBE,), "uprobe.multi",
                       'SEC("uprobe.multi/<path>:<pattern>")')
    spec = getattr(prog, "spec", None)
    if getattr(spec, "expected_attach_type", AttachType.TRACE_UPROBE_MULTI) \
            != AttachType.TRACE_UPROBE_MULTI:
        raise ObjectFormatError(
            f"program {_attach.prog_label(prog)!r} was not loaded for uprobe.multi (its "
            "expected attach type must be BPF_TRACE_UPROBE_MULTI): put it in "
            'SEC("uprobe.multi/<path>:<pattern>") or SEC("uretprobe.multi/...")')
    if sum(x is not None for x in (pattern, syms, offsets)) != 1:
        raise InvalidValueError("uprobe.multi: give exactly one of pattern, syms or offsets")
    if pattern is not None and (cookies is not None or ref_ctr_offsets is not None):
        raise InvalidValueError("uprobe.multi: cookies and ref_ctr_offsets go with syms or "
                                "offsets, one per function; a pattern's come in no set order")
    if pid < -1:
        raise InvalidValueError(f"uprobe.multi: pid {pid}: -1 (every process), 0 (this "
                                "one) or a process id")
    path = resolve_binary_path(path)
    if pattern is not None:
        found = symbol_file_offsets(path, pattern)
        if not found:
            raise NotFoundError(f"uprobe.multi: pattern {pattern!r} matches no function "
                                f"in {path} (.symtab/.dynsym)")
        where = [off for _, off in found]
        target = f"{path}:{pattern}"
    elif syms is not None:
        where = [symbol_file_offset(path, s) for s in syms]
        target = f"{path}:{','.join(syms)}"
    else:
        where = list(offsets or ())
        target = f"{path}:{','.join(hex(o) for o in where)}"
    if not where:
        raise InvalidValueError("uprobe.multi: no functions given")
    if any(o < 0 for o in where):
        raise InvalidValueError(f"uprobe.multi {target}: negative offset")
    for what, values in (("cookies", cookies), ("ref_ctr_offsets", ref_ctr_offsets)):
        if values is not None and len(values) != len(where):
            raise InvalidValueError(f"uprobe.multi {target}: {len(values)} {what} for "
                                    f"{len(where)} functions; give one each")
    if len(target) > 200:
        target = f"{path}:{len(where)} functions"
    kpid = os.getpid() if pid == 0 else 0 if pid == -1 else pid
    flags = MultiLinkFlags.UPROBE_MULTI_RETURN if retprobe else 0
    try:
        fd = bpf.link_create_uprobe_multi(_attach.prog_fd(prog), os.fsencode(path), where,
                                          ref_ctr_offsets=ref_ctr_offsets or (),
                                          cookies=cookies or (), flags=flags, pid=kpid)
    except SyscallError as e:
        raise _translate(e, target, pid) from None
    return Link("uretprobe_multi" if retprobe else "uprobe_multi", target, "bpf_link",
                [fd], program=_attach.prog_label(prog))
