"""fentry, fexit and fmod_ret: BPF trampolines on a kernel function.

Minimum kernel 5.5 on x86-64 (6.0 on arm64); needs
CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and kernel BTF.  The target function
was chosen at load time (``attach_btf_id``, the BTF id of the function), so
attaching needs only the program: ``BPF_RAW_TRACEPOINT_OPEN`` with no name,
which works on every kernel that has fentry and returns a BPF link fd.
(``BPF_LINK_CREATE`` with attach type BPF_TRACE_FENTRY does the same on newer
kernels and is only needed for a bpf_cookie.)  fentry runs at the function's
entry with its arguments; fexit at its return with arguments and return value.
"""
from __future__ import annotations

from ..uapi import AttachType, ProgType
from . import Link, _attach

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["attach_fentry"]

# expected_attach_type -> Link.kind
_KINDS = {AttachType.TRACE_FENTRY: "fentry", AttachType.TRACE_FEXIT: "fexit",
          AttachType.MODIFY_RETURN: "fmod_ret"}


def attach_fentry(prog: Any) -> Link:
    """Attach an fentry/fexit/fmod_ret program to the function it was loaded for."""
    _attach.check_type(prog, (ProgType.TRACING,), "fentry/fexit", 'SEC("fentry/<function>")')
    spec = getattr(prog, "spec", None)
    kind = _KINDS.get(getattr(spec, "expected_attach_type", None), "fentry")
    return _attach.attach_btf_target(
        prog, kind, "BPF trampolines need Linux 5.5+ (x86-64) / 6.0+ (arm64) with "
        "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
