"""rawprobe's syscall layer: the only package that touches cffi.

Submodules, each imported on demand:

* ``fd``      -- :class:`~rawprobe._sys.fd.FD`, an owned file descriptor;
* ``consts``  -- kernel constants as IntEnum/IntFlag (no cffi needed);
* ``errno``   -- the one errno -> exception translation;
* ``bpf``     -- one function per bpf(2) command;
* ``perf``    -- perf_event_open(2), its ioctls, dynamic PMU lookups;
* ``fs``      -- mount(2);
* ``fdevents``-- timerfd and signalfd;
* ``fence``   -- a full memory barrier for mmap'ed ring buffers.

``rawprobe._sys.ffi`` / ``.lib`` load the native side lazily (PEP 562), so
importing a cffi-free submodule such as ``consts`` does not load cffi.
"""
from __future__ import annotations

# No run-time ``typing`` anywhere in _sys: it costs ~5 ms of start-up (re, enum,
# collections, contextlib...); type checkers treat ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("ffi", "lib"):
        from . import _native
        return getattr(_native, name)
    raise AttributeError(f"module 'rawprobe._sys' has no attribute {name!r}")
