"""``--action deny`` / ``deny-signal``: the chosen call fails in the target, in the kernel.

The behaviour tests run where BPF LSM programs run (`make vmtest`: Debian's 6.1 and
6.12 kernels have "bpf" in their default lsm= list); each target records what its
own calls returned (tests/targets/target.py --record), and reports it with
writev(2), which a deny of write(2) leaves alone.  On this machine the kernel
refuses LSM and trampoline programs: the tests here check the one-line error.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import ROOT, Watch, targets, unique_comm  # noqa: E402,F401

from rawprobe.errors import UsageError  # noqa: E402
from rawprobe.interceptor import deny, events  # noqa: E402
from rawprobe.interceptor.options import parse_watch  # noqa: E402
from rawprobe.interceptor.syscalls import table  # noqa: E402

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF and signals)")


# ------------------------------------------------------------- no kernel needed --

def test_every_syscall_of_the_hook_table_exists():
    x86 = table("x86_64")
    assert set(deny.SYSCALL_HOOKS) <= set(x86), set(deny.SYSCALL_HOOKS) - set(x86)
    for hooks, access in deny.SYSCALL_HOOKS.values():
        assert hooks and (access == "" or access in deny.ACCESS)


def test_the_readme_lists_every_syscall_the_table_maps():
    """README's syscall -> hook table says what deny.ROWS says: each row's syscalls,
    hooks and access on one line of it, and nothing the table does not map."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Deny the call"):]
    section = section[:section.index("\n#")]
    rows = [set(re.findall(r"\w+", ln)) for ln in section.splitlines()
            if ln.startswith("| ") and not ln.startswith("| syscall")]
    for names, hooks, access in deny.ROWS:
        want = {*names.split(), *hooks, *([access] if access else [])}
        assert any(want <= words for words in rows), (names, hooks)
    shown = {w for words in rows for w in words if w in table("x86_64")}
    assert shown <= set(deny.SYSCALL_HOOKS), shown - set(deny.SYSCALL_HOOKS)


@pytest.mark.parametrize("argv,msg", [
    (["--comm", "x", "--errno", "EIO"], "--errno is for denying a call"),
    (["--comm", "x", "--lsm", "file_open"], "--lsm is for denying a call"),
    (["--comm", "x", "--hook", "fmod_ret"], "--hook fmod_ret denies a call"),
    (["--comm", "x", "--hook", "lsm"], "--hook lsm denies a call"),
    (["--comm", "x", "--action", "deny-signal", "--syscall", "getpid"],
     r"^--action deny-signal: no LSM hook guards getpid\(\)"),
    (["--comm", "x", "--action", "deny-signal", "--hook", "raw_tp"], "not raw_tp"),
    (["--comm", "x", "--action", "deny", "--syscall", "getpid"],
     r"no LSM hook guards getpid\(\); name a hook with --lsm HOOK, or deny one of: .*openat"),
    (["--comm", "x", "--action", "deny", "--kprobe", "vfs_write"], "not --kprobe"),
    (["--comm", "x", "--action", "deny", "--hook", "raw_tp"], "not raw_tp"),
    (["--comm", "x", "--action", "deny", "--signal", "KILL"], "deny signals nobody: drop --signal"),
    (["--comm", "x", "--action", "deny", "--kill-after", "1s"], "drop --kill-after"),
    (["--action", "deny"], "name the processes"),
    (["--comm", "x", "--action", "deny", "--errno", "0"], "1 to 4095"),
    (["--comm", "x", "--action", "deny", "--errno", "ENOSUCH"], "is no errno"),
    (["--comm", "x", "--action", "deny", "--lsm", "File-open"], "is no LSM hook name"),
])
def test_deny_options_refused(argv, msg):
    with pytest.raises(UsageError, match=msg):
        parse_watch(argv, arch="x86_64")


