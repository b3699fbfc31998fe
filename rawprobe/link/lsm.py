"""BPF LSM programs: ``SEC("lsm/HOOK")``, ``SEC("lsm.s/HOOK")`` (5.7) and
``SEC("lsm_cgroup/HOOK")`` (6.0).

An LSM program (BPF_PROG_TYPE_LSM) was bound to its hook at load time: the
attach BTF id of ``bpf_lsm_<HOOK>``.  Its return value is the hook's: 0 lets
the operation on, ``-errno`` makes it fail with that errno.

* ``lsm``/``lsm.s`` (BPF_LSM_MAC): one program for every task.  Attached by
  ``BPF_LINK_CREATE`` with attach type BPF_LSM_MAC, or on kernels that do not
  take that (before 5.10) by ``BPF_RAW_TRACEPOINT_OPEN`` with no name; both
  give a BPF link.  They run only where the BPF LSM is *active*: built in
  (CONFIG_BPF_LSM=y) and ``bpf`` in the ``lsm=`` boot list.  Built in but not
  active, the kernel attaches them and never runs them, so :func:`attach_lsm`
  asks :func:`rawprobe.lsms.deny_runs` (once per process) and refuses that
  case with a NotSupportedError saying how to enable it.
* ``lsm_cgroup`` (BPF_LSM_CGROUP, 6.0): runs only for tasks in one cgroup
  (and below it); returns 1 to allow, 0 to deny (EPERM, or the errno the
  program set with ``bpf_set_retval``).  Attached by ``BPF_LINK_CREATE`` on
  the cgroup directory's fd.
"""
from __future__ import annotations

import errno
import os

from ..errors import NotSupportedError, SyscallError
from ..uapi import AttachType, ProgType
from . import Link, _attach

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Union

__all__ = ["attach_lsm", "attach_lsm_cgroup"]

_NEEDS = ("BPF LSM programs need Linux 5.7+ with CONFIG_BPF_LSM=y, bpf in the lsm= "
          "boot list and BPF trampolines")


def _check_active() -> None:
    """Refuse where an LSM program would attach and never run."""
    from .. import lsms
    from ..errors import RawprobeError
    try:
        runs = lsms.deny_runs("lsm")
    except (RawprobeError, OSError):
        return          # the real attach says what is wrong, in its own words
    if not runs:
        raise NotSupportedError(f"lsm: {lsms.inactive_reason()}")


def attach_lsm(prog: Any) -> Link:
    """Attach a ``lsm/HOOK`` or ``lsm.s/HOOK`` program to the hook it was loaded for."""
    from .._sys import bpf
    _attach.check_type(prog, (ProgType.LSM,), "an LSM hook", 'SEC("lsm/<hook>")')
    spec = getattr(prog, "spec", None)
    if getattr(spec, "expected_attach_type", AttachType.LSM_MAC) == AttachType.LSM_CGROUP:
        raise NotSupportedError(f"program {_attach.prog_label(prog)!r} is an lsm_cgroup "
                                "program: attach it with attach_lsm_cgroup(cgroup)")
    _check_active()
    target = getattr(spec, "attach_to", "") or ""
    try:
        fd = bpf.link_create(_attach.prog_fd(prog), 0, AttachType.LSM_MAC)
    except SyscallError as e:
        if e.errno != errno.EINVAL:
            raise
        # A kernel whose BPF_LINK_CREATE does not take LSM programs yet.
        return _attach.attach_btf_target(prog, "lsm", _NEEDS)
    return Link("lsm", target, "bpf_link", [fd], program=_attach.prog_label(prog))


def attach_lsm_cgroup(prog: Any, cgroup: Union[str, int]) -> Link:
    """Attach a ``lsm_cgroup/HOOK`` program (6.0+) to ``cgroup``: a cgroup v2
    directory's path, or an open fd of one (borrowed, not closed)."""
    from .._sys import bpf
    from .._sys.fd import FD
    _attach.check_type(prog, (ProgType.LSM,), "a cgroup LSM hook",
                       'SEC("lsm_cgroup/<hook>")')
    label = _attach.prog_label(prog)
    owned = None
    if isinstance(cgroup, int):
        cg_fd, shown = cgroup, f"fd {cgroup}"
    else:
        try:
            owned = FD(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except OSError as e:
            from ..errors import NotFoundError
            raise NotFoundError(f"lsm_cgroup: cannot open the cgroup {cgroup!r}: "
                                f"{e.strerror}") from None
        cg_fd, shown = owned.fileno(), str(cgroup)
    try:
        fd = bpf.link_create(_attach.prog_fd(prog), cg_fd, AttachType.LSM_CGROUP)
    except SyscallError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            raise NotSupportedError(
                f"lsm_cgroup: cannot attach {label!r} to {shown} ({e}): cgroup LSM "
                "programs need Linux 6.0+ and a cgroup v2 directory") from None
        raise
    finally:
        if owned is not None:
            owned.close()
    target = getattr(getattr(prog, "spec", None), "attach_to", "") or ""
    return Link("lsm_cgroup", f"{target}@{shown}", "bpf_link", [fd], program=label)
