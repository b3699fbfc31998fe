"""The one rule for names rawprobe makes up for the kernel and the file system.

The kernel takes ``[A-Za-z0-9_.]`` in BPF object names (maps, programs; 15
characters) and ``[A-Za-z0-9_]`` in tracefs event names; cache file names
also keep ``-``.  Every other character becomes ``_``.  Imports nothing, so
every layer may use it.

Also the one glob rule for the functions a name pattern picks (``kprobe.multi``,
``uprobe.multi``): libbpf's, ``*`` and ``?`` only, over the whole name.
"""
from __future__ import annotations

__all__ = ["sanitize", "is_symbol", "glob_match", "is_glob"]


def sanitize(name: str, keep: str = "_.") -> str:
    """``name`` with every character but ASCII letters, digits and those in
    ``keep`` replaced by ``_``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in keep) else "_" for c in name)


def is_symbol(name: str) -> bool:
    """Whether ``name`` is a kernel symbol name, ``[A-Za-z0-9_.]+`` (without
    ``re``: its import costs milliseconds)."""
    return bool(name) and sanitize(name) == name


def glob_match(name: str, pattern: str) -> bool:
    """Whether ``pattern`` matches all of ``name``: ``*`` any run of characters,
    ``?`` any one, everything else itself (libbpf's rule: no ``[...]`` classes,
    no escapes)."""
    n = p = 0
    star, resume = -1, 0      # the last ``*`` seen, and where its match ends
    while n < len(name):
        if p < len(pattern) and pattern[p] in ("?", name[n]):
            n, p = n + 1, p + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume, p = p, n, p + 1
        elif star >= 0:       # let the last ``*`` take one more character
            resume += 1
            n, p = resume, star + 1
        else:
            return False
    return pattern[p:].strip("*") == ""


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has a wildcard (``*`` or ``?``)."""
    return "*" in pattern or "?" in pattern
