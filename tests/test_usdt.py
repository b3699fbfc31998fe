"""USDT end to end: tests/bpf/usdt.bpf.o (libbpf's usdt.bpf.h) attached to the
real sys/sdt.h probes of tests/targets/usdt_target.c, built at test time; what
the programs read is compared with what the target says it passed, and with
what the same object records when libbpf attaches it (a C loader linked with
-lbpf, tests/targets/usdt_libbpf.c)."""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

import rawprobe
from rawprobe import features
from rawprobe.errors import NotFoundError, NotSupportedError, ObjectFormatError
from rawprobe.ringbuf import RingBuffer

from test_link import no_leaks  # noqa: F401  (a fixture)
from test_link_uprobe import compiler

HERE = Path(__file__).parent
OBJ = HERE / "bpf" / "usdt.bpf.o"
TARGETS = HERE / "targets"
# the name the object's SEC("usdt/rawprobe_usdt_target:rpt:consts") looks up in PATH
EXE = "rawprobe_usdt_target"
# struct usdt_rec (tests/bpf/usdt_rec.h)
REC = struct.Struct("<IIQq6q")
PROG_PROBE, PROG_CONSTS = 1, 2
# the probes on_probe is attached to, with a cookie each
COOKIES = {"regs": 100, "mem": 101, "twice": 102, "sema": 103}

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def _build(out: Path, *flags: str) -> str:
    cc = compiler("the USDT target")
    if not Path("/usr/include/sys/sdt.h").exists() and \
            not list(Path("/usr/include").glob("*/sys/sdt.h")):
        pytest.skip("needs sys/sdt.h (Debian package systemtap-sdt-dev) to build the "
                    "USDT target")
    subprocess.run([cc, "-O2", "-g0", *flags, "-o", str(out), str(TARGETS / "usdt_target.c"),
                    str(TARGETS / "usdt_sema.c")], check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory) -> Path:
    """A directory holding the target (PIE, the compiler's default) as EXE, and a
    non-PIE build as EXE-nopie."""
    d = tmp_path_factory.mktemp("usdt-target")
    _build(d / EXE)
    _build(d / f"{EXE}-nopie", "-fno-pie", "-no-pie")
    return d


@pytest.fixture
def target(target_dir, monkeypatch) -> str:
    """The target's path; its directory is on PATH (for the auto-attach section)."""
    monkeypatch.setenv("PATH", f"{target_dir}{os.pathsep}{os.environ['PATH']}")
    return str(target_dir / EXE)


@pytest.fixture
def coll():
    c = rawprobe.load(OBJ)
    yield c
    c.close()


def run(exe: str) -> list[str]:
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()


def records(c) -> list[tuple]:
    with RingBuffer(c.maps["events"]) as rb:
        return rb.read_structs(REC)


def fired(lines: list[str]) -> dict[str, list[list[int]]]:
    """probe name -> the argument lists the target printed for it, per firing."""
    out: dict[str, list[list[int]]] = {}
    for line in lines:
        if line.startswith("fire "):
            _, probe, *args = line.split()
            out.setdefault(probe.split(":")[1], []).append([int(a) for a in args])
    return out


def seen(recs, prog: int = PROG_PROBE) -> dict[str, list[list[int]]]:
    """probe name (by its cookie) -> the arguments on_probe read, per hit."""
    by_cookie = {v: k for k, v in COOKIES.items()}
    out: dict[str, list[list[int]]] = {}
    for r in recs:
        if r[0] == prog:
            n = r[3]
            out.setdefault(by_cookie.get(r[2], str(r[2])), []).append(list(r[4:4 + n]))
    return out


def attach_all(c, path: str, pid: int = -1) -> list:
    return [c.programs["on_probe"].attach_usdt(path, "rpt", name, pid=pid, cookie=cookie)
            for name, cookie in COOKIES.items()]


def test_arguments_of_every_format(coll, target, no_leaks):
    """Registers of 8/4/2/1 bytes, memory at register+offset (negative, zero,
    positive), constants; signed and unsigned: on_probe reads what the target
    passed, the cookie says which probe, and rpt:twice fires at both sites."""
    links = attach_all(coll, target)
    assert [ln.sites for ln in links] == [1, 1, 2, 1]
    lines = run(target)
    for ln in links:
        ln.close()
    want = fired(lines)
    got = seen(records(coll))
    assert "sema 1" in lines
    for name in COOKIES:
        assert got.get(name) == want[name], name
    assert len(got["twice"]) == 2 and got["twice"][0] != got["twice"][1]


def test_semaphore_only_while_attached(coll, target, no_leaks):
    assert "sema 0" in run(target)
    link = coll.programs["on_probe"].attach_usdt(target, "rpt", "sema", cookie=7)
    lines = run(target)
    link.close()
    assert "sema 1" in lines and "fire rpt:sema 3" in lines
    after = run(target)
    assert "sema 0" in after and not any("rpt:sema" in ln for ln in after)
    assert seen(records(coll))["7"] == [[3]]


def test_auto_attach_by_section(coll, target, no_leaks):
    """SEC("usdt/rawprobe_usdt_target:rpt:consts"): the bare name is found in
    PATH; BPF_USDT() reads the three constants."""
    link = coll.programs["on_consts"].attach()
    assert (link.kind, link.target) == ("usdt", f"{target}:rpt:consts")
    lines = run(target)
    link.close()
    (want,) = fired(lines)["consts"]
    recs = [r for r in records(coll) if r[0] == PROG_CONSTS]
    assert [list(r[4:7]) for r in recs] == [want] and recs[0][3] == 3


