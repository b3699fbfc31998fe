"""BPF iterators: ``SEC("iter/<target>")`` programs, run each time they are read.

An iterator program is loaded for a kernel iterator target (``task``,
``task_file``, ``bpf_map``, ``bpf_map_elem``, ``tcp``, ...: the BTF function
``bpf_iter_<target>``, fixed at load time).  :func:`attach_iter` makes its
link (``BPF_LINK_CREATE`` with BPF_TRACE_ITER; 5.8), and :func:`read_iter`
runs it: ``BPF_ITER_CREATE`` opens a new run as a file, and reading that file
to its end returns everything the program wrote with ``bpf_seq_printf`` /
``bpf_seq_write``, one call per object iterated.  (Iterators over one
map's elements or one cgroup's tasks take that object when attached: not
supported yet.)
"""
from __future__ import annotations

from ..uapi import AttachType, ProgType
from . import Link, _attach

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["attach_iter", "read_iter"]


def attach_iter(prog: Any) -> Link:
    """The iterator link of ``prog`` (``kind`` ``"iter"``)."""
    from .._sys import bpf
    _attach.check_type(prog, (ProgType.TRACING,), "an iterator", 'SEC("iter/<target>")')
    target = getattr(getattr(prog, "spec", None), "attach_to", "") or ""
    link = bpf.link_create(_attach.prog_fd(prog), 0, AttachType.TRACE_ITER)
    return Link("iter", target, "bpf_link", [link], program=_attach.prog_label(prog))


def read_iter(link: Link, chunk: int = 1 << 16) -> bytes:
    """Run the iterator of ``link`` once and return all it wrote."""
    import os

    from .._sys import bpf
    with bpf.iter_create(link.fileno()) as fd:
        parts = []
        while True:
            data = os.read(fd.fileno(), chunk)
            if not data:
                return b"".join(parts)
            parts.append(data)
