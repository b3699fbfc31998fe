"""Tracepoints: a program of type BPF_PROG_TYPE_TRACEPOINT on ``group/name``.

Minimum kernel 4.7.  The tracepoint's id comes from tracefs
(``events/<group>/<name>/id``); a perf event of type ``PERF_TYPE_TRACEPOINT``
with that id as ``config`` is opened on CPU 0 for every process (the program
runs on every CPU: it is attached to the tracepoint, not to the perf event)
and the program attached to it with a BPF perf link (5.15+) or
``PERF_EVENT_IOC_SET_BPF``.  The program's context is the tracepoint's record
as described by ``events/<group>/<name>/format``.
"""
from __future__ import annotations

from ..uapi import PerfType, ProgType
from . import Link, _attach, tracefs

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["attach_tracepoint", "open_tracepoint_event"]


def open_tracepoint_event(tp_id: int, pid: int = -1):
    """A perf event (FD) for tracepoint id ``tp_id``: all processes on CPU 0,
    or only ``pid`` on any CPU."""
    from .._sys import perf
    attr = {"type": PerfType.TRACEPOINT, "config": tp_id,
            "sample_period": 1, "wakeup_events": 1}
    return perf.perf_event_open(attr, pid=pid if pid >= 0 else -1,
                                cpu=-1 if pid >= 0 else 0)


def attach_tracepoint(prog: Any, group: str, name: str) -> Link:
    """Attach a tracepoint program to ``group/name`` (e.g. ``"syscalls"``,
    ``"sys_enter_write"``).  NotFoundError if the tracepoint does not exist."""
    _attach.check_type(prog, (ProgType.TRACEPOINT,), "a tracepoint",
                       'SEC("tracepoint/<group>/<name>")')
    tp_id = tracefs.tracepoint_id(group, name)
    pfd = open_tracepoint_event(tp_id)
    return _attach.attach(prog, pfd, "tracepoint", f"{group}/{name}")
