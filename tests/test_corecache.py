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
    monkeypatch.setattr(corecache, "_impl_key", lambda: real_impl + b"edited")
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


# -- the code that computed a cached result is part of its key ----------------------

ROOT = BPF_DIR.parent.parent

# Run in a fresh interpreter (nothing memoised, an empty cache directory): which of
# rawprobe's files does code run from while the CO-RE results are computed, and
# while the kernel BTF index is built?
_TRACE = r"""
import json, os, sys
import rawprobe
from rawprobe import collection
from rawprobe.btf import kernel
root = os.path.dirname(os.path.abspath(rawprobe.__file__))
seen = {"core": set(), "index": set()}

def traced(fn, into):
    def run(*a, **kw):
        sys.setprofile(lambda frame, event, arg: into.add(frame.f_code.co_filename))
        try:
            return fn(*a, **kw)
        finally:
            sys.setprofile(None)
    return run

kb = traced(lambda: kernel.KernelBTF(kernel._map_file(kernel.VMLINUX), path=kernel.VMLINUX),
            seen["index"])()
kb.type_by_name("task_struct")
collection._Loader._apply_core = traced(collection._Loader._apply_core, seen["core"])
spec = rawprobe.ObjectSpec.from_file(sys.argv[1])
rawprobe.Collection.from_spec(spec, programs=[sys.argv[2]]).close()
print(json.dumps({k: sorted(os.path.relpath(f, root) for f in v if f.startswith(root + "/"))
                  for k, v in seen.items()}))
"""


def test_the_key_names_every_module_whose_code_computes_the_result(tmp_path) -> None:
    import json
    import sys
    from rawprobe.btf import kernel
    env = dict(os.environ, RAWPROBE_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _TRACE, str(READ), PROG], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    ran = json.loads(out)
    assert "btf/core.py" in ran["core"] and "btf/kernel.py" in ran["index"]   # it traced
    assert set(ran["core"]) <= set(corecache.CODE), set(ran["core"]) - set(corecache.CODE)
    assert set(ran["index"]) <= set(kernel.INDEX_CODE), \
        set(ran["index"]) - set(kernel.INDEX_CODE)


def test_an_edit_of_any_keyed_module_changes_the_key(tmp_path, monkeypatch) -> None:
    import rawprobe as pkg
    from rawprobe._cache import PACKAGE, code_key
    from rawprobe.btf import kernel
    for modules in (corecache.CODE, kernel.INDEX_CODE):
        for m in modules:                                # a copy, mtimes kept
            (tmp_path / m).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(PACKAGE, m), tmp_path / m)
        assert code_key(modules, root=str(tmp_path)) == code_key(modules)
        for m in modules:
            before = code_key(modules, root=str(tmp_path))
            st = (tmp_path / m).stat()
            os.utime(tmp_path / m, ns=(st.st_atime_ns, st.st_mtime_ns + 1))     # touched
            touched = code_key(modules, root=str(tmp_path))
            assert touched != before, m
            with open(tmp_path / m, "a") as f:                                  # or edited
                f.write("\n")
            os.utime(tmp_path / m, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
            assert code_key(modules, root=str(tmp_path)) not in (before, touched), m
        before = code_key(modules)
        monkeypatch.setattr(pkg, "__version__", pkg.__version__ + ".post1")  # upgraded
        assert code_key(modules) != before
        monkeypatch.undo()


_LOAD = r"""
import sys
import rawprobe
from rawprobe.btf.kernel import KernelBTF
spec = rawprobe.ObjectSpec.from_file(sys.argv[1])
with rawprobe.Collection.from_spec(spec, programs=[sys.argv[2]]):
    pass
kb = KernelBTF.load()
print("computed" if "rawprobe.btf.core" in sys.modules else "cached",
      "cached" if kb._from_cache else "indexed")
kb.index()                  # a first start that computes CO-RE need not write it
"""


def test_a_touched_parser_invalidates_both_caches(tmp_path) -> None:
    """End to end, on a copy of the package: after btf/parse.py changes, neither the
    CO-RE results nor the kernel BTF index an older parse.py left are used."""
    import sys
    shutil.copytree(ROOT / "rawprobe", tmp_path / "pkg" / "rawprobe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, RAWPROBE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(tmp_path / "pkg"), PYTHONDONTWRITEBYTECODE="1")

    def load() -> str:
        return subprocess.run([sys.executable, "-c", _LOAD, str(READ), PROG], env=env,
                              cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert load() == "computed indexed"
    assert load() == "cached cached"
    parse = tmp_path / "pkg" / "rawprobe" / "btf" / "parse.py"
    st = parse.stat()
    os.utime(parse, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load() == "computed indexed"
    assert load() == "cached cached"