def test_deny_options_accepted():
    o = parse_watch(["--comm", "x", "--action", "deny"], arch="x86_64")
    assert (o.syscall, o.syscall_nr, o.lsm, o.deny_errno, o.hook) == ("write", 1, None,
                                                                      errno.EPERM, "auto")
    o = parse_watch(["--comm", "x", "--action", "deny", "--lsm", "bpf_lsm_file_open",
                     "--errno", "eacces"], arch="x86_64")
    assert (o.syscall, o.syscall_nr, o.lsm, o.deny_errno) == (None, None, "file_open",
                                                              errno.EACCES)
    o = parse_watch(["--comm", "x", "--action", "deny-signal", "--syscall", "openat",
                     "--errno", "524", "--signal", "INT", "--hook", "fmod_ret"], arch="x86_64")
    assert (o.syscall, o.deny_errno, o.signal, o.hook) == ("openat", 524, 2, "fmod_ret")


def test_deny_record_format_matches_the_objects_btf():
    import rawprobe
    from rawprobe.interceptor.probe import object_path
    spec = rawprobe.ObjectSpec.from_file(object_path(deny.LSM_OBJECT))
    st = spec.btf.type_by_id(spec.btf.types_by_name("rp_deny_event")[0])
    items = re.findall(r"\d*[a-zA-Z]", events.DENY.format[1:])
    assert len(items) == len(st.members)
    for i, m in enumerate(st.members):
        assert struct.calcsize("<" + "".join(items[:i])) * 8 == m.offset, m.name
    assert events.DENY.size == st.size


def test_decode_a_deny_record():
    rec = events.DENY.pack(events.RP_EV_DENY, 10, 11, 1, 500, 77, 1, 2, 3, 0, 0, 0,
                           b"rpt_x".ljust(16, b"\0"), -13, 5)
    d = events.decode(rec)
    assert isinstance(d, events.Denial)
    assert (d.tgid, d.pid, d.nr, d.ktime_ns, d.start_time, d.args[:3], d.comm, d.ret,
            d.hook) == (10, 11, 1, 500, 77, (1, 2, 3), "rpt_x", -13, "lsm")


# ---------------------------------------------- where no deny can run: one line --

@root_only
def test_a_kernel_that_cannot_deny_says_so_in_one_line():
    from rawprobe import features
    if features.bpf_lsm().supported or features.fmod_ret_security().supported:
        pytest.skip("this kernel can deny (the VM)")
    r = subprocess.run([sys.executable, "-m", "rawprobe", "watch", "--comm", unique_comm(),
                        "--action", "deny"], capture_output=True, text=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawprobe: error: cannot deny a call on "
                                                   "this kernel (lsm: "), r.stderr
    assert "fmod_ret: " in lines[0] and "rawprobe features" in lines[0]


# ------------------------------------------------------------ in the VM, for real --

vm = pytest.mark.vm("bpf_lsm")


@root_only
@vm
@pytest.mark.parametrize("hook", ["auto", "fmod_ret"])
def test_write_fails_with_the_errno_from_call_n_plus_1(targets, hook):
    """--skip 2 --errno EACCES: the target's writes 1-2 succeed and every later one
    fails with EACCES, as the target itself saw; a process named otherwise (a name
    one byte longer) writes on unaffected; every denied call is a deny event; the
    watch follows the target to its exit (--count 1)."""
    comm = unique_comm()
    t = targets(comm, "--writes", "6", "--record", "--linger-s", "0")
    other = targets(comm + "x", "--writes", "6", "--record", "--linger-s", "0")
    w = Watch("--comm", comm, "--action", "deny", "--errno", "EACCES", "--skip", "2",
              "--count", "1", "--hook", hook)
    route = "lsm" if hook == "auto" else "fmod_ret"
    target = "file_permission" if route == "lsm" else "security_file_permission"
    assert w.armed["hook"] == f"{route} {target} (MAY_WRITE) in write()", w.armed
    assert w.armed.get("hook_reason", "") == ("auto: the BPF LSM runs here" if hook == "auto"
                                              else "")
    assert w.armed["action"] == "deny with EACCES"
    other.go()
    t.go()
    assert other.results() == ["ok"] * 6
    assert t.results() == ["ok", "ok"] + ["EACCES"] * 4
    assert w.finish() == 0, w.stderr
    ic = w.of("intercept", t.pid)
    assert len(ic) == 1 and ic[0]["hit"] == 3 and ic[0]["data"] == "call 3\n"
    assert ic[0]["hook"] == route and ic[0]["syscall"] == "write"
    denies = w.of("deny", t.pid)
    assert [d.get("hit") for d in denies] == [3, None, None, None]
    assert all(d["errno"] == "EACCES" and d["syscall"] == "write" for d in denies)
    assert not w.of("deny", other.pid) and not w.of("signal")
    ex = w.of("exit", t.pid)[0]
    assert ex["denied_calls"] == 4 and ex["exit_code"] == 3 and ex["escalated"] is False
    assert w.summary()["counts"]["denied"] == 4


