"""Checks made before anything is loaded, so failures are one clear line.

Only what every run needs is checked here: loading and attaching the probe
(root, or CAP_BPF + CAP_PERFMON).  Signalling is not: a user may signal their
own processes without CAP_KILL (see :mod:`rawprobe.caps`), so whether a target
may be signalled is the kernel's answer for that target, and a target the
kernel refuses (EPERM) is reported "refused ... not permitted" by the tracker.
"""
from __future__ import annotations

from ..caps import CAP_KILL, effective, lacking_for_bpf
from ..errors import PermissionDeniedError


def check_privileges() -> None:
    """Raise PermissionDeniedError unless this process may load and attach the
    probe.  Signalling needs nothing up front: it is decided per target."""
    lacking = lacking_for_bpf()
    if lacking:
        raise PermissionDeniedError(
            "watch", 1, f"rawprobe watch needs CAP_BPF and CAP_PERFMON (or root), and "
            f"this process lacks {' and '.join(lacking)}: run it with sudo, or in a "
            "container with --cap-add=BPF,PERFMON")


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
    """CAP_KILL: the kernel lets this process signal any user's processes (when
    /proc cannot say, assume not: kernel-signal then keeps to our own user's)."""
    return bool((effective() or 0) >> CAP_KILL & 1)


def pid_namespace() -> int:
    """The probe's ``pidns_ino``: 0 in the initial pid namespace (host mode), else
    this namespace's inode number (pod mode: the kernel side leaves out what
    cannot be seen from here and reports pids as they are here).  Refuses in one
    line where that cannot work: /proc unreadable, a /proc that is not this
    namespace's (its pids would name other processes), or a kernel whose BTF
    lacks what the kernel side reads."""
    from ..container import PROC_PID_INIT_INO, pid_namespace_inode, proc_is_own_pid_namespace
    from ..errors import NotSupportedError
    ino = pid_namespace_inode()
    if ino is None:
        raise NotSupportedError("cannot tell which pid namespace this is "
                                "(/proc/self/ns/pid unreadable); mount /proc")
    if ino == PROC_PID_INIT_INO:
        return 0
    if not proc_is_own_pid_namespace():
        raise NotSupportedError(
            "/proc belongs to another pid namespace than this process's, so its pids "
            "name other processes: mount this namespace's /proc (unshare --pid --fork "
            "--mount-proc), or run in the host's pid namespace")
    from .. import features
    f = features.pid_namespaces()
    if not f:
        raise NotSupportedError(
            f"rawprobe watch cannot see pids as this child pid namespace does on this "
            f"kernel ({f.detail}); run it in the host's pid namespace (podman/docker "
            "--pid=host, Kubernetes hostPID: true)")
    return ino
