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


def may_kill_any() -> bool:
    """CAP_KILL: the kernel lets this process signal any user's processes."""
    return bool(effective_caps() & (1 << CAP_KILL))


# The initial pid namespace's inode number (PROC_PID_INIT_INO, include/linux/proc_ns.h).
PROC_PID_INIT_INO = 0xEFFFFFFC


def check_pid_namespace() -> None:
    """Refuse to run in a child pid namespace: the kernel side reports pids of the
    initial namespace, which a pidfd_open here would resolve to other processes,
    or to none."""
    from ..errors import NotSupportedError
    try:
        ino = os.stat("/proc/self/ns/pid").st_ino
    except OSError as e:
        raise NotSupportedError(f"cannot tell which pid namespace this is "
                                f"(/proc/self/ns/pid: {e.strerror}); mount /proc") from None
    if ino != PROC_PID_INIT_INO:
        raise NotSupportedError(
            "rawprobe watch is running in a child pid namespace, where the pids the "
            "kernel reports name other processes or none; run it in the host's pid "
            "namespace (podman/docker --pid=host, Kubernetes hostPID: true)")
