"""The tracefs route: probe events named uniquely, removed on close, on every
failure path, at exit, and (explicitly) when their process died.

This machine has tracefs uprobe_events but no kprobe_events, so the failure
paths are driven through uprobes here and through kprobes in the VM.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

import rawprobe._sys.bpf
import rawprobe._sys.perf
from rawprobe import link as L
from rawprobe.errors import NotFoundError, RawprobeError, SyscallError
from rawprobe.link import tracefs
from rawprobe.link import tracepoint as tp_mod

from test_link import no_leaks  # noqa: F401  (a fixture)
from test_link import (KPROBE_MANUAL, UPROBE, URETPROBE, call_labs, check_fires, counts,
                       libc_path, load_counters, rawprobe_events, reset)

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture(scope="module")
def counters():
    coll = load_counters(["on_uprobe", "on_uretprobe", "on_kprobe_manual"])
    yield coll
    coll.close()



@pytest.fixture
def uprobe_events():
    try:
        root = tracefs.tracefs_path()
    except RawprobeError as e:
        pytest.skip(f"needs tracefs: {e}")
    if not os.path.exists(os.path.join(root, "uprobe_events")):
        pytest.skip("needs tracefs uprobe_events (CONFIG_UPROBE_EVENTS)")


def attach_labs(counters, **kw):
    # pid: only this process gets the breakpoint (libc is mapped everywhere).
    return L.attach_uprobe(counters.programs["on_uprobe"], libc_path(), "labs",
                           pid=os.getpid(), via="tracefs", **kw)


# ------------------------------------------------------------ happy paths --

def test_tracefs_uprobe_fires_and_is_removed(counters, uprobe_events, no_leaks):
    link = attach_labs(counters)
    assert link.mechanism.endswith("+tracefs")
    (name,) = [e for e in rawprobe_events() if e.startswith(f"rawprobe_{os.getpid()}_")]
    assert name.endswith("/labs")
    check_fires(counters, link, UPROBE, call_labs)
    assert name not in rawprobe_events()


def test_tracefs_uretprobe(counters, uprobe_events, no_leaks):
    link = L.attach_uprobe(counters.programs["on_uretprobe"], libc_path(), "labs",
                           pid=os.getpid(), retprobe=True, via="tracefs")
    check_fires(counters, link, URETPROBE, call_labs)


def test_event_names_are_unique(counters, uprobe_events, no_leaks):
    links = [attach_labs(counters) for _ in range(3)]
    names = [e for e in rawprobe_events() if e.startswith(f"rawprobe_{os.getpid()}_")]
    assert len(set(names)) == 3
    reset(counters)
    call_labs()
    assert counts(counters)[UPROBE] == 3        # three probes, one call
    for link in links:
        link.close()


def test_ioctl_route_with_tracefs(counters, uprobe_events, no_leaks, monkeypatch):
    from rawprobe.link import _attach
    monkeypatch.setattr(_attach, "_perf_link", False)
    link = attach_labs(counters)
    assert link.mechanism == "perf_ioctl+tracefs"
    check_fires(counters, link, UPROBE, call_labs)


# ---------------------------------------------------------- failure paths --

def _fail(*a, **kw):
    raise SyscallError("injected", errno.EIO)


def _interrupt(*a, **kw):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", [
    "event_id",          # after the event is written, reading its id
    "perf_open",         # perf_event_open on the new event
    "link_create",       # attaching the program (BPF link)
    "set_bpf",           # attaching the program (ioctl route)
    "enable",            # enabling the perf event
    "interrupt",         # Ctrl-C in the middle
])
def test_uprobe_failure_paths_leave_nothing(counters, uprobe_events, no_leaks,
                                            monkeypatch, where):
    from rawprobe.link import _attach
    if where == "event_id":
        monkeypatch.setattr(tracefs.DynamicEvent, "id", _fail)
    elif where == "perf_open":
        monkeypatch.setattr(tp_mod, "open_tracepoint_event", _fail)
    elif where == "link_create":
        monkeypatch.setattr(_attach, "_perf_link", True)
        monkeypatch.setattr(rawprobe._sys.bpf, "link_create", _fail)
    elif where == "set_bpf":
        monkeypatch.setattr(_attach, "_perf_link", False)
        monkeypatch.setattr(rawprobe._sys.perf, "set_bpf", _fail)
    elif where == "enable":
        monkeypatch.setattr(rawprobe._sys.perf, "enable", _fail)
    else:
        monkeypatch.setattr(rawprobe._sys.perf, "enable", _interrupt)
    exc = KeyboardInterrupt if where == "interrupt" else SyscallError
    with pytest.raises(exc):
        attach_labs(counters)
    assert not [e for e in rawprobe_events() if e.startswith(f"rawprobe_{os.getpid()}_")]


def test_kernel_refusal_leaves_nothing(counters, uprobe_events, no_leaks):
    size = os.path.getsize(libc_path())
    with pytest.raises(RawprobeError):
        L.attach_uprobe(counters.programs["on_uprobe"], libc_path(), offset=size + 4096,
                        pid=os.getpid(), via="tracefs")


def test_removal_retries_while_busy_then_reports(uprobe_events, monkeypatch):
    calls = []

    def busy(root, file, line):
        calls.append(line)
        raise OSError(errno.EBUSY, "busy")
    monkeypatch.setattr(tracefs, "_write", busy)
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(SyscallError) as e:
        tracefs.remove_event("uprobe_events", "rawprobe_1_1", "x")
    assert e.value.errno == errno.EBUSY and len(calls) == 12


# ------------------------------------------------------ exit and stale events --

OBJ_PATH = os.path.join(os.path.dirname(__file__), "bpf", "link_count.bpf.o")


def leave_a_link_open(*, atexit_cleanup: bool) -> int:
    """Run a child that attaches a tracefs uprobe and exits without closing it;
    Link.__del__ is disabled so only the atexit hook can clean up.  Its pid."""
    code = textwrap.dedent(f"""
        import os, rawprobe
        from rawprobe import link as L
        from rawprobe.link import tracefs
        L.Link.__del__ = lambda self: None
        if not {atexit_cleanup!r}:
            tracefs._install_atexit = lambda: None
        coll = rawprobe.load({OBJ_PATH!r}, programs=["on_uprobe"])
        link = L.attach_uprobe(coll.programs["on_uprobe"], {libc_path()!r}, "labs",
                               pid=os.getpid(), via="tracefs")
        print(os.getpid(), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[0])


