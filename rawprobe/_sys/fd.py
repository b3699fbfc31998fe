"""FD: one owned file descriptor, closed exactly once."""
from __future__ import annotations

import os

from ..errors import ClosedError

__all__ = ["FD"]

_close = os.close  # bound now: __del__ may run at interpreter shutdown


class FD:
    """Owns a raw file descriptor.

    * ``FD(raw)`` takes ownership.  A descriptor below 3 is moved to ``>= 3``
      with ``F_DUPFD_CLOEXEC`` (and the low one closed): a process started
      with stdin/stdout/stderr closed must not end up with a BPF map on
      fd 1, where a later ``print`` would write into it.
    * ``close()`` is idempotent; ``closed`` says whether it ran; the
      descriptor is also closed when the object is collected.
    * ``fileno()`` raises ClosedError (a ValueError) once closed, like a
      closed file.

    Every fd rawprobe creates is O_CLOEXEC: the kernel makes bpf, pidfd and
    (with PERF_FLAG_FD_CLOEXEC) perf fds close-on-exec, and the move above
    keeps that.
    """

    __slots__ = ("_fd", "__weakref__")

    def __init__(self, raw: int) -> None:
        self._fd = -1
        if raw < 0:
            raise ValueError(f"invalid file descriptor {raw}")
        if raw < 3:
            import fcntl
            try:
                moved = fcntl.fcntl(raw, fcntl.F_DUPFD_CLOEXEC, 3)
            finally:
                _close(raw)
            raw = moved
        self._fd = raw

    def fileno(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedError("I/O operation on a closed FD")
        return fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close(fd)

    def detach(self) -> int:
        """Give up ownership: return the raw fd without closing it."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def dup(self) -> "FD":
        """A new FD (close-on-exec, >= 3) for the same open file."""
        import fcntl
        return FD(fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 3))

    def __enter__(self) -> "FD":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return "FD(closed)" if self._fd < 0 else f"FD({self._fd})"
