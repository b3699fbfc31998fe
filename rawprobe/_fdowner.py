"""FDOwner: the part a loaded Map and a loaded Program share.

Each owns one kernel object through one :class:`rawprobe._sys.fd.FD` and
offers the same handle on it: ``.fd`` (the number), ``fileno()``, ``closed``,
an idempotent ``close()`` and ``with``.  Closing the fd releases the object
unless something else still holds it (a program using a map, a link using a
program, a pin).  What each object is and does stays in its own class.
"""
from __future__ import annotations

from .errors import ClosedError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

    from ._sys.fd import FD

__all__ = ["FDOwner"]


class FDOwner:
    """Base of the loaded objects that own one file descriptor."""

    name: str

    def __init__(self, fd: FD) -> None:
        self._fd = fd

    def _live(self) -> FD:
        """The FD, or ClosedError naming this object once it is closed."""
        if self._fd.closed:
            raise ClosedError(f"{type(self).__name__.lower()} {self.name!r} is closed "
                              f"(closed by close() or by its Collection's)")
        return self._fd

    @property
    def fd(self) -> int:
        """The object's file descriptor number (owned by this object; ClosedError,
        a RawprobeError and ValueError, once closed)."""
        return self._live().fileno()

    def fileno(self) -> int:
        return self._live().fileno()

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        """Close the fd (idempotent)."""
        self._fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fd_state(self) -> str:
        """``"fd=N"``, or ``"closed"``: for the subclasses' reprs."""
        return "closed" if self._fd.closed else f"fd={self._fd.fileno()}"
