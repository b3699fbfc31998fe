"""Checks made before anything is loaded, so failures are one clear line."""
from __future__ import annotations

import os

from ..errors import PermissionDeniedError

CAP_KILL, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 5, 21, 38, 39


def effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges(action: str) -> None:
    caps = effective_caps()
    need_bpf = caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON))
    if not need_bpf:
        raise PermissionDeniedError(
            "watch", 1, "rawprobe watch needs root, or CAP_BPF and CAP_PERFMON "
            "(run it with sudo)")
    if action != "report" and os.geteuid() != 0 and not caps & (1 << CAP_KILL):
        raise PermissionDeniedError(
            "watch", 1, "signalling other users' processes needs root or CAP_KILL "
            "(or use --action report)")


def raise_nofile(wanted: int) -> int:
    """Raise the soft fd limit for ``wanted`` pidfds; returns how many fit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + 64
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - 64))
