"""This process's capabilities (capabilities(7)): what loading BPF programs needs.

Loading and attaching tracing programs needs CAP_SYS_ADMIN, or CAP_BPF together
with CAP_PERFMON (both Linux 5.8+).  Signalling needs nothing up front: the
kernel lets a process signal any process whose real or saved uid is its own real
or effective uid, and asks for CAP_KILL only for the others (``kill_ok_by_cred``
in kernel/signal.c), target by target.  The effective set is read from
``/proc/self/status`` (no libcap, no capget(2) through cffi).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional

__all__ = ["CAP_KILL", "CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_BPF", "effective",
           "missing_for_bpf"]

# include/uapi/linux/capability.h
CAP_KILL, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 5, 21, 38, 39
_BPF_CAPS = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}


def effective() -> Optional[int]:
    """The effective capability set as a bit mask (bit n: capability n); None
    when /proc cannot say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def missing_for_bpf(eff: Optional[int] = None) -> list[str]:
    """The capabilities this process lacks to load and attach tracing programs,
    by name, sorted; [] when it has enough or when that cannot be told (then the
    kernel's answer, EPERM or not, is the one that counts)."""
    if eff is None:
        eff = effective()
        if eff is None:
            return []
    if eff >> CAP_SYS_ADMIN & 1 or (eff >> CAP_BPF & 1 and eff >> CAP_PERFMON & 1):
        return []
    return sorted(name for bit, name in _BPF_CAPS.items() if not eff >> bit & 1)
