"""Numbers the syscall layer needs: syscall numbers, perf ioctls, and
(re-exported from :mod:`rawprobe.uapi`, their one definition) the kernel's
enums as IntConst classes: ``MapType``, ``ProgType``, ``AttachType``, ...

This module imports neither cffi nor ``enum``/``typing``: parsers may use it.
"""
from __future__ import annotations

import os

from ..errors import NotSupportedError
from ..uapi import (BPF_OBJ_NAME_LEN, MAP_IN_MAP_TYPES, MAP_TYPES_WITHOUT_BTF,
                    MAP_TYPES_WITHOUT_BTF_VALUE, AttachType, BpfCmd, BpfFunc, BpfPerfEventType,
                    LinkType, MapFlags, MapType, MultiLinkFlags, PerfFlag, PerfRecordType,
                    PerfSampleFormat, PerfSwId, PerfType, ProgFlags, ProgType, StatsType,
                    UpdateFlags)

__all__ = [
    "BPF_OBJ_NAME_LEN", "MAP_IN_MAP_TYPES", "MAP_TYPES_WITHOUT_BTF",
    "MAP_TYPES_WITHOUT_BTF_VALUE", "AttachType", "BpfCmd", "BpfFunc", "BpfPerfEventType", "LinkType",
    "MapFlags", "MapType", "MultiLinkFlags", "PerfFlag", "PerfRecordType", "PerfSampleFormat",
    "PerfSwId", "PerfType", "ProgFlags", "ProgType", "StatsType", "UpdateFlags",
    "PERF_EVENT_IOC_ENABLE", "PERF_EVENT_IOC_DISABLE", "PERF_EVENT_IOC_REFRESH",
    "PERF_EVENT_IOC_RESET", "PERF_EVENT_IOC_PERIOD", "PERF_EVENT_IOC_SET_OUTPUT",
    "PERF_EVENT_IOC_SET_FILTER", "PERF_EVENT_IOC_ID", "PERF_EVENT_IOC_SET_BPF",
    "PERF_EVENT_IOC_PAUSE_OUTPUT", "PERF_IOC_FLAG_GROUP", "SYSCALLS", "syscall_numbers",
]


# perf ioctls: asm-generic/ioctl.h encoding (x86_64 and aarch64 share it).
PERF_EVENT_IOC_ENABLE = 0x2400              # _IO('$', 0)
PERF_EVENT_IOC_DISABLE = 0x2401             # _IO('$', 1)
PERF_EVENT_IOC_REFRESH = 0x2402             # _IO('$', 2)
PERF_EVENT_IOC_RESET = 0x2403               # _IO('$', 3)
PERF_EVENT_IOC_PERIOD = 0x40082404          # _IOW('$', 4, __u64)
PERF_EVENT_IOC_SET_OUTPUT = 0x2405          # _IO('$', 5)
PERF_EVENT_IOC_SET_FILTER = 0x40082406      # _IOW('$', 6, char *)
PERF_EVENT_IOC_ID = 0x80082407              # _IOR('$', 7, __u64 *)
PERF_EVENT_IOC_SET_BPF = 0x40042408         # _IOW('$', 8, __u32)
PERF_EVENT_IOC_PAUSE_OUTPUT = 0x40042409    # _IOW('$', 9, __u32)
PERF_IOC_FLAG_GROUP = 1


# ---- system call numbers ---------------------------------------------------

# Per ``os.uname().machine`` (what platform.machine() returns, without
# importing platform).  aarch64 uses the asm-generic table.
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "bpf": 321,
        "perf_event_open": 298,
        "lsm_list_modules": 461,
    },
    "aarch64": {
        "bpf": 280,
        "perf_event_open": 241,
        "lsm_list_modules": 461,
    },
}
SYSCALLS["arm64"] = SYSCALLS["aarch64"]


def syscall_numbers(machine: str | None = None) -> dict[str, int]:
    """The syscall numbers rawprobe uses on ``machine`` (default: this one)."""
    machine = machine or os.uname().machine
    try:
        return SYSCALLS[machine]
    except KeyError:
        raise NotSupportedError(
            f"rawprobe knows the system call numbers of {', '.join(sorted(SYSCALLS))}, "
            f"not of {machine!r}") from None
