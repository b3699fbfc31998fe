"""Print the key of the sources a rawprobe image is built from.

``make image`` stores it in the image's label ``rawprobe.source-key``;
tests/test_container.py compares it with its checkout's, so the container tests
never run an image built from other sources.  The key is a SHA-256 over the
paths and bytes of what goes into the image: the package's modules and BPF
sources, the prebuilt objects, pyproject.toml and deploy/'s build files.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("pyproject.toml", "deploy/Containerfile", "deploy/install_wheel.py",
            "rawprobe/**/*.py", "rawprobe/bpf_src/*.[ch]", "prebuilt/*.o", "prebuilt/manifest.json")


def source_key(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    files = sorted({p for pat in PATTERNS for p in root.glob(pat) if p.is_file()})
    for p in files:
        rel = p.relative_to(root).as_posix().encode()
        data = p.read_bytes()
        h.update(b"%d:%s%d:" % (len(rel), rel, len(data)) + data)
    return h.hexdigest()[:32]


if __name__ == "__main__":
    print(source_key(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
