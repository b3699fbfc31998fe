"""Checks made before anything is loaded, so failures are one clear line.

Only what every run needs is checked here: loading and attaching the probe
(root, or CAP_BPF + CAP_PERFMON).  Signalling is not: a user may signal their
own processes without CAP_KILL (see :mod:`rawprobe.caps`), so whether a target
may be signalled is the kernel's answer for that target, and a target the
kernel refuses (EPERM) is reported "refused ... not permitted" by the tracker.
"""
from __future__ import annotations

from ..caps import missing_for_bpf
from ..errors import PermissionDeniedError


def check_privileges(action: str) -> None:
    """Raise PermissionDeniedError unless this process may load and attach the
    probe.  ``action`` needs nothing more: signalling is decided per target."""
    if missing_for_bpf():
        raise PermissionDeniedError(
            "watch", 1, "rawprobe watch needs root, or CAP_BPF and CAP_PERFMON "
            "(run it with sudo)")


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
