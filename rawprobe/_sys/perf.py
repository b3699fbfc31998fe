"""perf_event_open(2), the perf ioctls rawprobe uses, and dynamic PMU lookups.

A BPF program is attached to a tracepoint, kprobe or uprobe by opening a
perf event for it and then either ``PERF_EVENT_IOC_SET_BPF`` (4.1; the
event must be enabled) or ``BPF_LINK_CREATE`` with attach type PERF_EVENT
(5.15).  kprobe/uprobe events use dynamic PMUs (4.17) whose type number and
config bit layout are read from sysfs.  Tracepoint ids come from tracefs,
which is not a syscall: see ``rawprobe.link.tracefs``.
"""
from __future__ import annotations

import errno as _E
import os
import weakref

from ..errors import NotSupportedError
from ..uapi import PerfFlag
from ._native import call, ffi, lib
from .consts import (PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF,
                     syscall_numbers)
from .errno import syscall_error
from .fd import FD

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Mapping, Union

__all__ = [
    "perf_attr", "perf_event_open", "ioctl", "set_bpf", "enable", "disable",
    "pmu_type", "pmu_format", "retprobe_bit",
]

PMU_ROOT = "/sys/bus/event_source/devices"

_NR_PERF_EVENT_OPEN = ffi.cast("long", syscall_numbers()["perf_event_open"])
_ATTR_P = ffi.typeof("struct perf_event_attr *")
_ATTR_SIZE = ffi.sizeof("struct perf_event_attr")
_LONG = ffi.typeof("long")
_ULONG = ffi.typeof("unsigned long")
_CHARS = ffi.typeof("char[]")
# Fields that hold the address of a C string; perf_attr accepts bytes there.
_STRING_FIELDS = frozenset(("kprobe_func", "uprobe_path"))
# Keeps those strings alive as long as the attr that points to them.
_strings: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def perf_attr(**fields: Any) -> Any:
    """A ``struct perf_event_attr *`` with ``size`` set and ``fields`` by their
    kernel names (bitfields included: ``disabled=1``).  ``kprobe_func`` /
    ``uprobe_path`` may be bytes (a path or symbol name); they live as long
    as the returned attr."""
    attr = ffi.new(_ATTR_P)
    attr.size = _ATTR_SIZE
    keep = []
    for name, value in fields.items():
        if name in _STRING_FIELDS and isinstance(value, (bytes, str)):
            s = ffi.new(_CHARS, os.fsencode(value))
            keep.append(s)
            value = int(ffi.cast("uintptr_t", s))
        setattr(attr, name, value)
    if keep:
        _strings[attr] = keep
    return attr


def perf_event_open(attr: Union[Mapping[str, Any], Any], pid: int = -1, cpu: int = 0,
                    group_fd: int = -1, flags: int = PerfFlag.FD_CLOEXEC) -> FD:
    """perf_event_open(2) -> FD.  ``attr`` is a dict of field names (see
    :func:`perf_attr`) or a ``struct perf_event_attr *``.

    For attaching BPF to a tracepoint/kprobe/uprobe: pid -1, cpu 0 (the
    program runs on every CPU regardless).  PERF_FLAG_FD_CLOEXEC is always
    added.
    """
    if not isinstance(attr, ffi.CData):     # a mapping of field names
        attr = perf_attr(**attr)
    r = call(lib.syscall, _NR_PERF_EVENT_OPEN, attr, ffi.cast(_LONG, pid),
             ffi.cast(_LONG, cpu), ffi.cast(_LONG, group_fd),
             ffi.cast(_ULONG, flags | PerfFlag.FD_CLOEXEC))
    if r < 0:
        raise syscall_error("perf_event_open", -r, _open_hint(-r))
    return FD(r)


def _open_hint(err: int) -> str:
    if err == _E.ENOENT:
        return "no such event (is the tracepoint/PMU there?)"
    if err == _E.E2BIG:
        return "this kernel's perf_event_attr is smaller and a field it lacks is set"
    return ""


def ioctl(fd: Any, request: int, arg: int = 0) -> int:
    """ioctl(fd, request, arg) with an integer ``arg``; raises on failure."""
    fdn = fd if type(fd) is int else fd.fileno()
    r = call(lib.ioctl, fdn, request, ffi.cast(_ULONG, arg))
    if r < 0:
        raise syscall_error(f"ioctl({request:#x})", -r)
    return r


def set_bpf(fd: Any, prog_fd: Any) -> None:
    """PERF_EVENT_IOC_SET_BPF (4.1): run ``prog_fd`` when the event fires."""
    ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd if type(prog_fd) is int else prog_fd.fileno())


def enable(fd: Any) -> None:
    """PERF_EVENT_IOC_ENABLE."""
    ioctl(fd, PERF_EVENT_IOC_ENABLE)


def disable(fd: Any) -> None:
    """PERF_EVENT_IOC_DISABLE."""
    ioctl(fd, PERF_EVENT_IOC_DISABLE)


# ---- sysfs PMU lookups ------------------------------------------------

def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def pmu_type(pmu: str) -> int:
    """The ``type`` of a dynamic PMU ("kprobe", "uprobe", ...) from sysfs."""
    try:
        return int(_read(f"{PMU_ROOT}/{pmu}/type"))
    except FileNotFoundError:
        need = (f": {pmu}s need Linux 4.17+ and CONFIG_{pmu.upper()}_EVENTS"
                if pmu in ("kprobe", "uprobe") else "")
        raise NotSupportedError(
            f"this kernel has no {pmu!r} PMU ({PMU_ROOT}/{pmu} is missing){need}") from None


def pmu_format(pmu: str, name: str) -> tuple[str, int, int]:
    """A PMU format field: ``(attr field, first bit, last bit)``, e.g. the
    uprobe PMU's ``retprobe`` is ``("config", 0, 0)``."""
    try:
        text = _read(f"{PMU_ROOT}/{pmu}/format/{name}")
    except FileNotFoundError:
        pmu_type(pmu)  # raises NotSupportedError when the PMU itself is missing
        raise NotSupportedError(f"the {pmu!r} PMU has no {name!r} format field") from None
    field, _, bits = text.partition(":")
    lo, _, hi = bits.partition("-")
    try:
        return field, int(lo), int(hi or lo)
    except ValueError:
        raise NotSupportedError(
            f"cannot parse {PMU_ROOT}/{pmu}/format/{name}: {text!r}") from None


def retprobe_bit(pmu: str) -> int:
    """The ``config`` bit that makes a kprobe/uprobe PMU event a return probe."""
    field, lo, _ = pmu_format(pmu, "retprobe")
    if field != "config":
        raise NotSupportedError(f"the {pmu!r} PMU's retprobe bit is in {field}, not config")
    return lo