def _waiting(exe: str) -> subprocess.Popen:
    p = subprocess.Popen([exe, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def _go(p: subprocess.Popen) -> list[str]:
    out, _ = p.communicate("g", timeout=30)
    assert p.returncode == 0
    return out.splitlines()


def test_pid_filter(coll, target, no_leaks):
    a, b = _waiting(target), _waiting(target)
    try:
        link = coll.programs["on_probe"].attach_usdt(target, "rpt", "twice", pid=a.pid,
                                                     cookie=1)
    except BaseException:
        a.kill(), b.kill(), a.wait(), b.wait()
        raise
    _go(b)
    _go(a)
    link.close()
    pids = [r[1] for r in records(coll)]
    assert pids == [a.pid, a.pid]


def test_spec_slots_come_back(target, no_leaks):
    """Each attach takes a __bpf_usdt_specs slot (sites with the same specs share
    one); closing gives them back, so more attaches than the map has slots
    succeed one after another, and too many at once are refused clearly."""
    from rawprobe.collection import Collection
    from rawprobe.spec import ObjectSpec
    spec = ObjectSpec.from_file(OBJ)
    spec.maps["__bpf_usdt_specs"].max_entries = 2       # as bpf_map__set_max_entries
    with Collection.from_spec(spec) as c:
        prog = c.programs["on_probe"]
        for _ in range(5):
            prog.attach_usdt(target, "rpt", "regs").close()
        # rpt:twice: 2 sites, 1 slot
        links = [prog.attach_usdt(target, "rpt", "twice"), prog.attach_usdt(target, "rpt", "regs")]
        with pytest.raises(NotSupportedError, match="__bpf_usdt_specs is full"):
            prog.attach_usdt(target, "rpt", "regs")
        for ln in links:
            ln.close()


def test_errors(coll, target, no_leaks):
    prog = coll.programs["on_probe"]
    with pytest.raises(NotFoundError, match=r"no such probe.*rpt:regs"):
        prog.attach_usdt(target, "rpt", "nope")
    with pytest.raises(NotFoundError):
        prog.attach_usdt("/nonexistent/binary", "rpt", "regs")
    other = rawprobe.load(HERE / "bpf" / "link_count.bpf.o", programs="on_uprobe")
    try:
        with pytest.raises(ObjectFormatError, match="include <bpf/usdt.bpf.h>"):
            other.programs["on_uprobe"].attach_usdt(target, "rpt", "regs")
    finally:
        other.close()


# -- without BPF cookies (kernels before 5.15) ---------------------------------------

@pytest.fixture
def no_cookie(monkeypatch):
    """The answer a kernel without BPF cookies gives: the object loads with
    LINUX_HAS_BPF_COOKIE = 0 and attach_usdt uses __bpf_usdt_ip_to_spec_id."""
    monkeypatch.setattr(features, "bpf_cookie",
                        lambda: features.Feature("BPF cookie", False, "test: pre-5.15"))
    c = rawprobe.load(OBJ)
    yield c
    c.close()


def test_ip_map_executable(no_cookie, target_dir, no_leaks):
    """A non-PIE executable: the note's address is the run-time one, any pid."""
    exe = str(target_dir / f"{EXE}-nopie")
    links = attach_all(no_cookie, exe)
    ips = no_cookie.maps["__bpf_usdt_ip_to_spec_id"]
    assert len(list(ips.keys())) == 5
    lines = run(exe)
    for ln in links:
        ln.close()
    assert list(ips.keys()) == []
    want, got = fired(lines), seen(records(no_cookie))
    for name in COOKIES:
        assert got.get(name) == want[name], name


def test_ip_map_pie_needs_pid(no_cookie, target, no_leaks):
    prog = no_cookie.programs["on_probe"]
    with pytest.raises(NotSupportedError, match="needs a pid"):
        prog.attach_usdt(target, "rpt", "twice")
    with pytest.raises(NotFoundError, match="no mapping"):      # this process does not
        prog.attach_usdt(target, "rpt", "twice", pid=os.getpid())
    p = _waiting(target)
    try:
        link = prog.attach_usdt(target, "rpt", "twice", pid=p.pid, cookie=5)
    except BaseException:
        p.kill(), p.wait()
        raise
    lines = _go(p)
    link.close()
    assert seen(records(no_cookie))["5"] == fired(lines)["twice"]


# -- libbpf as the oracle ------------------------------------------------------------

@pytest.fixture(scope="module")
def libbpf_loader(tmp_path_factory) -> str:
    cc = compiler("the USDT target")
    if not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.skip("needs libbpf's headers (Debian package libbpf-dev)")
    out = tmp_path_factory.mktemp("usdt-libbpf") / "usdt_libbpf"
    r = subprocess.run([cc, "-O1", "-o", str(out), str(TARGETS / "usdt_libbpf.c"), "-lbpf"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot link a loader with -lbpf: {r.stderr.strip()[-200:]}")
    return str(out)


def test_same_records_as_libbpf(coll, target, libbpf_loader, no_leaks):
    """The same object, the same probes and cookies, the same target run: libbpf
    and rawprobe record the same things (pids aside)."""
    loader = subprocess.Popen(
        [libbpf_loader, str(OBJ), target, *(f"rpt:{n}:{c}" for n, c in COOKIES.items())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert loader.stdout.readline() == "ready\n", loader.stderr.read()
        run(target)
    finally:
        out, err = loader.communicate("go\n", timeout=30)
    assert loader.returncode == 0, err
    theirs = sorted(tuple(int(x) for x in ln.split()[1:]) for ln in out.splitlines()
                    if ln.startswith("rec "))
    links = [*attach_all(coll, target), coll.programs["on_consts"].attach()]
    run(target)
    for ln in links:
        ln.close()
    ours = sorted(records(coll))
    assert len(theirs) == 6
    strip = lambda recs: sorted((r[0], *r[2:]) for r in recs)   # noqa: E731
    assert strip(ours) == strip(theirs)
