"""--cgroup from inside a cgroup namespace of the tool's own (``unshare --cgroup`` here;
tests/test_container.py does it with podman's --cgroupns=private).

In the namespace every cgroup path, and the root of a cgroup2 mounted there, is
relative to the namespace's root, while BPF counts ancestor levels from the real
root: rawprobe.cgroup asks the kernel for the namespace root's level.  Each test
makes its cgroups two levels below the cgroup2 root (rpt_<hex>/ns, the namespace
root, and ns/inner), so a depth counted from the namespace root is visibly short.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rawprobe import cgroup

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import ROOT, Watch, targets, unique_comm  # noqa: E402,F401

UNSHARE = shutil.which("unshare")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, cgroups)")


def test_path_depth_counts_names_down_and_dotdot_up():
    assert [cgroup.path_depth(p) for p in ("/", "", "/a", "/a/b/", "a/./b", "/../..",
                                           "/../../x/y/z", "/..")] == [0, 0, 1, 2, 2, -2, 1, -1]


def _top() -> str:
    for ln in open("/proc/self/mountinfo"):
        fields = ln.split()
        if ln.split(" - ")[1].split()[0] == "cgroup2" and fields[3] == "/":
            return fields[4]
    pytest.skip("no cgroup2 mount of the hierarchy's root")


@pytest.fixture
def nested():
    """(the cgroup2 mount, its depth of this process's cgroup, rpt_<hex>/ns, ns/inner):
    made for the test, emptied (into the root) and removed after it."""
    top = _top()
    own = os.path.join(top, cgroup._own_v2_path().lstrip("/"))
    outer = os.path.join(own, unique_comm())
    ns = os.path.join(outer, "ns")
    inner = os.path.join(ns, "inner")
    try:
        os.makedirs(inner)
    except OSError as e:
        pytest.skip(f"cannot create cgroups under {own}: {e.strerror}")
    yield top, cgroup.path_depth(cgroup._own_v2_path()), ns, inner
    for d in (inner, ns, outer):
        with open(os.path.join(d, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:                       # what is left goes back to our cgroup
            try:
                with open(os.path.join(own, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except OSError:
                pass                            # exited meanwhile
        os.rmdir(d)


def _join(cg: str) -> str:
    """sh words that move the shell into cgroup directory ``cg``."""
    return f"echo $$ > {cg}/cgroup.procs"


@needs_root
@pytest.mark.skipif(UNSHARE is None, reason="needs unshare (util-linux)")
def test_the_namespace_roots_level_comes_from_the_kernel(nested):
    top, depth, ns, inner = nested
    code = ("from rawprobe import cgroup; "
            "print(cgroup.in_initial_namespace(), cgroup.own_level(), "
            "cgroup.namespace_root_level())")
    # the namespace is rooted at ns (2 below our cgroup); the process then moves
    # into inner, which it sees as /inner
    r = subprocess.run(["sh", "-c", f"{_join(ns)}; exec {UNSHARE} --cgroup sh -c "
                        f"\"{_join(inner)}; exec {sys.executable} -c '{code}'\""],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", str(depth + 3), str(depth + 2)], r.stdout
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.stdout.split() == ["True", str(depth), "0"], (r.stdout, r.stderr)


@needs_root
@pytest.mark.skipif(UNSHARE is None, reason="needs unshare (util-linux)")
def test_cgroup_filter_from_inside_a_cgroup_namespace(nested, targets, tmp_path):
    """The tool in its own cgroup namespace rooted at ns, with a cgroup2 mounted
    there (its root "/" is ns), watches --cgroup MNT/inner: the target in inner is
    intercepted, signalled and timed; one under the same comm in ns is not seen."""
    top, depth, ns, inner = nested
    comm = unique_comm()
    beside = targets(comm, "--writes", "3")
    t = targets(comm, "--cleanup-ms", "20")
    for pid, cg in ((beside.pid, ns), (t.pid, inner)):
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    mnt = tmp_path / "cg"
    mnt.mkdir()
    watch = (f"mount -t cgroup2 none {mnt} && exec {sys.executable} -m rawprobe watch "
             f"--cgroup {mnt}/inner --comm {comm} --count 1 --json")
    w = Watch(command=["sh", "-c", f"{_join(ns)}; exec {UNSHARE} --cgroup --mount "
                       f"sh -c '{watch}'"])
    beside.go()
    beside.wait_writes_done()
    t.go()
    assert w.finish() == 0, w.stderr
    assert [e["pid"] for e in w.events if e["event"] in ("intercept", "signal", "exit")] \
        == [t.pid] * 3, w.events
    assert beside.alive()
