"""The call hook of ``watch --syscall``: what ``--hook auto`` picks, and why, and
that every hook reports the same call.

``--hook auto`` takes the cheapest hook that sees only the watched syscall:
fentry, else its tracepoint, else a kprobe, and the ``sys_enter`` raw tracepoint
last (rawprobe/interceptor/hooks.py).  Here fentry is refused (EPERM), so the
tracepoint; in the VM fentry.  To see the fallbacks in the VM, hooks are taken
away for real: a BPF LSM program (tests/bpf/deny_prog_load.bpf.c) refuses the
loads of their program types with EPERM, the way a locked-down kernel does.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "targets"))
from harness import ROOT, Watch, targets, unique_comm  # noqa: E402,F401
from test_interceptor_e2e import _loader_missing  # noqa: E402

pytestmark = pytest.mark.skipif(_loader_missing() is not None, reason=str(_loader_missing()))

WRITE = "call 4\n"


def _dev_null_fd(pid: int) -> int:
    """The target's descriptor for /dev/null, the one its writes go to."""
    fds = [int(n) for n in os.listdir(f"/proc/{pid}/fd")
           if int(n) > 2 and os.readlink(f"/proc/{pid}/fd/{n}") == "/dev/null"]
    assert len(fds) == 1, fds
    return fds[0]


@pytest.mark.parametrize("hook", [
    "raw_tp", "tracepoint",
    pytest.param("kprobe", marks=pytest.mark.vm("kprobes")),
    pytest.param("fentry", marks=pytest.mark.vm("fentry")),
])
def test_every_hook_reports_the_same_call(targets, hook):
    """The syscall's number and arguments (as many as write has), its buffer, the
    skip count, and kernel-signal letting no call slip: the same from each hook
    (kprobe and fentry sit on __x64_sys_write, which takes the caller's registers)."""
    comm = unique_comm()
    # writes flat out, with junk in the registers write does not use
    t = targets(comm, "--writes", "100000", "--cleanup-ms", "20", "--junk-args")
    fd = _dev_null_fd(t.pid)
    w = Watch("--comm", comm, "--hook", hook, "--skip", "3", "--action", "kernel-signal",
              "--count", "1")
    assert w.armed["hook"].split()[0] == hook and "hook_reason" not in w.armed
    t.go()
    assert w.finish() == 0, w.stderr
    (ic,) = w.of("intercept", t.pid)
    assert ic["hook"] == hook and ic["syscall"] == "write" and "symbol" not in ic, ic
    assert ic["hit"] == 4 and ic["data"] == WRITE, ic
    assert ic["args"][0] == fd and ic["args"][2] == len(WRITE), ic["args"]
    assert 0 < ic["args"][1] < 1 << 47 and ic["args"][3:] == [0, 0, 0], ic["args"]
    assert w.of("signal", t.pid)[0]["by"] == "kernel"
    assert w.of("exit", t.pid)[0]["slipped_calls"] == 0


def _auto_row() -> str:
    """What ``python -m rawprobe features`` says --hook auto would attach."""
    r = subprocess.run([sys.executable, "-m", "rawprobe", "features", "--json"],
                       capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, r.stderr
    (row,) = [x for x in json.loads(r.stdout) if x["name"] == "hook auto, --syscall write"]
    assert row["supported"], row
    return row["detail"]


def _watch_auto(targets) -> tuple[Watch, dict]:
    """A default watch (--hook auto) of a target's first write; its intercept."""
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "5")
    w = Watch("--comm", comm, "--count", "1")
    t.go()
    assert w.finish() == 0, w.stderr
    (ic,) = w.of("intercept", t.pid)
    assert ic["syscall"] == "write" and ic["data"] == "call 1\n", ic
    return w, ic


def test_auto_takes_the_tracepoint_where_fentry_is_refused(targets, missing_feature):
    if missing_feature("fentry") is None:
        pytest.skip("fentry works on this kernel: test_auto_takes_fentry covers it")
    w, ic = _watch_auto(targets)
    assert w.armed["hook"] == "tracepoint syscalls/sys_enter_write", w.armed
    assert ic["hook"] == "tracepoint"
    assert "fentry: refused here (" in w.armed["hook_reason"], w.armed
    assert "EPERM" in w.armed["hook_reason"], w.armed
    row = _auto_row()
    assert row.startswith(w.armed["hook"] + " (auto: ") and "fentry: refused" in row, row