@root_only
@vm
@pytest.mark.parametrize("hook", ["lsm", "fmod_ret"])
def test_openat_fails_at_the_file_open_hook(targets, hook):
    """By --pid this time: the target's openat() fails from its second call on, at
    file_open; another process of the same name is left alone."""
    comm = unique_comm()
    t = targets(comm, "--call", "openat", "--writes", "4", "--record", "--linger-s", "0")
    same = targets(comm, "--call", "openat", "--writes", "4", "--record", "--linger-s", "0")
    w = Watch("--pid", str(t.pid), "--action", "deny", "--syscall", "openat", "--errno",
              "EMFILE", "--skip", "1", "--count", "1", "--hook", hook)
    assert w.armed["hook"].startswith(f"{hook} ") and "file_open in openat()" in \
        w.armed["hook"], w.armed
    same.go()
    t.go()
    assert same.results() == ["ok"] * 4
    assert t.results() == ["ok"] + ["EMFILE"] * 3
    assert w.finish() == 0, w.stderr
    assert [d["syscall"] for d in w.of("deny", t.pid)] == ["openat"] * 3
    assert not w.of("deny", same.pid)


@root_only
@vm
def test_the_end_of_the_watch_lets_denied_processes_go(targets):
    """--duration over while the target is still being denied: the watch ends (status
    0) and says it let the target go; the target's later writes succeed again."""
    comm = unique_comm()
    t = targets(comm, "--writes", "250", "--interval-ms", "20", "--record", "--linger-s", "0")
    w = Watch("--comm", comm, "--action", "deny", "--duration", "2s")
    t.go()
    assert w.finish() == 0, w.stderr
    ab = w.of("abandoned")
    assert ab and ab[0]["pids"] == [t.pid] and "--duration is over" in ab[0]["reason"]
    res = t.results()
    first_ok = res.index("ok")
    assert first_ok > 0 and set(res[:first_ok]) == {"EPERM"} and set(res[first_ok:]) == {"ok"}
    assert w.summary()["counts"]["denied"] == first_ok


@root_only
@vm
def test_an_lsm_hook_named_directly_denies_in_any_syscall(targets):
    """--lsm file_open without --syscall: any call that reaches the hook fails,
    here the target's openat()."""
    comm = unique_comm()
    t = targets(comm, "--call", "openat", "--writes", "2", "--record", "--linger-s", "0")
    w = Watch("--comm", comm, "--action", "deny", "--lsm", "file_open", "--count", "1")
    assert w.armed["hook"] == "lsm file_open in any syscall", w.armed
    t.go()
    assert t.results() == ["EPERM"] * 2
    assert w.finish() == 0, w.stderr
    assert {d["syscall"] for d in w.of("deny", t.pid)} == {"openat"}


