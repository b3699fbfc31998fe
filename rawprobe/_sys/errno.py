"""The one place a failed system call's errno becomes a rawprobe exception."""
from __future__ import annotations

import errno as _errno

from ..errors import (ENOTSUPP, NotSupportedError, PermissionDeniedError, RawprobeError,
                      SyscallError)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import NoReturn

__all__ = ["ENOTSUPP", "syscall_error", "raise_errno"]

_MEMLOCK_HINT = "on kernels before 5.11 also raise RLIMIT_MEMLOCK"
_GRANT_HINT = ("run as root, or grant CAP_BPF + CAP_PERFMON (a container: "
               "--cap-add=BPF,PERFMON)")
_VERIFIER_HINT = "the verifier rejected the program"
_VERIFIER_LOG_HINT = "load it with a log_buf to see why"


def syscall_error(call: str, err: int, hint: str = "", *, verifier: bool = False,
                  privilege: bool = True, not_supported: str = "",
                  permission_hint: str = "") -> RawprobeError:
    """The exception for ``call`` failing with ``err``.

    * EPERM, and EACCES outside the verifier: :class:`PermissionDeniedError`
      with a hint about privileges (and ``hint``, if given).
    * ``verifier=True`` (BPF_PROG_LOAD): EACCES/EINVAL are the verifier's
      answers, not missing privileges: a :class:`SyscallError` with a hint.
    * ``permission_hint``: replaces the BPF-privileges hint for calls that
      need some other capability (mount(2): CAP_SYS_ADMIN).
    * ``privilege=False``: the call never checks privileges (e.g. writing
      to a frozen map gives EPERM), so EPERM/EACCES are a plain SyscallError.
    * ``not_supported``: the caller's sentence for EOPNOTSUPP/ENOTSUPP,
      which then become :class:`NotSupportedError`.
    * anything else: :class:`SyscallError`.
    """
    if not_supported and err in (_errno.EOPNOTSUPP, ENOTSUPP):
        return NotSupportedError(f"{call}: {not_supported}")
    if privilege and (err == _errno.EPERM or (err == _errno.EACCES and not verifier)):
        return PermissionDeniedError(call, err, _join(permission_hint or _permission_hint(),
                                                      hint))
    if verifier and err in (_errno.EACCES, _errno.EINVAL):
        hint = _join(_VERIFIER_HINT, hint or _VERIFIER_LOG_HINT)
    return SyscallError(call, err, hint)


def _permission_hint() -> str:
    # caps imports nothing: safe from this layer, and only read on a failure
    from ..caps import lacking_for_bpf, why_refused
    if lacking_for_bpf():
        return f"{why_refused()}: {_GRANT_HINT}; {_MEMLOCK_HINT}"
    return (f"{why_refused()}; or a program or attach type this kernel refuses; "
            f"{_MEMLOCK_HINT}")


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if second else first


def raise_errno(call: str, err: int, hint: str = "", *, verifier: bool = False,
                privilege: bool = True, not_supported: str = "",
                permission_hint: str = "") -> NoReturn:
    """Raise :func:`syscall_error` for ``call`` failing with ``err``."""
    raise syscall_error(call, err, hint, verifier=verifier, privilege=privilege,
                        not_supported=not_supported, permission_hint=permission_hint)
