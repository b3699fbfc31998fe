"""lsm_list_modules(2) (Linux 6.8+): the ids of the active Linux security modules."""
from __future__ import annotations

import errno as _E

from ._native import call, ffi, lib
from .consts import syscall_numbers
from ..errors import NotSupportedError
from .errno import syscall_error

__all__ = ["lsm_list_modules"]

_MAX_IDS = 64        # the kernel has about 15 LSMs; E2BIG below would say if not


def lsm_list_modules() -> list[int]:
    """The ``LSM_ID_*`` of each active LSM, in the order the kernel calls them.
    Kernels before 6.8 answer ENOSYS: a :class:`~rawprobe.errors.NotSupportedError`."""
    ids = ffi.new("uint64_t[]", _MAX_IDS)
    size = ffi.new("uint32_t *", _MAX_IDS * 8)
    n = call(lib.syscall, syscall_numbers()["lsm_list_modules"], ids, size,
             ffi.cast("uint32_t", 0))
    if n == -_E.ENOSYS:
        raise NotSupportedError("lsm_list_modules: ENOSYS, the syscall needs Linux 6.8+")
    if n < 0:
        raise syscall_error("lsm_list_modules", -n, privilege=False)
    return [int(ids[i]) for i in range(n)]
