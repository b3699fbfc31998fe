"""kprobe.multi and kretprobe.multi: one BPF link on many kernel functions.

Minimum kernel 5.18 built with CONFIG_FPROBE (fprobes are ftrace hooks, so
only functions ftrace can trace are candidates; Debian's 6.12 has it, its 6.1
does not); ``bpf_get_attach_cookie`` gives each function's cookie, and
``bpf_get_func_ip`` its address.  ``kprobe.session`` (6.10+) is the same link
with attach type BPF_TRACE_KPROBE_SESSION: one program at entry and return,
whose entry run returns 0 to also run at the return.

``BPF_LINK_CREATE`` with attach type BPF_TRACE_KPROBE_MULTI takes the
functions as ``syms`` (names; the kernel looks them up) or ``addrs``, with
``cookies[i]`` for the i-th, and the return flag (BPF_F_KPROBE_MULTI_RETURN).

Patterns (``SEC("kprobe.multi/vfs_*")``) are resolved the way libbpf resolves
them, to addresses: the glob (``*`` and ``?``, :func:`rawprobe.names.glob_match`)
is matched against ftrace's list of traceable functions,
``available_filter_functions_addrs`` (6.5+), else the names of
``available_filter_functions`` looked up in ``/proc/kallsyms`` (a kallsyms name
with an ``.llvm.<hash>`` suffix counts as its stem, as libbpf accepts).  Where
tracefs is missing, or its lists unreadable (a sandbox policy), rawprobe matches
kallsyms' text symbols instead (libbpf gives up there); the kernel then refuses
the functions ftrace cannot trace.
The placeholders ftrace lists for addresses it could not name
(``__ftrace_invalid_address___<n>``) are never attach targets and are skipped.
"""
from __future__ import annotations

import errno

from ..errors import (ENOTSUPP, InvalidValueError, NotFoundError, NotSupportedError,
                      ObjectFormatError, PermissionDeniedError, SyscallError)
from ..names import glob_match
from ..uapi import AttachType, MultiLinkFlags, ProgType
from . import Link, _attach

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Sequence

__all__ = ["attach_kprobe_multi", "resolve_kprobe_pattern"]

_INVALID = "__ftrace_invalid_address__"
NEEDS = ("kprobe.multi needs Linux 5.18+ built with CONFIG_FPROBE (Debian's 6.12 has "
         "it, its 6.1 does not); attach one kprobe/ program per function instead")


def _from_addrs_file(text: bytes, pattern: str) -> list[int]:
    addrs = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[1].startswith(_INVALID) \
                and glob_match(parts[1], pattern):
            addrs.append(int(parts[0], 16))
    return addrs


def _kallsyms_functions(pattern: str, wanted: set[str] | None) -> list[int]:
    """Addresses of kallsyms' text symbols matching ``pattern`` (and named in
    ``wanted``, if given: the traceable ones)."""
    from .. import kallsyms
    text = kallsyms.read(f"kprobe.multi {pattern!r}: the functions' addresses")
    addrs = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[1] not in kallsyms.FUNCTION_TYPES:
            continue
        name = parts[2]
        stem = name.partition(".llvm.")[0]
        if not glob_match(name, pattern) and not glob_match(stem, pattern):
            continue
        if wanted is not None and name not in wanted and stem not in wanted:
            continue
        addrs.append(int(parts[0], 16))
    if addrs and not any(addrs):
        raise NotSupportedError(
            f"kprobe.multi {pattern!r}: {kallsyms.KALLSYMS} shows every address as 0 "
            "(kernel.kptr_restrict hides them from this process): run as root with "
            "kernel.kptr_restrict 0 or 1")
    return addrs


def resolve_kprobe_pattern(pattern: str) -> list[int]:
    """The addresses of the kernel functions glob ``pattern`` names, as libbpf
    resolves a kprobe.multi pattern (see the module docstring), sorted and
    without duplicates.  NotFoundError when it matches nothing."""
    from . import tracefs
    if not pattern:
        raise ObjectFormatError("kprobe.multi: empty function pattern")
    try:
        listed = tracefs.traceable_functions()
        why = "no tracefs"
    except PermissionDeniedError as e:       # a sandbox or lockdown policy says no
        listed, why = None, str(e).split(";")[0]
    if listed is None:
        where = f"the text symbols of /proc/kallsyms ({why})"
        addrs = _kallsyms_functions(pattern, None)
    elif listed[0].endswith("_addrs"):
        where = listed[0]
        addrs = _from_addrs_file(listed[1], pattern)
    else:
        where = f"{listed[0]} (addresses from /proc/kallsyms)"
        names = {n for n in (line.split(maxsplit=1)[0] for line in
                             listed[1].decode(errors="replace").splitlines() if line)
                 if not n.startswith(_INVALID) and glob_match(n, pattern)}
        addrs = _kallsyms_functions(pattern, names) if names else []
    if not addrs:
        raise NotFoundError(f"kprobe.multi: pattern {pattern!r} matches no traceable "
                            f"kernel function in {where}")
    return sorted(set(addrs))


