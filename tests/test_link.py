"""Attaching for real: each kind runs its program a known number of times, then no more.

The programs (tests/bpf/link_count.bpf.c) count their hits per kind in an array
map, only for this process (target_tgid) and, for the syscall tracepoints, only
for getpgid(2), which nothing else in a Python process calls.  kprobe and
fentry tests are marked `vm`: this machine's kernel has neither, `make vmtest`
runs them under Debian's 6.1 kernel.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fdcheck import open_fds

import rawprobe
from rawprobe import link as L
from rawprobe.errors import (NotFoundError, NotSupportedError, ObjectFormatError,
                             SyscallError)
from rawprobe.link import _attach, tracefs
from rawprobe.link.kprobe import resolve_syscall_symbol, syscall_prefix

OBJ = Path(__file__).parent / "bpf" / "link_count.bpf.o"
NR_GETPGID = {"x86_64": 121, "aarch64": 155}
(TRACEPOINT, RAW_TP, TP_BTF, KPROBE, KRETPROBE, KPROBE_MANUAL, FENTRY, FEXIT, UPROBE,
 URETPROBE, UPROBE_AUTO) = range(11)
# Programs every kernel here loads (fentry/fexit need a kernel that allows them).
BASE_PROGRAMS = ["on_tracepoint", "on_raw_tp", "on_tp_btf", "on_kprobe", "on_kretprobe",
                 "on_kprobe_manual", "on_uprobe", "on_uretprobe", "on_uprobe_auto"]
N = 5

pytestmark = pytest.mark.usefixtures("bpf_privileges")


# -------------------------------------------------------------------- helpers --

def load_counters(programs=BASE_PROGRAMS, tgid: int | None = None) -> rawprobe.Collection:
    nr = NR_GETPGID.get(os.uname().machine)
    if nr is None:
        pytest.skip(f"the test knows getpgid's syscall number on {sorted(NR_GETPGID)} only")
    return rawprobe.load(OBJ, programs=programs, variables={
        "target_tgid": os.getpid() if tgid is None else tgid, "target_nr": nr})


def counts(coll) -> list[int]:
    m = coll.maps["counts"]
    return [int.from_bytes(m.lookup(i), "little") for i in range(11)]


def reset(coll) -> None:
    m = coll.maps["counts"]
    for i in range(11):
        m.update(i, bytes(8))



def rawprobe_events() -> list[str]:
    return tracefs.list_rawprobe_events("kprobe_events") + \
        tracefs.list_rawprobe_events("uprobe_events")


def on_each_cpu(fn, n: int = N) -> int:
    """Run ``fn`` n times pinned to each CPU in turn; returns the total calls.

    Shows that one perf event on CPU 0 catches events on every CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            for _ in range(n):
                fn()
    finally:
        os.sched_setaffinity(0, cpus)
    return n * len(cpus)


def getpgid() -> None:
    os.getpgid(0)


_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(libc_path())
        _libc.labs.argtypes = [ctypes.c_long]
    return _libc


