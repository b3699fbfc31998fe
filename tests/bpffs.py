"""A bpffs of a test's own: pins never reach /sys/fs/bpf, and go when it is unmounted."""
from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def private_bpffs(parent: str | Path | None = None) -> Iterator[Path]:
    """Mount a fresh bpffs in a new directory (under ``parent``, else a temporary
    one); unmount it, with its pins, afterwards."""
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        d = Path(tmp) / "bpffs"
        d.mkdir()
        subprocess.run(["mount", "-t", "bpf", "bpf", str(d)], check=True)
        try:
            yield d
        finally:
            subprocess.run(["umount", "-l", str(d)], check=True)
