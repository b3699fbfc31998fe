"""Where this process runs: what a container (or any sandbox) takes away.

``python -m rawprobe features`` prints :func:`report` after the kernel's
features, one line each: the capabilities (CAP_BPF + CAP_PERFMON to load and
attach, CAP_KILL to signal other users' processes), a seccomp filter (which
may refuse bpf(2) whatever the capabilities), the pid namespace (the host's,
or one of its own: pod mode), tracefs (absent from containers unless bound in;
only some hooks need it) and the cache directory (read-only root file
systems).  Everything here reads /proc and the file system; nothing is loaded.
"""
from __future__ import annotations

import os

from .caps import CAP_KILL, SECCOMP_HINT, SECCOMP_MODE_FILTER, effective, lacking_for_bpf, \
    seccomp_mode

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional

__all__ = ["PROC_PID_INIT_INO", "pid_namespace_inode", "proc_is_own_pid_namespace", "report"]

# The initial pid namespace's inode number (PROC_PID_INIT_INO, include/linux/proc_ns.h).
PROC_PID_INIT_INO = 0xEFFFFFFC


def pid_namespace_inode() -> Optional[int]:
    """The inode number of this process's pid namespace (/proc/self/ns/pid,
    3.8+); None when /proc cannot say."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def proc_is_own_pid_namespace() -> bool:
    """Whether /proc shows this process's own pid namespace, so that the pids in
    it are the ones this process uses (pidfd_open, kill).  /proc/self/status
    lists the process's pid in every namespace from /proc's down to its own
    (NSpid, 4.1+): exactly one means they are the same."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return len(line.split()) == 2
                if line.startswith(b"Pid:"):
                    pid = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return pid == os.getpid()           # before 4.1: the same pid, most likely


def _capabilities(eff: Optional[int]) -> tuple[str, bool, str]:
    lacking = lacking_for_bpf(eff)
    if eff is None:
        return ("capabilities", True, "/proc/self/status does not say: the kernel decides")
    if lacking:
        return ("capabilities", False,
                f"lacks {' and '.join(lacking)}: cannot load or attach (root, or "
                "--cap-add=BPF,PERFMON)")
    return ("capabilities", True, "may load and attach (CAP_BPF + CAP_PERFMON or CAP_SYS_ADMIN)")


def _signalling(eff: Optional[int]) -> tuple[str, bool, str]:
    if eff is not None and eff >> CAP_KILL & 1:
        return ("signalling", True, "CAP_KILL: may signal any process")
    return ("signalling", False,
            f"no CAP_KILL: may signal only processes whose real or saved uid is {os.getuid()}"
            + (f" or {os.geteuid()}" if os.geteuid() != os.getuid() else "")
            + "; others are refused (--cap-add=KILL)")


def _seccomp(bpf_works: bool, eff: Optional[int]) -> tuple[str, bool, str]:
    mode = seccomp_mode()
    if mode != SECCOMP_MODE_FILTER:
        return ("seccomp", True, "no filter" if mode == 0 else f"mode {mode}")
    if bpf_works:
        return ("seccomp", True, "a filter is active, and it allows bpf(2)")
    if lacking_for_bpf(eff):
        return ("seccomp", True, "a filter is active (whether it allows bpf(2) shows "
                "once the capabilities are there)")
    return ("seccomp", False, "a filter is active and refuses bpf(2) despite the "
            "capabilities: " + SECCOMP_HINT)


def _pid_namespace() -> tuple[str, bool, str]:
    ino = pid_namespace_inode()
    if ino is None:
        return ("pid namespace", False, "cannot tell (/proc/self/ns/pid): mount /proc")
    if ino == PROC_PID_INIT_INO:
        return ("pid namespace", True, "the host's (host mode): any process can be watched")
    if not proc_is_own_pid_namespace():
        return ("pid namespace", False, f"its own (pid:[{ino}]), but /proc is another "
                "namespace's: mount this one's (unshare --pid --fork --mount-proc)")
    return ("pid namespace", True, f"its own (pid:[{ino}], pod mode): only the processes "
            "it sees are watched, by their pids here; --pid=host (hostPID) for the host's")


def _tracefs() -> tuple[str, bool, str]:
    from .errors import NotSupportedError, PermissionDeniedError
    from .link import tracefs
    need = "the default raw_tp hook does not need it; --hook tracepoint does"
    try:
        return ("tracefs", True, f"at {tracefs.tracefs_path(mount=False)}; {need}")
    except PermissionDeniedError as e:
        return ("tracefs", False, f"{e.hint}")
    except NotSupportedError:
        return ("tracefs", False, f"not mounted ({need}: -v "
                f"{tracefs.TRACEFS}:{tracefs.TRACEFS}, read by root)")


def _cache() -> tuple[str, bool, str]:
    from ._cache import cache_dir
    d = cache_dir()
    if d is None:
        return ("cache", False, "off (RAWPROBE_CACHE_DIR is empty, or no home directory): "
                "every start redoes the BTF index and CO-RE")
    probe = d
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)     # it is made on first use
    if os.access(probe, os.W_OK):
        return ("cache", True, f"{d}")
    return ("cache", False, f"{d} is not writable (a read-only root file system?): every "
            "start redoes the BTF index and CO-RE; mount a volume there")


def report(bpf_works: bool = True) -> list[tuple[str, bool, str]]:
    """``(name, ok, detail)`` for each thing a container may take away.
    ``bpf_works``: whether bpf(2) worked for the kernel probes (a seccomp filter
    that lets it through is no problem)."""
    eff = effective()
    return [_capabilities(eff), _signalling(eff), _seccomp(bpf_works, eff), _pid_namespace(),
            _tracefs(), _cache()]