@root_only
@vm
def test_deny_signal_denies_signals_and_times_the_exit(targets):
    """deny-signal: the call fails (the target records EPERM: SIGTERM is blocked
    around its call and record), the kernel signals it at the call, and its exit
    after a 100 ms cleanup is timed."""
    comm = unique_comm()
    t = targets(comm, "--writes", "3", "--record", "--mask-term", "--cleanup-ms", "100",
                "--exit-code", "7")
    w = Watch("--comm", comm, "--action", "deny-signal", "--count", "1", "--kill-after", "5s")
    assert w.armed["action"].startswith("deny with EPERM, kernel-signal SIGTERM")
    t.go()
    assert t.results() == ["EPERM"]
    assert w.finish() == 0, w.stderr
    assert w.of("deny", t.pid)[0]["hit"] == 1
    assert w.of("signal", t.pid)[0]["by"] == "kernel"
    ex = w.of("exit", t.pid)[0]
    assert ex["exit_code"] == 7 and ex["escalated"] is False
    assert 100_000 <= ex["time_to_exit_us"] < 5_000_000, ex


@root_only
@vm
def test_the_tool_and_its_ancestors_are_never_denied(targets):
    """The tool runs under the watched comm and writes its JSON lines with write();
    its parent has that comm too and writes once the tool is armed: neither is
    denied (the parent's refusal is reported), the target is."""
    comm = unique_comm()
    t = targets(comm, "--writes", "2", "--record", "--linger-s", "0")
    code = ("import os, subprocess, sys; open('/proc/self/comm', 'w').write(sys.argv[1]); "
            "p = subprocess.Popen([sys.executable, '-c', \"import sys; open('/proc/self/comm', "
            "'w').write(sys.argv[1]); from rawprobe.__main__ import main; "
            "sys.exit(main(sys.argv[2:]))\", sys.argv[1], 'watch', '--comm', sys.argv[1], "
            "'--action', 'deny', '--count', '2', '--json'], stdout=subprocess.PIPE, text=True); "
            "p.stdout.readline(); os.write(2, b'the parent wrote\\n'); "
            "out, _ = p.communicate(timeout=300); print(out, end=''); sys.exit(p.returncode)")
    parent = subprocess.Popen([sys.executable, "-c", code, comm], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert parent.stderr.readline() == "the parent wrote\n"   # armed, and not denied
        t.go()
        assert t.results() == ["EPERM", "EPERM"]
        out, err = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 0, err
    ev = [json.loads(x) for x in out.splitlines()]
    refused = [e for e in ev if e["event"] == "refused"]
    assert [e["pid"] for e in refused] == [parent.pid] and "ancestors" in refused[0]["reason"]
    assert {e["pid"] for e in ev if e["event"] == "deny"} == {t.pid}, ev
    assert [e["pid"] for e in ev if e["event"] == "intercept"] == [parent.pid, t.pid]


@root_only
@pytest.mark.vm("bpf_lsm_inactive")
def test_auto_denies_through_fmod_ret_where_the_bpf_lsm_is_inactive(targets):
    """The BPF LSM built in but left out of lsm= (tools/vmtest.py --append
    lsm=capability,yama): --hook auto does not take the LSM program (it would
    never run) but fmod_ret on security_file_permission, and says so."""
    comm = unique_comm()
    t = targets(comm, "--writes", "2", "--record", "--linger-s", "0")
    w = Watch("--comm", comm, "--action", "deny", "--count", "1")
    assert w.armed["hook"] == "fmod_ret security_file_permission (MAY_WRITE) in write()"
    assert w.armed["hook_reason"].startswith("auto: fmod_ret, since lsm: ") and \
        "not active" in w.armed["hook_reason"], w.armed
    t.go()
    assert t.results() == ["EPERM", "EPERM"]
    assert w.finish() == 0, w.stderr
    with pytest.raises(AssertionError, match="not active.*lsm="):
        Watch("--comm", comm, "--action", "deny", "--hook", "lsm")
