"""Checks made before anything is loaded, so failures are one clear line."""
from __future__ import annotations

import os

from ..errors import PermissionDeniedError, RawprobeError
from . import procinfo
from .options import WatchOptions

CAP_KILL, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 5, 21, 38, 39


class PreflightError(RawprobeError):
    """The watch cannot run as asked (privileges, limits, a dangerous filter)."""


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


def _cgroup_path(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def would_match(pid: int, o: WatchOptions) -> bool:
    """Do the watch's filters select this (running) process?  Best effort, from /proc."""
    if o.comm is not None and procinfo.read_comm(pid) != o.comm:
        return False
    if o.pids and pid not in o.pids:
        return False
    if o.uid is not None and _uid(pid) != o.uid:
        return False
    if o.cgroup_id is not None:
        path = _cgroup_path(pid)
        mine = o.cgroup and os.path.realpath(o.cgroup)
        if path is None or not mine:
            return False
        from .options import _cgroup2_mounts
        roots = _cgroup2_mounts()
        full = os.path.join(roots[0], path.lstrip("/")) if roots else path
        if not (full == mine or full.startswith(mine.rstrip("/") + "/")):
            return False
    return True


def kernel_signal_hazards(o: WatchOptions, protected: frozenset[int]) -> list[str]:
    """With --action kernel-signal the kernel signals at the call, before any userspace
    guard; refuse to arm if the filters select pid 1, this tool or its ancestors."""
    me = os.getpid()
    hits = []
    for pid in sorted(protected | {1}):
        if pid == me:
            continue     # the BPF side never intercepts the tool itself (self_tgid)
        if would_match(pid, o):
            hits.append(f"{pid} ({procinfo.read_comm(pid)})")
    return hits
