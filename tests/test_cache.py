"""The cache directory's temporary files (rawprobe/_cache.py): gone when their
writer raises, swept on the next start when it was killed, never taken from a
writer still at work.

The killed and paused writers are real Python processes doing a real cold start
(the kernel BTF index, ~1 MiB) in a private RAWPROBE_CACHE_DIR; the only change
in them is an ``os.write`` that stops after the first part of the file and
waits for a line on stdin.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rawprobe import _cache

ROOT = Path(__file__).resolve().parent.parent
needs_vmlinux = pytest.mark.skipif(not os.path.exists(_cache.VMLINUX),
                                   reason=f"no {_cache.VMLINUX}")

# A writer that stops half-way through its first cache file and waits for the
# test: "writing" on stdout, then a line on stdin lets it finish.
PAUSED = r"""
import os, sys
real_write = os.write
def write(fd, data):
    os.write = real_write
    n = real_write(fd, bytes(data[:4096]))
    sys.stdout.write("writing\n"); sys.stdout.flush()
    sys.stdin.readline()
    return n
os.write = write
"""
COLD_START = PAUSED + r"""
from rawprobe.btf.kernel import KernelBTF
kb = KernelBTF.load()
kb.index()
print("done", kb._from_cache, flush=True)
"""
WRITE_ONE = PAUSED + r"""
from rawprobe import _cache
print("done", _cache.write_atomic(os.path.join(_cache.cache_dir(), "core-x.bin"),
                                  b"x" * (1 << 20)), flush=True)
"""
# The next start: load the kernel BTF and its full index; says whether the
# index came from the cache (and writes it if not).
NEXT_START = r"""
from rawprobe.btf.kernel import KernelBTF
kb = KernelBTF.load()
print(kb._from_cache, flush=True)
kb.index()
"""


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(d))
    return d


def python(code: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(ROOT),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)


def paused_writer(code: str) -> subprocess.Popen:
    p = python(code)
    line = p.stdout.readline()
    assert line == "writing\n", f"the writer did not start writing: {line!r}"
    return p


def next_start() -> bool:
    p = python(NEXT_START)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    return out.strip() == "True"


def temporaries(d: Path) -> list[str]:
    return sorted(n.name for n in d.iterdir() if n.name.endswith(".tmp"))


@needs_vmlinux
def test_a_cold_start_killed_while_writing_leaves_a_file_the_next_start_sweeps(cache) -> None:
    p = paused_writer(COLD_START)
    (tmp,) = temporaries(cache)
    assert tmp.startswith("btf-index-") and (cache / tmp).stat().st_size == 4096
    p.kill()
    p.wait()
    assert temporaries(cache) == [tmp]            # SIGKILL: nothing could clean up
    assert not next_start()                       # cold again: no index was written
    assert temporaries(cache) == []
    assert [n.name for n in cache.iterdir()][0].startswith("btf-index-")


@needs_vmlinux
def test_a_warm_start_sweeps_too(cache) -> None:
    next_start()                                  # fill the cache
    p = paused_writer(WRITE_ONE)
    (tmp,) = temporaries(cache)
    p.kill()
    p.wait()
    assert temporaries(cache) == [tmp]
    assert next_start()                           # warm: the index came from the cache
    assert temporaries(cache) == []
    assert not (cache / "core-x.bin").exists()


@needs_vmlinux
def test_a_live_writers_file_is_left_alone(cache) -> None:
    p = paused_writer(COLD_START)
    try:
        (tmp,) = temporaries(cache)
        assert not next_start()                   # the other start sweeps ...
        assert tmp in temporaries(cache)          # ... around the live writer's file
        out, _ = p.communicate("\n", timeout=60)  # let the writer finish
        assert out == "done False\n", out
    finally:
        p.kill()
        p.wait()
    assert temporaries(cache) == []
    assert next_start()                           # its index is whole and used


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _backdate(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_the_sweep_rules(tmp_path) -> None:
    """Which names the sweep removes (crafted files, see _cache's opening)."""
    ns = os.stat("/proc/self/ns/pid").st_ino
    dead, live = _dead_pid(), os.getpid()
    old = _cache.STALE_TMP_S + 60
    files = {
        # (name, age in seconds, removed?)
        "dead": (f"a.bin.{ns}-{dead}.tmp", 0, True),
        "live": (f"b.bin.{ns}-{live}.tmp", 0, False),
        "live but old": (f"c.bin.{ns}-{live}.tmp", old, True),
        "other namespace": (f"d.bin.{ns + 1}-{dead}.tmp", 0, False),
        "other namespace, old": (f"e.bin.{ns + 1}-{dead}.tmp", old, True),
        "old style name": (f"f.bin.{dead}.tmp", 0, False),
        "old style name, old": (f"g.bin.{dead}.tmp", old, True),
        "tid out of range": (f"h.bin.{ns}-99999999999.tmp", 0, False),
        "not a writer's name": ("notes.tmp", old, False),
        "not temporary": (f"i.bin.{ns}-{dead}", old, False),
    }
    for name, age, _ in files.values():
        (tmp_path / name).write_bytes(b"x")
        _backdate(tmp_path / name, age)
    if os.geteuid() == 0:       # another user's file is theirs to remove
        other = tmp_path / f"j.bin.{ns}-{dead}.tmp"
        other.write_bytes(b"x")
        _backdate(other, old)
        os.chown(other, 65534, 65534)
        files["another user's"] = (other.name, old, False)
    link = tmp_path / f"k.bin.{ns}-{dead}.tmp"
    link.symlink_to(tmp_path / files["live"][0])
    files["a symlink"] = (link.name, 0, False)
    _cache.sweep_temporaries(str(tmp_path))
    left = {n.name for n in tmp_path.iterdir()}
    for what, (name, _, removed) in files.items():
        assert (name not in left) == removed, what


def test_the_first_use_of_a_cache_dir_sweeps_it(tmp_path, monkeypatch) -> None:
    d = tmp_path / "fresh"
    d.mkdir()
    ns = os.stat("/proc/self/ns/pid").st_ino
    (d / f"a.bin.{ns}-{_dead_pid()}.tmp").write_bytes(b"x")
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(d))
    assert _cache.cache_dir() == str(d)
    assert list(d.iterdir()) == []


