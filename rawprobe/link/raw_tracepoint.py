"""Raw tracepoints (4.17) and BTF-typed raw tracepoints, ``tp_btf`` (5.5).

A raw tracepoint program sees the tracepoint's arguments as an array of u64
(``struct bpf_raw_tracepoint_args``), without the copying into a record a
classic tracepoint does.  ``BPF_RAW_TRACEPOINT_OPEN`` with the tracepoint's
name (``sys_enter``, ``sched_switch``: no group) returns a BPF link fd.

A ``tp_btf`` program (BPF_PROG_TYPE_TRACING, expected attach type
BPF_TRACE_RAW_TP) was bound to its tracepoint at load time through the BTF id
of ``btf_trace_<name>``, so ``BPF_RAW_TRACEPOINT_OPEN`` takes no name.
"""
from __future__ import annotations

import errno

from ..errors import NotFoundError, SyscallError
from ..uapi import ProgType
from . import Link, _attach

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["attach_raw_tracepoint", "attach_tp_btf"]


def attach_raw_tracepoint(prog: Any, name: str) -> Link:
    """Attach a raw tracepoint program to tracepoint ``name`` (no group)."""
    from .._sys import bpf
    _attach.check_type(prog, (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE),
                       "a raw tracepoint", 'SEC("raw_tracepoint/<name>")')
    if not name or "/" in name or "\0" in name:
        raise NotFoundError(f"raw tracepoint {name!r}: give the tracepoint name without "
                            "its group, e.g. 'sys_enter' or 'sched_switch'")
    try:
        fd = bpf.raw_tracepoint_open(name.encode(), _attach.prog_fd(prog))
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise NotFoundError(
                f"raw tracepoint {name!r} not found (names are tracepoint names without "
                "the group, e.g. 'sys_enter'; see available_events in tracefs)") from None
        raise
    return Link("raw_tracepoint", name, "bpf_link", [fd], program=_attach.prog_label(prog))


def attach_tp_btf(prog: Any) -> Link:
    """Attach a ``tp_btf`` program to the tracepoint it was loaded for (5.5+)."""
    _attach.check_type(prog, (ProgType.TRACING,), "tp_btf", 'SEC("tp_btf/<name>")')
    return _attach.attach_btf_target(prog, "tp_btf", "BTF-typed tracepoints need "
                                     "Linux 5.5+ with CONFIG_DEBUG_INFO_BTF")
