"""Executables and shared libraries, read with pyelftools: what uprobes and USDT need.

One place opens a user-space ELF file: :func:`open_elf` checks it is an
executable or a shared library (``ET_EXEC``/``ET_DYN``) and turns every
pyelftools failure on a corrupt file into one ObjectFormatError naming it;
:func:`vaddr_to_offset` maps a virtual address of the file's own address space
to the file offset the kernel places uprobes at (``st_value - p_vaddr +
p_offset`` through the ``PT_LOAD`` segment holding it).  Kernel-independent.
"""
from __future__ import annotations

from contextlib import contextmanager

from .errors import ObjectFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterator

__all__ = ["open_elf", "vaddr_to_offset", "load_segment"]


@contextmanager
def open_elf(path: str, what: str) -> Iterator[Any]:
    """An ``ELFFile`` of executable or shared library ``path``; ``what`` prefixes
    errors (``"uprobe"``, ``"usdt"``)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise ObjectFormatError(
                    f"{what}: {path} is {elf['e_type']}, not an executable or shared library")
            yield elf
    except ELFError as e:
        raise ObjectFormatError(f"{what}: {path} is not a readable ELF file: {e}") from None
    except (ValueError, KeyError, IndexError, AssertionError) as e:
        # pyelftools signals some corruptions with plain Python errors.
        raise ObjectFormatError(f"{what}: {path}: malformed ELF ({e!r})") from None


def load_segment(elf: Any, vaddr: int) -> Any:
    """The ``PT_LOAD`` segment whose file image holds ``vaddr``, or None."""
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_LOAD":
            continue
        start = seg["p_vaddr"]
        if start <= vaddr < start + seg["p_filesz"]:
            return seg
    return None


def vaddr_to_offset(elf: Any, vaddr: int) -> int | None:
    """File offset of ``vaddr``: through its ``PT_LOAD`` segment, else (no
    program headers covering it) through the section holding it; None if neither."""
    seg = load_segment(elf, vaddr)
    if seg is not None:
        return vaddr - seg["p_vaddr"] + seg["p_offset"]
    for sec in elf.iter_sections():
        start = sec["sh_addr"]
        if sec["sh_type"] != "SHT_NOBITS" and start <= vaddr < start + sec["sh_size"]:
            return vaddr - start + sec["sh_offset"]
    return None
