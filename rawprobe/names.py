"""The one rule for names rawprobe makes up for the kernel and the file system.

The kernel takes ``[A-Za-z0-9_.]`` in BPF object names (maps, programs; 15
characters) and ``[A-Za-z0-9_]`` in tracefs event names; cache file names
also keep ``-``.  Every other character becomes ``_``.  Imports nothing, so
every layer may use it.
"""
from __future__ import annotations

__all__ = ["sanitize", "is_symbol"]


def sanitize(name: str, keep: str = "_.") -> str:
    """``name`` with every character but ASCII letters, digits and those in
    ``keep`` replaced by ``_``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in keep) else "_" for c in name)


def is_symbol(name: str) -> bool:
    """Whether ``name`` is a kernel symbol name, ``[A-Za-z0-9_.]+`` (without
    ``re``: its import costs milliseconds)."""
    return bool(name) and sanitize(name) == name