@pytest.mark.vm("fentry")
def test_auto_takes_fentry_where_the_kernel_has_it(targets):
    from rawprobe.interceptor.syscalls import entry_symbol
    w, ic = _watch_auto(targets)
    assert w.armed["hook"] == f"fentry {entry_symbol('write')}", w.armed
    assert ic["hook"] == "fentry"
    assert w.armed["hook_reason"] == "auto: the cheapest hook that sees write() alone"
    assert _auto_row().startswith(w.armed["hook"] + " (auto: the cheapest hook that ")


@contextlib.contextmanager
def deny_prog_loads(*prog_types: int):
    """While inside: the kernel refuses BPF_PROG_LOAD of these program types (to
    every process) with EPERM, by a BPF LSM program; yields its refusal counter."""
    import rawprobe
    from rawprobe.link._attach import attach_btf_target
    spec = rawprobe.ObjectSpec.from_file(str(HERE / "bpf" / "deny_prog_load.bpf.o"))
    spec.variables["deny_types"].set(sum(1 << t for t in prog_types))
    try:
        coll = spec.load()
        link = attach_btf_target(coll.programs["deny_prog_load"], "lsm", "the BPF LSM")
    except rawprobe.RawprobeError as e:
        pytest.skip(f"the BPF LSM is not usable here: {e}")
    try:
        yield coll.variables["denied"]
    finally:
        link.close()
        coll.close()


@pytest.mark.vm("fentry", "kprobes")
@pytest.mark.parametrize("taken,chosen", [
    (("fentry",), "tracepoint"),
    (("fentry", "tracepoint"), "kprobe"),
    (("fentry", "tracepoint", "kprobe"), "raw_tp"),
])
def test_auto_falls_back_in_order_and_says_why(targets, taken, chosen):
    from rawprobe.uapi import ProgType
    prog_type = {"fentry": ProgType.TRACING, "tracepoint": ProgType.TRACEPOINT,
                 "kprobe": ProgType.KPROBE}
    with deny_prog_loads(*(prog_type[h] for h in taken)) as denied:
        w, ic = _watch_auto(targets)
        assert denied.get_int() >= len(taken)
    assert w.armed["hook"].split()[0] == chosen and ic["hook"] == chosen, w.armed
    reason = w.armed["hook_reason"]
    for hook in taken:
        assert f"; {hook}: " in reason and "EPERM" in reason.split(f"; {hook}: ")[1], reason
    if chosen == "raw_tp":
        assert reason.startswith("auto: every syscall runs it"), reason


def test_the_armed_line_says_why_auto_chose_the_hook():
    from rawprobe.interceptor.output import format_text
    line = format_text({"event": "armed", "hook": "tracepoint syscalls/sys_enter_write",
                        "hook_reason": "auto: because", "target": "write",
                        "filter": "comm 'x'", "action": "report only"})
    assert line.startswith("armed: tracepoint syscalls/sys_enter_write (auto: because) on write")


def test_arity_leaves_out_the_copy_of_a_user_buffer():
    """Newer kernels append the user buffer a call points to (write's __buf_val) to
    its tracepoint record; it is not an argument."""
    from rawprobe.interceptor.probe import format_arity
    fmt = ("name: sys_enter_write\nID: 840\nformat:\n"
           "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
           "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
           "\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n"
           "\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;\n"
           "\tfield:const char * buf;\toffset:24;\tsize:8;\tsigned:0;\n"
           "\tfield:size_t count;\toffset:32;\tsize:8;\tsigned:0;\n")
    assert format_arity(fmt) == 3
    assert format_arity(fmt + "\tfield:__data_loc char[] __buf_val;\toffset:40;\tsize:4;"
                              "\tsigned:0;\n") == 3
    assert format_arity("format:\n") == 6
