"""Helpers shared by the attach kinds.

Perf-event-based kinds (tracepoint, kprobe, uprobe) end in :func:`attach`,
which attaches a BPF program to a perf event:

* ``BPF_LINK_CREATE`` with attach type ``BPF_PERF_EVENT`` (5.15+) gives a BPF
  link that owns the attachment (and holds the perf event file).  Preferred:
  it shows in ``bpftool link``, and the program stays attached exactly as long
  as the link fd.
* ``PERF_EVENT_IOC_SET_BPF`` (4.1+) on older kernels: the program stays
  attached as long as the perf event fd.

Then ``PERF_EVENT_IOC_ENABLE``.  Before 5.15 ``BPF_LINK_CREATE`` does not know
this attach type and answers EINVAL; after the ioctl then succeeds once, the
link is not tried again.

One perf event with ``pid=-1, cpu=0`` is enough for a tracepoint or kprobe:
the BPF program hangs off the trace event (``tp_event->prog_array``), which
runs on every CPU, and the perf event only keeps it registered.
"""
from __future__ import annotations

import errno

from ..errors import NotSupportedError, ObjectFormatError, SyscallError

# No run-time ``typing`` (it imports re, enum, collections...: several ms).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

# None = unknown, True = this kernel has BPF perf links, False = it has not.
_perf_link: bool | None = None


def prog_fd(prog: Any) -> int:
    """The raw program fd of a Program, an FD, or an int."""
    fd = getattr(prog, "fd", prog)
    return fd if isinstance(fd, int) else fd.fileno()


def prog_label(prog: Any) -> str:
    return getattr(prog, "name", "") or ""


def check_type(prog: Any, allowed: tuple[int, ...], what: str, hint: str) -> None:
    """Refuse a program whose type cannot attach as ``what`` (clearer than EINVAL)."""
    ptype = getattr(prog, "type", None)
    if ptype is None or int(ptype) in allowed:
        return
    from ..uapi import ProgType
    try:
        tname = ProgType(int(ptype)).name
    except ValueError:
        tname = str(int(ptype))
    raise ObjectFormatError(
        f"program {prog_label(prog)!r} is of type {tname}; {what} needs a program "
        f"from {hint}")


def attach(prog: Any, pfd: Any, kind: str, target: str, event: Any = None):
    """Attach ``prog`` to perf event ``pfd`` and enable it; returns a Link owning
    ``pfd`` (and ``event``).  On any failure ``pfd`` is closed and ``event`` removed."""
    from . import Link
    try:
        mech, fds = attach_perf(prog, pfd, kind, target)
    except BaseException:
        if event is not None:
            event.remove_quietly()
        raise
    if event is not None:
        mech += "+tracefs"
    return Link(kind, target, mech, fds, event=event, program=prog_label(prog))


def attach_perf(prog: Any, pfd: Any, kind: str, target: str,
                cookie: int = 0) -> tuple[str, list]:
    """The work of :func:`attach`: (mechanism, fds to close in order: the BPF
    link if any, then ``pfd``).  ``cookie``: the BPF cookie
    (``bpf_get_attach_cookie``), which only a BPF perf link carries (5.15+).
    On failure ``pfd`` is closed."""
    global _perf_link
    from .._sys import bpf, perf
    from ..uapi import AttachType

    pfd_int = pfd.fileno()
    link_fd = None
    try:
        fd = prog_fd(prog)
        if _perf_link is not False:
            try:
                link_fd = bpf.link_create(fd, pfd_int, AttachType.PERF_EVENT,
                                          bpf_cookie=cookie)
                _perf_link = True
            except SyscallError as e:
                if _perf_link or e.errno != errno.EINVAL:
                    raise
        if link_fd is None:
            if cookie:
                raise NotSupportedError(f"{kind} {target}: a BPF cookie needs a BPF perf "
                                        "link (kernel 5.15+)")
            perf.set_bpf(pfd_int, fd)
            if _perf_link is None:
                _perf_link = False
        perf.enable(pfd_int)
        if link_fd is not None:
            return "perf_link", [link_fd, pfd]
        return "perf_ioctl", [pfd]
    except BaseException:
        if link_fd is not None:
            link_fd.close()
        pfd.close()
        raise


def attach_btf_target(prog: Any, kind: str, needs: str):
    """``BPF_RAW_TRACEPOINT_OPEN`` with no name: for programs whose target was
    fixed at load time by ``attach_btf_id`` (tp_btf, fentry, fexit, fmod_ret,
    lsm; 5.5+).  ``needs`` completes the not-supported message."""
    from .._sys import bpf
    from .._sys.errno import ENOTSUPP
    from . import Link
    target = getattr(getattr(prog, "spec", None), "attach_to", "") or ""
    try:
        fd = bpf.raw_tracepoint_open(None, prog_fd(prog))
    except SyscallError as e:
        if e.errno in (errno.EOPNOTSUPP, ENOTSUPP):
            raise NotSupportedError(
                f"{kind}: cannot attach {prog_label(prog)!r} to {target or '?'} ({e}); "
                + needs) from None
        raise
    return Link(kind, target, "bpf_link", [fd], program=prog_label(prog))