def _translate(err: SyscallError, target: str, syms: bool) -> Exception:
    e = err.errno
    if e in (errno.EOPNOTSUPP, ENOTSUPP):
        return NotSupportedError(f"kprobe.multi {target}: this kernel has no fprobe "
                                 f"(CONFIG_FPROBE is off); {NEEDS}")
    if e in (errno.EINVAL, errno.E2BIG):
        from .. import features
        f = features.kprobe_multi()
        if not f.supported:
            return NotSupportedError(f"kprobe.multi {target}: not supported by this "
                                     f"kernel ({f.detail}); {NEEDS}")
        return SyscallError(f"kprobe.multi {target}", e,
                            "a function may be one ftrace cannot trace (notrace, or "
                            "not in available_filter_functions)")
    if e in (errno.ENOENT, errno.ESRCH):
        what = "a symbol is not a kernel function" if syms else \
            "an address is not the start of a traceable kernel function"
        return NotFoundError(f"kprobe.multi {target}: {what} ({err})")
    return err


def attach_kprobe_multi(prog: Any, pattern: str | None = None, *,
                        syms: Sequence[str] | None = None,
                        addrs: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None,
                        retprobe: bool = False) -> Link:
    """Attach a kprobe.multi program to many kernel functions at once.

    Give exactly one of ``pattern`` (a glob, ``"vfs_*"``), ``syms`` (function
    names) or ``addrs`` (their addresses); ``cookies`` (with ``syms`` or
    ``addrs``) gives the i-th function the i-th cookie, which the program reads
    with ``bpf_get_attach_cookie``.  ``retprobe`` runs it at the functions'
    returns.  A ``kprobe.session`` program (6.10+) is attached the same way.
    Minimum kernel 5.18 with CONFIG_FPROBE; NotSupportedError otherwise.
    """
    from .._sys import bpf
    _attach.check_type(prog, (ProgType.KPROBE,), "kprobe.multi",
                       'SEC("kprobe.multi/<pattern>")')
    spec = getattr(prog, "spec", None)
    attach_type = getattr(spec, "expected_attach_type", AttachType.TRACE_KPROBE_MULTI)
    if attach_type not in (AttachType.TRACE_KPROBE_MULTI, AttachType.TRACE_KPROBE_SESSION):
        raise ObjectFormatError(
            f"program {_attach.prog_label(prog)!r} was not loaded for kprobe.multi (its "
            "expected attach type must be BPF_TRACE_KPROBE_MULTI): put it in "
            'SEC("kprobe.multi/<pattern>") or SEC("kretprobe.multi/<pattern>")')
    session = attach_type == AttachType.TRACE_KPROBE_SESSION
    if session and retprobe:
        raise InvalidValueError("kprobe.session: a session program runs at entry and "
                                "return already; retprobe does not apply")
    if sum(x is not None for x in (pattern, syms, addrs)) != 1:
        raise InvalidValueError("kprobe.multi: give exactly one of pattern, syms or addrs")
    if pattern is not None and cookies is not None:
        raise InvalidValueError("kprobe.multi: cookies go with syms or addrs, one per "
                                "function; a pattern's functions come in no set order")
    names = [s.encode() for s in syms] if syms is not None else []
    where = list(addrs) if addrs is not None else []
    if pattern is not None:
        where = resolve_kprobe_pattern(pattern)
        target = pattern
    else:
        if not names and not where:
            raise InvalidValueError("kprobe.multi: no functions given")
        target = (",".join(syms) if syms is not None
                  else ",".join(hex(a) for a in where))
        if len(target) > 200:
            target = f"{len(names) or len(where)} functions"
    if cookies is not None and len(cookies) != len(names or where):
        raise InvalidValueError(f"kprobe.multi: {len(cookies)} cookies for "
                                f"{len(names or where)} functions; give one each")
    flags = MultiLinkFlags.KPROBE_MULTI_RETURN if retprobe else 0
    try:
        fd = bpf.link_create_kprobe_multi(_attach.prog_fd(prog), attach_type, flags,
                                          syms=names, addrs=where, cookies=cookies or ())
    except SyscallError as e:
        raise _translate(e, target, bool(names)) from None
    kind = ("kprobe_session" if session else
            "kretprobe_multi" if retprobe else "kprobe_multi")
    return Link(kind, target, "bpf_link", [fd], program=_attach.prog_label(prog))