def test_events_removed_at_exit_when_links_are_left_open(uprobe_events):
    pid = leave_a_link_open(atexit_cleanup=True)
    assert not [e for e in rawprobe_events() if e.startswith(f"rawprobe_{pid}_")]


def test_remove_stale_events(uprobe_events):
    pid = leave_a_link_open(atexit_cleanup=False)
    mine = [e for e in rawprobe_events() if e.startswith(f"rawprobe_{pid}_")]
    try:
        assert len(mine) == 1, "the child should have left its event behind"
        assert mine[0] in tracefs.remove_stale_events()
        assert mine[0] not in rawprobe_events()
    finally:
        for name in mine:
            group, event = name.split("/")
            tracefs.remove_event("uprobe_events", group, event)


def test_tracefs_is_mounted_when_missing():
    # In a private mount namespace (nothing outside it changes): unmount
    # tracefs (and debugfs, whose tracing/ dir would automount it), then ask.
    import shutil
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) to get a private mount namespace")
    code = ("from rawprobe.link import tracefs\n"
            "try:\n    tracefs.tracefs_path(mount=False)\nexcept Exception as e:\n"
            "    print('unmounted:', e)\n"
            "print(tracefs.tracefs_path())\n"
            "print(tracefs.tracepoint_id('syscalls', 'sys_enter_getpgid'))\n")
    script = ("umount /sys/kernel/debug 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; "
              f"exec {sys.executable} -c \"$0\"")
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                          code], capture_output=True, text=True, cwd=os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__))))
    if out.returncode and "unshare" in out.stderr:
        pytest.skip(f"cannot make a mount namespace: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith("unmounted:") and "mount -t tracefs" in lines[0]
    assert lines[1] == "/sys/kernel/tracing"
    assert int(lines[2]) == tracefs.tracepoint_id("syscalls", "sys_enter_getpgid")


def test_tracefs_errors():
    with pytest.raises(NotFoundError):
        tracefs.tracepoint_id("syscalls", "../../x")
    with pytest.raises(NotFoundError, match="nosuchgroup/x"):
        tracefs.tracepoint_id("nosuchgroup", "x")


# ------------------------------------------------------ kprobes via tracefs --

def kprobe_symbol() -> str:
    return L.resolve_syscall_symbol("getpgid")


@pytest.mark.vm("kprobes")
def test_tracefs_kprobe_fires_and_is_removed(counters, no_leaks):
    link = L.attach_kprobe(counters.programs["on_kprobe_manual"], kprobe_symbol(),
                           via="tracefs")
    assert link.mechanism.endswith("+tracefs")
    assert any(e.startswith(f"rawprobe_{os.getpid()}_")
               for e in tracefs.list_rawprobe_events("kprobe_events"))
    check_fires(counters, link, KPROBE_MANUAL)


@pytest.mark.vm("kprobes")
def test_tracefs_kprobe_with_offset(counters, no_leaks):
    from test_link import instruction_boundaries
    prog = counters.programs["on_kprobe_manual"]
    off = instruction_boundaries(prog, kprobe_symbol())[0]
    link = L.attach_kprobe(prog, kprobe_symbol(), off, via="tracefs")
    check_fires(counters, link, KPROBE_MANUAL)


@pytest.mark.vm("kprobes")
@pytest.mark.parametrize("where", ["perf_open", "enable", "missing_symbol", "bad_offset"])
def test_tracefs_kprobe_failure_paths(counters, no_leaks, monkeypatch, where):
    prog = counters.programs["on_kprobe_manual"]
    symbol, offset, exc = kprobe_symbol(), 0, SyscallError
    if where == "perf_open":
        monkeypatch.setattr(tp_mod, "open_tracepoint_event", _fail)
    elif where == "enable":
        monkeypatch.setattr(rawprobe._sys.perf, "enable", _fail)
    elif where == "missing_symbol":
        symbol, exc = "no_such_kernel_function", NotFoundError
    else:
        offset = 1          # inside the first instruction: EILSEQ
    with pytest.raises(exc):
        L.attach_kprobe(prog, symbol, offset, via="tracefs")
    assert not tracefs.list_rawprobe_events("kprobe_events")
