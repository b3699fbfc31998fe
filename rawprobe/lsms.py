"""The kernel's security modules: which are active, and does a BPF deny run.

A BPF LSM program (``SEC("lsm/HOOK")``, 5.7+) runs only where the kernel is
built with CONFIG_BPF_LSM=y *and* ``bpf`` is among the active LSMs (the
``lsm=`` boot parameter, else CONFIG_LSM).  Built in but not active, the kernel
loads and attaches such a program without a word -- and never runs it.  So
:func:`deny_runs` decides by trying: a five-instruction program on the
``task_getpgid`` hook that fails getpgid() with EXDEV for this process only,
attached for the length of one getpgid() of our own pid (any other caller
gets 0, "allowed", from it).

The same trial on ``fmod_ret/security_task_getpgid`` answers for the other
way to deny a call: an fmod_ret program on the LSM framework's own entry
point (BPF trampolines, 5.7+), which the kernel allows on ``security_*``
functions with or without CONFIG_FUNCTION_ERROR_INJECTION and whether or
not the BPF LSM is active.

Which LSMs are active (for the messages only) is read from securityfs
(``/sys/kernel/security/lsm``), else lsm_list_modules(2) (6.8+), else the
boot parameters and the kernel's configuration.
"""
from __future__ import annotations

import errno
import os

from ._records import RecordTuple
from .errors import NotFoundError, NotSupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional

__all__ = ["ActiveLSMs", "active", "deny_runs", "inactive_reason", "hook_target", "ROUTES",
           "ID_NAMES", "SECURITY_FUNCTION"]

SECURITYFS_LSM = "/sys/kernel/security/lsm"
# include/uapi/linux/lsm.h
ID_NAMES = {100: "capability", 101: "selinux", 102: "smack", 103: "tomoyo",
            104: "apparmor", 105: "yama", 106: "loadpin", 107: "safesetid",
            108: "lockdown", 109: "bpf", 110: "landlock", 111: "ipe", 112: "ima",
            113: "evm"}

# route -> (program type, attach type, the function in the kernel's BTF)
ROUTES = {"lsm": ("LSM", "LSM_MAC", "bpf_lsm_task_getpgid"),
          "fmod_ret": ("TRACING", "MODIFY_RETURN", "security_task_getpgid")}
_PROBE_ERRNO = errno.EXDEV        # nothing else makes getpgid(own pid) fail so

# The LSM framework's function for a hook, where it is not security_<hook>.
SECURITY_FUNCTION = {"bprm_check_security": "security_bprm_check"}


class ActiveLSMs(RecordTuple):
    """``names``: the active LSMs in call order (None: cannot tell); ``source``:
    where that was read."""
    __slots__ = ()
    _fields = ("names", "source")
    names: Optional[tuple[str, ...]]
    source: str


def active() -> ActiveLSMs:
    """The active LSMs: securityfs, else lsm_list_modules(2), else the boot
    parameter ``lsm=``, else CONFIG_LSM (inferred: a module listed there but
    not built in does not run)."""
    try:
        with open(SECURITYFS_LSM) as f:
            return ActiveLSMs(tuple(f.read().strip().split(",")), SECURITYFS_LSM)
    except OSError:
        pass
    from .errors import RawprobeError
    try:
        from ._sys.lsm import lsm_list_modules
        ids = lsm_list_modules()
        return ActiveLSMs(tuple(ID_NAMES.get(i, str(i)) for i in ids), "lsm_list_modules(2)")
    except (RawprobeError, OSError):
        pass
    try:
        with open("/proc/cmdline") as f:
            for word in f.read().split():
                if word.startswith("lsm="):
                    return ActiveLSMs(tuple(word[4:].split(",")),
                                      "lsm= on the kernel command line")
    except OSError:
        pass
    try:
        from .kconfig import read_system_config
        path, config = read_system_config()
        value = config.get("CONFIG_LSM")
        if value:
            return ActiveLSMs(tuple(value.strip('"').split(",")),
                              f"CONFIG_LSM in {path}, no lsm= on the command line")
    except (RawprobeError, OSError):
        pass
    return ActiveLSMs(None, "")


