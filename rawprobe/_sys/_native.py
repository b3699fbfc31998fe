"""``ffi`` and ``lib``: the only handles on native code in rawprobe.

``ffi`` comes from the generated out-of-line module (no C parsing at run
time); ``lib`` is the C library already loaded into the process
(``dlopen(NULL)``), whose functions are resolved on first use.
"""
from __future__ import annotations

from errno import EINTR

from ._ffi import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable

lib = ffi.dlopen(None)

__all__ = ["ffi", "lib", "call"]


def call(fn: Callable[..., int], *args: Any) -> int:
    """``fn(*args)`` for a C function that returns -1 and sets errno on
    failure: its result, or ``-errno``.  EINTR is retried (PEP 475)."""
    while True:
        r = fn(*args)
        if r >= 0:
            return r
        err = ffi.errno
        if err != EINTR:
            return -err