class _Os:
    """The os module with one call replaced, for _cache only."""

    def __init__(self, **replaced) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str):
        return getattr(os, name)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), MemoryError(),
                                 OSError(errno.ENOSPC, "No space left on device")])
def test_an_exception_while_writing_leaves_nothing(tmp_path, monkeypatch, exc) -> None:
    calls = []

    def write(fd, data):
        if calls:
            raise exc
        calls.append(1)
        return os.write(fd, bytes(data[:4096]))   # part of it is on disk

    monkeypatch.setattr(_cache, "os", _Os(write=write))
    target = tmp_path / "core-x.bin"
    if isinstance(exc, OSError):
        assert _cache.write_atomic(str(target), b"x" * 10000) is False
    else:
        with pytest.raises(type(exc)):
            _cache.write_atomic(str(target), b"x" * 10000)
    assert calls and list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_nothing(tmp_path) -> None:
    target = tmp_path / "core-x.bin"
    target.mkdir()                                # os.replace: EISDIR
    assert _cache.write_atomic(str(target), b"data") is False
    assert [n.name for n in tmp_path.iterdir()] == ["core-x.bin"]


def test_a_planted_temporary_name_is_not_written_through(tmp_path) -> None:
    """Someone who can write the directory puts a symlink under the name the
    next write will use: the write replaces the name, the victim is untouched."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "core-x.bin"
    Path(_cache.temp_path(str(target))).symlink_to(victim)
    assert _cache.write_atomic(str(target), b"data")
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b"data" and not target.is_symlink()
    assert sorted(n.name for n in tmp_path.iterdir()) == ["core-x.bin", "victim"]
