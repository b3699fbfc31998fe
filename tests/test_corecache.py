"""The CO-RE cache (rawprobe/corecache.py) on a real object against the running kernel.

core_read.bpf.o's raw_tracepoint program has CO-RE relocations against task_struct
and friends: the first load computes them and stores the result, the second takes
it from the file without computing anything, and the kernel ends up with the same
program either way (``bpftool prog dump xlated``, map ids aside).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import rawprobe
import rawprobe.btf.core as core
from rawprobe import corecache
from rawprobe.btf.kernel import KernelBTF
from test_btf_parse import BPF_DIR

READ = BPF_DIR / "core_read.bpf.o"
PROG = "core_probe_read"

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", str(d))
    return d


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """One entry per CoreRelocator built, i.e. per load that computed CO-RE."""
    calls: list[int] = []
    real = core.CoreRelocator

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw):
            calls.append(1)
            super().__init__(*a, **kw)

    monkeypatch.setattr(core, "CoreRelocator", Counting)
    return calls


def load(**kw) -> tuple[rawprobe.ObjectSpec, rawprobe.Collection]:
    spec = rawprobe.ObjectSpec.from_file(str(READ))
    return spec, rawprobe.Collection.from_spec(spec, programs=[PROG], **kw)


def xlated(coll: rawprobe.Collection) -> str:
    if not shutil.which("bpftool"):
        pytest.skip("bpftool is not installed (apt-get install bpftool)")
    pid = coll.programs[PROG].info()["id"]
    out = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(pid)],
                         capture_output=True, text=True, check=True).stdout
    return re.sub(r"map\[id:\d+\]", "map", out)


def test_a_second_load_takes_the_relocations_from_the_cache(cache, computed) -> None:
    spec, first = load()
    with first:
        assert computed == [1]
        (path,) = cache.glob("core-*")
        assert path.name.startswith("core-") and path.stat().st_mode & 0o022 == 0
        want = xlated(first)
    spec, second = load()
    with second:
        assert computed == [1], "the second load computed CO-RE again"
        assert xlated(second) == want
    hit = corecache.CoreCache.open(spec.name, spec.btf.raw).get(spec.programs[PROG])
    assert hit is not None and hit != spec.programs[PROG].insns   # relocated, not raw


def test_another_kernel_program_or_rawprobe_misses(cache, computed, monkeypatch) -> None:
    spec, coll = load()
    coll.close()
    p = spec.programs[PROG]
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is not None
    changed = bytearray(p.insns)
    changed[-8:] = bytes(8)
    p.insns = bytes(changed)
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is None
    other = bytearray(spec.btf.raw)
    other[-1] ^= 0xFF
    p.insns = rawprobe.ObjectSpec.from_file(str(READ)).programs[PROG].insns
    assert corecache.CoreCache.open(spec.name, bytes(other)).get(p) is None
    real_impl = corecache._impl_key()
    monkeypatch.setattr(corecache, "_impl_key", lambda: real_impl + "edited")
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is None
    monkeypatch.setattr(corecache, "_impl_key", lambda: real_impl)
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is not None
    real_key = corecache.kernel_key()
    monkeypatch.setattr(corecache, "kernel_key", lambda path=None: real_key + b"another")
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is None
    load()[1].close()
    assert computed == [1, 1]          # recomputed for "another kernel"


def test_a_corrupt_or_foreign_file_is_ignored(cache, computed) -> None:
    load()[1].close()
    (path,) = cache.glob("core-*")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    load()[1].close()
    assert computed == [1, 1] and path.read_bytes() == good     # rebuilt the same
    os.chmod(path, 0o666)                  # anyone may write it: not trusted
    load()[1].close()
    assert computed == [1, 1, 1]


def test_unused_with_a_given_kernel_btf_or_without_a_cache_dir(cache, computed,
                                                               monkeypatch) -> None:
    load(kernel_btf=KernelBTF.load())[1].close()
    assert not list(cache.glob("core-*")) and computed == [1]
    monkeypatch.setenv("RAWPROBE_CACHE_DIR", "")
    load()[1].close()
    load()[1].close()
    assert not list(cache.glob("core-*")) and computed == [1, 1, 1]


def test_an_answer_that_looked_in_the_modules_keys_on_them(cache, monkeypatch) -> None:
    # core_read.bpf.o asks for types no kernel has (rawprobe_no_such_struct): their
    # answer would change if a module with that type were loaded.
    spec, coll = load()
    coll.close()
    p = spec.programs[PROG]
    stored = corecache.CoreCache.open(spec.name, spec.btf.raw)
    assert stored._progs[PROG][3] == corecache.modules_key()
    assert stored.get(p) is not None
    monkeypatch.setattr(corecache, "modules_key",
                        lambda vmlinux=None: (("rawprobe_test_module", 4096, 1),))
    assert corecache.CoreCache.open(spec.name, spec.btf.raw).get(p) is None
