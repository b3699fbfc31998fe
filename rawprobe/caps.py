"""This process's capabilities (capabilities(7)): what loading BPF programs needs.

Loading and attaching tracing programs needs CAP_SYS_ADMIN, or CAP_BPF together
with CAP_PERFMON (both Linux 5.8+).  Signalling needs nothing up front: the
kernel lets a process signal any process whose real or saved uid is its own real
or effective uid, and asks for CAP_KILL only for the others (``kill_ok_by_cred``
in kernel/signal.c), target by target.  The effective set is read from
``/proc/self/status`` (no libcap, no capget(2) through cffi).

A refusal (EPERM) despite the capabilities is someone else's: in a container,
usually the runtime's seccomp filter (podman's default profile allows bpf(2)
and perf_event_open(2) only with CAP_SYS_ADMIN), else lockdown or an LSM;
:func:`why_refused` says which this process can see.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional

__all__ = ["CAP_KILL", "CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_BPF", "SECCOMP_MODE_FILTER",
           "effective", "lacking_for_bpf", "lockdown", "missing_for_bpf", "seccomp_mode",
           "why_refused"]

# include/uapi/linux/capability.h
CAP_KILL, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 5, 21, 38, 39
_BPF_CAPS = {CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}
SECCOMP_MODE_FILTER = 2     # /proc/self/status "Seccomp:" 0 none, 1 strict, 2 filter
SECCOMP_HINT = ("a container runtime's default profile may allow bpf(2) and "
                "perf_event_open(2) only with CAP_SYS_ADMIN: run with a profile that "
                "allows them under CAP_BPF/CAP_PERFMON (rawprobe's README, Containers)")


def _status_field(name: bytes, base: int) -> Optional[int]:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1], base)
    except (OSError, ValueError, IndexError):
        pass
    return None


def effective() -> Optional[int]:
    """The effective capability set as a bit mask (bit n: capability n); None
    when /proc cannot say."""
    return _status_field(b"CapEff:", 16)


def seccomp_mode() -> Optional[int]:
    """This process's seccomp mode (3.8+; SECCOMP_MODE_FILTER: a filter may refuse
    system calls whatever the capabilities); None when /proc cannot say."""
    return _status_field(b"Seccomp:", 10)


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


def lacking_for_bpf(eff: Optional[int] = None) -> list[str]:
    """Of CAP_BPF and CAP_PERFMON (the 5.8+ way, the one to grant), those this
    process lacks although it needs them; [] as for :func:`missing_for_bpf`."""
    return [n for n in missing_for_bpf(eff) if n != "CAP_SYS_ADMIN"]



def lockdown() -> str:
    """The kernel's lockdown mode (none, integrity, confidentiality); "" when
    securityfs cannot say."""
    try:
        with open("/sys/kernel/security/lockdown") as f:
            text = f.read()
    except OSError:
        return ""
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return ""


def why_refused(eff: Optional[int] = None, advice: bool = True) -> str:
    """Why a bpf(2) or perf_event_open(2) call may have been refused (EPERM), in
    one clause: the capabilities this process lacks, or, when it has them, the
    seccomp filter it runs under (with what to do about it unless ``advice`` is
    false), or the kernel (lockdown, an LSM)."""
    lacking = lacking_for_bpf(eff)
    if lacking:
        return (f"this process lacks {' and '.join(lacking)} (CAP_BPF + CAP_PERFMON, "
                "Linux 5.8+, or CAP_SYS_ADMIN are needed)")
    if seccomp_mode() == SECCOMP_MODE_FILTER:
        return ("although this process has CAP_BPF + CAP_PERFMON, its seccomp filter "
                "refuses it" + (": " + SECCOMP_HINT if advice else ""))
    mode = lockdown()
    mode = f"lockdown is {mode!r}, " if mode else ""
    return ("although this process has CAP_BPF + CAP_PERFMON, the kernel refuses it "
            f"({mode}an LSM, or a kernel built without it)")