def _program(tgid: int) -> bytes:
    """``return current tgid == tgid ? -EXDEV : 0``."""
    from .insn import (BPF_ALU64, BPF_CALL, BPF_EXIT, BPF_JMP, BPF_JNE, BPF_K, BPF_MOV,
                       BPF_RSH, encode)
    from .uapi import BpfFunc
    return b"".join((
        encode(BPF_JMP | BPF_CALL, imm=BpfFunc.get_current_pid_tgid),
        encode(BPF_ALU64 | BPF_RSH | BPF_K, 0, imm=32),
        encode(BPF_JMP | BPF_JNE | BPF_K, 0, off=2, imm=tgid),
        encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=-_PROBE_ERRNO),
        encode(BPF_JMP | BPF_EXIT),
        encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=0),
        encode(BPF_JMP | BPF_EXIT),
    ))


_runs: dict[str, bool] = {}


def deny_runs(route: str = "lsm") -> bool:
    """Does a deny program of ``route`` ("lsm" or "fmod_ret") run on this
    kernel?  True: it made a call fail; False: it loaded and attached but never
    ran (the BPF LSM is built in, not active).  Raises what stops it from
    loading or attaching: NotSupportedError if the kernel lacks the hook
    (CONFIG_BPF_LSM unset), PermissionDeniedError/SyscallError from bpf(2).
    The answer is kept for the life of the process."""
    if route in _runs:
        return _runs[route]
    from ._sys import bpf
    from .btf import types
    from .btf.kernel import KernelBTF
    from .uapi import AttachType, ProgType
    ptype, atype, func = ROUTES[route]
    try:
        btf_id = KernelBTF.load().id_of(func, types.Func)
    except NotFoundError:
        if route == "lsm":
            raise NotSupportedError("the kernel is built without the BPF LSM: no "
                                    f"{func} in its BTF (CONFIG_BPF_LSM is not set)") from None
        raise NotSupportedError(f"no {func} in the kernel's BTF to attach to") from None
    pid = os.getpid()
    with bpf.prog_load(ProgType[ptype], _program(pid), b"GPL",
                       expected_attach_type=AttachType[atype], attach_btf_id=btf_id) as prog:
        with bpf.raw_tracepoint_open(None, prog):
            try:
                os.getpgid(pid)
                ran = False
            except OSError as e:
                if e.errno != _PROBE_ERRNO:
                    raise
                ran = True
    _runs[route] = ran
    return ran


def inactive_reason() -> str:
    """Why BPF LSM programs do not run although the kernel has the BPF LSM, and
    what to do about it."""
    lsms = active()
    if lsms.names is None:
        return ("the BPF LSM is built in (CONFIG_BPF_LSM=y) but not active: an attached "
                "LSM program never ran; add bpf to the lsm= boot parameter (the active "
                "LSMs, as /sys/kernel/security/lsm lists them, then ,bpf)")
    if "bpf" in lsms.names:
        return (f"the BPF LSM is listed as active ({','.join(lsms.names)}, from "
                f"{lsms.source}) but an attached LSM program never ran")
    want = ",".join((*lsms.names, "bpf"))
    return (f"the BPF LSM is built in (CONFIG_BPF_LSM=y) but not active: the active LSMs "
            f"are {','.join(lsms.names)} (from {lsms.source}); boot with lsm={want}")


def hook_target(route: str, hook: str) -> str:
    """What a deny program on LSM hook ``hook`` attaches to by ``route``: the hook
    itself for "lsm" (the kernel's ``bpf_lsm_<hook>``), the LSM framework's
    ``security_<hook>`` function for "fmod_ret".  NotFoundError if the kernel's
    BTF has no such function; NotSupportedError if the hook returns no error code
    (a void hook cannot make a call fail)."""
    from .btf import types as T
    from .btf.kernel import KernelBTF
    func = "bpf_lsm_" + hook if route == "lsm" else \
        SECURITY_FUNCTION.get(hook, "security_" + hook)
    kb = KernelBTF.load()
    try:
        fid = kb.id_of(func, T.Func)
    except NotFoundError:
        what = "LSM hook" if route == "lsm" else "LSM framework function"
        raise NotFoundError(f"this kernel has no {what} {func} in its BTF") from None
    proto = kb.type_by_id(kb.type_by_id(fid).type)
    if not isinstance(kb.type_by_id(kb.resolve(proto.type)), T.Int):
        raise NotSupportedError(f"the LSM hook {hook} returns no error code: it cannot "
                                "make a call fail")
    return hook if route == "lsm" else func
