"""rawprobe: load clang-compiled CO-RE eBPF objects with pure Python.

Public API (imports are deferred so ``import rawprobe`` stays cheap)::

    spec = rawprobe.ObjectSpec.from_file("x.bpf.o")   # parse only, no kernel access
    spec.variables["target_comm"].set(b"java")        # before load
    with spec.load() as coll:                          # -> rawprobe.Collection
        coll.programs["name"].attach()
        coll.maps["name"].lookup(key)

Every error rawprobe raises on purpose is a ``rawprobe.RawprobeError``.
"""
from __future__ import annotations

from .errors import (BTFError, ClosedError, CORERelocationError, FormatError,
                     InvalidValueError, NotFoundError, NotSupportedError, ObjectFormatError,
                     PermissionDeniedError, PinError, RawprobeError, SyscallError,
                     VerifierError)

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "ObjectSpec": "spec",
    "ProgramSpec": "spec",
    "MapSpec": "spec",
    "VariableSpec": "spec",
    "Collection": "collection",
    "load": "collection",
    "Program": "programs",
    "Map": "maps",
    "Variable": "collection",
    "Link": "link",
    "RingBuffer": "ringbuf",
    "PerfBuffer": "perfbuf",
    "features": "features",
    "lsms": "lsms",
}

__all__ = [
    "RawprobeError", "ObjectFormatError", "FormatError", "BTFError", "NotSupportedError",
    "NotFoundError", "SyscallError", "PermissionDeniedError", "VerifierError",
    "CORERelocationError", "InvalidValueError", "ClosedError", "PinError", *_LAZY,
]

# ``typing`` is not imported at run time (it pulls in re, enum, collections...:
# several ms); type checkers treat any ``TYPE_CHECKING`` name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .collection import Collection, Variable, load
    from .link import Link
    from .maps import Map
    from .perfbuf import PerfBuffer
    from .programs import Program
    from .ringbuf import RingBuffer
    from .spec import MapSpec, ObjectSpec, ProgramSpec, VariableSpec


def __getattr__(name: str) -> Any:
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module 'rawprobe' has no attribute {name!r}")
    import sys              # (the name _sys is taken by the subpackage rawprobe._sys)
    qualname = f"{__name__}.{modname}"
    __import__(qualname)    # not importlib.import_module: importlib costs an import
    mod = sys.modules[qualname]
    value = mod if name == modname else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted((set(globals()) - {"TYPE_CHECKING"}) | set(_LAZY))