def libc_path() -> str:
    """The libc this process has mapped (uprobes go by inode, any path to it works)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and os.path.basename(parts[5]).startswith("libc.so"):
            return parts[5]
    pytest.skip("this process has no libc.so mapped")


def call_labs() -> None:
    libc().labs(-7)


def check_fires(coll, link, slot: int, trigger=getpgid, per_call: int = 1) -> None:
    """The program behind ``link`` counts exactly the triggers, and none after close."""
    reset(coll)
    calls = on_each_cpu(trigger)
    assert counts(coll)[slot] == calls * per_call, link
    link.close()
    assert link.closed
    for _ in range(N):
        trigger()
    assert counts(coll)[slot] == calls * per_call, f"{link} still fires after close()"


@pytest.fixture(scope="module")
def counters():
    coll = load_counters()
    yield coll
    coll.close()


@pytest.fixture
def no_leaks():
    """Asserts the test left no fds and no rawprobe tracefs events behind."""
    gc.collect()      # an earlier test's garbage must not close its fds during this one
    before, events = open_fds(), rawprobe_events()
    yield
    assert open_fds() == before
    assert rawprobe_events() == events


# ---------------------------------------------------------------- tracepoints --

def test_tracepoint_by_section(counters, no_leaks):
    link = counters.programs["on_tracepoint"].attach()
    assert (link.kind, link.target) == ("tracepoint", "syscalls/sys_enter_getpgid")
    assert link.mechanism in ("perf_link", "perf_ioctl")
    assert link.perf_event_fd is not None
    check_fires(counters, link, TRACEPOINT)


def test_tracepoint_ioctl_route(counters, no_leaks, monkeypatch):
    # Kernels before 5.15 have no BPF perf link: PERF_EVENT_IOC_SET_BPF it is.
    monkeypatch.setattr(_attach, "_perf_link", False)
    link = L.attach_tracepoint(counters.programs["on_tracepoint"], "syscalls",
                               "sys_enter_getpgid")
    assert link.mechanism == "perf_ioctl"
    check_fires(counters, link, TRACEPOINT)


def test_tracepoint_missing(counters, no_leaks):
    with pytest.raises(NotFoundError, match="syscalls/sys_enter_nosuchcall"):
        L.attach_tracepoint(counters.programs["on_tracepoint"], "syscalls",
                            "sys_enter_nosuchcall")
    with pytest.raises(NotFoundError):
        L.attach_tracepoint(counters.programs["on_tracepoint"], "..", "id")


# ----------------------------------------------------------- raw tracepoints --

def test_raw_tracepoint_by_section(counters, no_leaks):
    link = counters.programs["on_raw_tp"].attach()
    assert (link.kind, link.target, link.mechanism) == ("raw_tracepoint", "sys_enter",
                                                        "bpf_link")
    check_fires(counters, link, RAW_TP)


def test_raw_tracepoint_explicit(counters, no_leaks):
    link = counters.programs["on_raw_tp"].attach_raw_tracepoint("sys_enter")
    check_fires(counters, link, RAW_TP)


def test_raw_tracepoint_missing(counters, no_leaks):
    with pytest.raises(NotFoundError, match="no_such_tracepoint"):
        L.attach_raw_tracepoint(counters.programs["on_raw_tp"], "no_such_tracepoint")
    with pytest.raises(NotFoundError, match="without"):
        L.attach_raw_tracepoint(counters.programs["on_raw_tp"], "syscalls/sys_enter")


def test_tp_btf(counters, no_leaks):
    link = counters.programs["on_tp_btf"].attach()
    assert (link.kind, link.target) == ("tp_btf", "sys_enter")
    check_fires(counters, link, TP_BTF)


# ----------------------------------------------------------------- uprobes --

# A uprobe on libc with pid=-1 would break into every process on the machine
# that maps libc; the tests stay inside this process with pid=os.getpid().

def test_uprobe_shared_library(counters, no_leaks):
    link = L.attach_uprobe(counters.programs["on_uprobe"], libc_path(), "labs",
                           pid=os.getpid())
    assert link.kind == "uprobe" and link.target.endswith(":labs")
    check_fires(counters, link, UPROBE, call_labs)


def test_uretprobe_shared_library(counters, no_leaks):
    link = counters.programs["on_uretprobe"].attach_uprobe("libc.so.6", "labs",
                                                           pid=os.getpid(), retprobe=True)
    assert link.kind == "uretprobe"
    assert os.path.samefile(link.target.rsplit(":", 1)[0], libc_path())
    check_fires(counters, link, URETPROBE, call_labs)


def test_uprobe_errors(counters, no_leaks):
    prog = counters.programs["on_uprobe"]
    with pytest.raises(NotFoundError, match="no_such_function"):
        L.attach_uprobe(prog, libc_path(), "no_such_function")
    with pytest.raises(NotFoundError, match="/no/such/binary"):
        L.attach_uprobe(prog, "/no/such/binary", "main")
    with pytest.raises(NotFoundError, match="libnosuch"):
        L.attach_uprobe(prog, "libnosuch.so.1", "f")
    with pytest.raises(ObjectFormatError, match="function name or a file offset"):
        L.attach_uprobe(prog, libc_path())
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    with pytest.raises(NotFoundError, match=f"pid {dead}"):
        L.attach_uprobe(prog, libc_path(), "labs", pid=dead)
    with pytest.raises(NotSupportedError, match="IFUNC"):
        L.attach_uprobe(prog, libc_path(), "strlen", pid=os.getpid())


# ------------------------------------------------------------------- links --

def test_link_lifecycle(counters, no_leaks):
    with counters.programs["on_raw_tp"].attach() as link:
        assert not link.closed
        assert link.fileno() >= 3
        assert "raw_tracepoint:sys_enter" in repr(link) and "on_raw_tp" in repr(link)
    assert link.closed and "closed" in repr(link)
    link.close()                                  # idempotent
    with pytest.raises(rawprobe.ClosedError, match="link is closed"):
        link.fileno()


def test_collection_close_detaches_its_links(no_leaks):
    coll = load_counters(["on_tracepoint", "on_raw_tp"])
    link = coll.programs["on_tracepoint"].attach()
    coll.programs["on_raw_tp"].attach()
    assert len(coll.links) == 2
    coll.close()
    assert link.closed


def test_unreferenced_link_detaches_when_collected(counters, no_leaks):
    reset(counters)
    L.attach_raw_tracepoint(counters.programs["on_raw_tp"], "sys_enter")   # dropped
    getpgid()
    assert counts(counters)[RAW_TP] == 0


def test_wrong_program_type(counters, no_leaks):
    with pytest.raises(ObjectFormatError, match="is of type RAW_TRACEPOINT"):
        L.attach_tracepoint(counters.programs["on_raw_tp"], "syscalls", "sys_enter_getpgid")
    with pytest.raises(ObjectFormatError, match="TRACEPOINT; a uprobe"):
        L.attach_uprobe(counters.programs["on_tracepoint"], libc_path(), "labs")


def test_attach_needs_a_target_in_the_section(counters):
    with pytest.raises(ObjectFormatError, match="attach_kprobe"):
        counters.programs["on_kprobe_manual"].attach()
    with pytest.raises(ObjectFormatError, match="attach_uprobe"):
        counters.programs["on_uprobe"].attach()


def test_kprobe_retprobe_offset_refused(counters):
    with pytest.raises(ObjectFormatError, match="return probes take no offset"):
        L.attach_kprobe(counters.programs["on_kprobe_manual"], "do_getpgid", 4,
                        retprobe=True)


# ----------------------------------------------------------------- kprobes --

def test_kprobes_missing_is_not_supported(counters, missing_feature):
    if missing_feature("kprobes") is None:
        pytest.skip("this kernel has kprobes; the not-supported path needs one without")
    with pytest.raises(NotSupportedError, match="CONFIG_KPROBES is off"):
        counters.programs["on_kprobe"].attach()


def test_resolve_syscall_symbol():
    want = f"{syscall_prefix()}sys_getpgid"
    if not os.access("/proc/kallsyms", os.R_OK):
        pytest.skip("needs a readable /proc/kallsyms")
    for name in ("getpgid", "sys_getpgid", want):
        assert resolve_syscall_symbol(name) == want
    assert resolve_syscall_symbol("do_getpgid") == "do_getpgid"
    with pytest.raises(NotFoundError, match="sys_nosuchcall"):
        resolve_syscall_symbol("sys_nosuchcall")
    with pytest.raises(ObjectFormatError):
        resolve_syscall_symbol("bad name")


@pytest.mark.vm("kprobes")
def test_kprobe_ksyscall_by_section(counters, no_leaks):
    link = counters.programs["on_kprobe"].attach()
    assert (link.kind, link.target) == ("kprobe", resolve_syscall_symbol("getpgid"))
    assert "tracefs" not in link.mechanism
    check_fires(counters, link, KPROBE)


@pytest.mark.vm("kprobes")
def test_kretprobe(counters, no_leaks):
    link = counters.programs["on_kretprobe"].attach()
    assert link.kind == "kretprobe"
    check_fires(counters, link, KRETPROBE)


def instruction_boundaries(prog, symbol: str, limit: int = 12) -> list[int]:
    """Offsets in (0, limit) the kernel accepts for a kprobe in ``symbol``.

    x86 decodes the function from its start and refuses an offset inside an
    instruction with EILSEQ, so trying each offset finds the boundaries
    without disassembling: on Debian's 6.1 (no IBT) ``__x64_sys_getpgid``
    starts with the 5-byte ``__fentry__`` nop, so the first is 5, a plain
    int3/optimized kprobe on the first real instruction; with IBT it would
    be 4 (after endbr64).  Those first instructions run on every call."""
    found = []
    for off in range(1, limit):
        try:
            L.attach_kprobe(prog, symbol, off).close()
        except SyscallError as e:
            if e.errno != errno.EILSEQ:
                raise
            continue
        found.append(off)
        break
    return found


@pytest.mark.vm("kprobes")
def test_kprobe_with_offset(counters, no_leaks):
    prog = counters.programs["on_kprobe_manual"]
    symbol = resolve_syscall_symbol("getpgid")
    with pytest.raises(SyscallError, match="instruction boundary") as exc:
        L.attach_kprobe(prog, symbol, 1)      # inside the first instruction
    assert exc.value.errno == errno.EILSEQ
    offsets = instruction_boundaries(prog, symbol)
    assert offsets, f"no instruction boundary found in {symbol}"
    link = prog.attach_kprobe(symbol, offsets[0])
    assert link.target == f"{symbol}+{offsets[0]:#x}"
    check_fires(counters, link, KPROBE_MANUAL)


@pytest.mark.vm("kprobes")
def test_kprobe_missing_symbol(counters, no_leaks):
    with pytest.raises(NotFoundError, match="no_such_kernel_function"):
        L.attach_kprobe(counters.programs["on_kprobe_manual"], "no_such_kernel_function")


# ---------------------------------------------------------------- fentry --

@pytest.fixture(scope="module")
def fentry_counters():
    coll = load_counters(["on_fentry", "on_fexit"])
    yield coll
    coll.close()


@pytest.mark.vm("fentry")
def test_fentry(fentry_counters, no_leaks):
    link = fentry_counters.programs["on_fentry"].attach()
    assert (link.kind, link.target) == ("fentry", "do_getpgid")
    check_fires(fentry_counters, link, FENTRY)


@pytest.mark.vm("fentry")
def test_fexit(fentry_counters, no_leaks):
    link = fentry_counters.programs["on_fexit"].attach_fentry()
    assert link.kind == "fexit"
    check_fires(fentry_counters, link, FEXIT)


def test_attach_path_imports_nothing_heavy():
    """Loading and attaching (collection, every link kind but uprobe, the
    feature probes) import none of the standard library's slow modules at
    import time: each costs milliseconds of every start-up.  (uprobe reads
    ELF files with pyelftools, which is heavier than all of them.)"""
    import _cffi_backend            # its directory is left off sys.path by -S
    root = Path(__file__).resolve().parent.parent
    code = ("import sys; before = set(sys.modules)\n"
            "import rawprobe.collection, rawprobe.features, rawprobe.link\n"
            "from rawprobe.link import (_attach, kprobe, raw_tracepoint, tracefs,\n"
            "                           tracepoint, tracing)\n"
            "print(' '.join(sorted(set(sys.modules) - before)))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), os.path.dirname(_cffi_backend.__file__)]))
    out = set(subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=root,
                             check=True, capture_output=True, text=True).stdout.split())
    heavy = {"typing", "enum", "re", "collections", "functools", "contextlib", "threading",
             "weakref", "dataclasses", "cffi", "pycparser", "elftools"}
    assert "rawprobe.link.tracefs" in out and not heavy & out, sorted(heavy & out)
