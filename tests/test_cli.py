"""``python -m rawprobe``: exit statuses, one-line errors, signals to the tool, the demo."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "targets"))
from harness import Target, Watch, unique_comm  # noqa: E402


def run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rawprobe", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(ROOT), **kw)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("rawprobe: ")
    return lines[0]


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "watch" in r.stdout and "features" in r.stdout
    r = run("watch", "--help")
    assert r.returncode == 0 and "--kill-after" in r.stdout
    text = " ".join(r.stdout.split())
    assert "--action auto|signal|kernel-signal|report|deny|deny-signal (default auto: the " \
           "kernel signals at the call where it can; deny and deny-signal make the call " \
           "itself fail, with --errno)" in text
    assert "--uid 0 (root) without --comm, --pid or a cgroup" in text      # what is refused
    assert "at most 1440m, 1 day; default 2s" in text and "exits with status 2" in text
    assert run("--version").stdout.startswith("rawprobe ")


@pytest.mark.parametrize("args,needle", [
    (["watch", "--comm", "x", "--kill-after", "2"], "needs a unit"),
    (["watch", "--comm", "x", "--syscall", "wrte"], "did you mean 'write'"),
    (["watch", "--comm", "x", "--signal", "TERMINATE"], "unknown signal"),
    (["watch", "--comm", "x", "--frobnicate"], "unrecognized arguments"),
    (["watch"], "name the processes"),
    # every option has a range: out of it is one line, not a traceback
    (["watch", "--comm", "x", "--duration", "100000000000000000000m"], "at most 34560m"),
    (["watch", "--comm", "x", "--kill-after", "100000000000000000000s"], "at most 1440m"),
    (["watch", "--comm", "x", "--pid", "99999999999"], "pid_max"),
    (["watch", "--comm", os.fsdecode(b"\xff\xfe" * 8)], "15 bytes"),
    (["watch", "--comm", "x", "--max-in-flight", "65537"], "1 to 65536"),
    # pids, syscalls and symbols that would surprise
    (["watch", "--pid", "1"], "--pid 1 is init"),
    (["watch", "--pid", "2"], "--pid 2 is a kernel thread"),
    (["watch", "--pid", "999999999"], "pid_max"),
    (["watch", "--pid", str(os.getpid())], "this tool or one of its ancestors"),
    (["watch", "--comm", "x", "--syscall", ""], "names no syscall"),
    (["watch", "--comm", "x", "--syscall", " "], "names no syscall"),
    (["watch", "--comm", "x", "--kprobe", ""], "bad --kprobe"),
    (["watch", "--comm", "x", "--json", "/nonexistent/dir/out.jsonl"], "--json"),
    (["bogus"], "unknown command"),
    (["demo", "--wat"], "demo takes only"),
])
def test_bad_arguments_are_one_line_and_status_2(args, needle):
    r = run(*args)
    line = one_line_error(r)
    assert needle in line and r.returncode == 2, (line, r.returncode)


def _cgroup2_root() -> str | None:
    for ln in open("/proc/self/mountinfo"):
        if ln.split(" - ")[1].split()[0] == "cgroup2" and ln.split()[3] == "/":
            return ln.split()[4]
    return None


@pytest.mark.parametrize("args,needle", [
    (["--cgroup", ""], "is the cgroup2 root"),
    (["--cgroup", "."], "is the cgroup2 root"),
    (["--cgroup", "/"], "is the cgroup2 root"),
    (["--cgroup", "ROOT"], "is the cgroup2 root"),
    (["--cgroup", "ROOT/.", "--action", "kernel-signal"], "is the cgroup2 root"),
    (["--uid", "0"], "--uid 0 alone"),
    (["--uid", "root", "--action", "kernel-signal"], "--uid 0 alone"),
])
def test_filters_that_select_everyone_are_refused(args, needle):
    """Refused like no filter (one line, status 2) before anything is loaded."""
    root = _cgroup2_root()
    if "--cgroup" in args and root is None:
        pytest.skip("no cgroup2 mount")
    r = run("watch", *(a.replace("ROOT", root or "") for a in args))
    line = one_line_error(r)
    assert needle in line and "--action report" in line and r.returncode == 2, line


def test_a_bad_rawprobe_json_is_one_line_and_status_2(monkeypatch):
    monkeypatch.setenv("RAWPROBE_JSON", "yes")
    r = run("watch", "--comm", "x")
    line = one_line_error(r)
    assert r.returncode == 2 and "RAWPROBE_JSON='yes'" in line, line


def test_missing_privilege_is_one_line():
    """Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (dropped from the
    bounding set, so the exec'd tool never has them): one line, exit 1."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities from a child")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop capabilities")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([setpriv, "--bounding-set", "-bpf,-perfmon,-sys_admin",
                        sys.executable, "-m", "rawprobe", "watch", "--comm", "x",
                        "--syscall", "write", "--duration", "1s"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT))
    line = one_line_error(r)
    assert r.returncode == 1 and "permission denied" in line and "CAP_BPF" in line, line


# -- with the kernel side -------------------------------------------------------------

def _kernel_side_missing() -> str | None:
    from test_interceptor_e2e import _loader_missing
    return _loader_missing()


needs_kernel = pytest.mark.skipif(_kernel_side_missing() is not None,
                                  reason=str(_kernel_side_missing()))


@needs_kernel
def test_rawprobe_json_1_means_json_lines_on_stdout(monkeypatch):
    """What the container image sets: JSON lines without --json (the summary as
    text on stderr); RAWPROBE_JSON=0 and no --json: text."""
    args = ("watch", "--comm", unique_comm(), "--duration", "100ms")
    monkeypatch.setenv("RAWPROBE_JSON", "1")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line)["event"] for line in r.stdout.splitlines()]
    assert events == ["armed", "summary"] and "summary:" in r.stderr, (r.stdout, r.stderr)
    monkeypatch.setenv("RAWPROBE_JSON", "0")
    r = run(*args)
    assert r.returncode == 0 and not r.stdout.startswith("{") and "summary:" in r.stdout, r.stdout


@needs_kernel
def test_features_runs():
    r = run("features")
    assert r.returncode == 0 and "ring buffer" in r.stdout and "pidfd" in r.stdout, r.stderr


@needs_kernel
def test_a_call_before_the_loop_is_written_out_at_once():
    """A call made between "armed" and the first wait is read by the pump before
    the loop; its events must be written then, not at the next wake-up (here the
    --kill-after deadline, 3 s on).  Run in process so the call lands in exactly
    that window (on_armed is called just before that pump).  The signal goes out
    before the batch is read (RingBuffer.peek), so the batch takes its
    signal_generate record too and nothing is left in the ring to wake the loop:
    under load this used to hold a run's events back until the deadline."""
    from rawprobe.interceptor.cli import run_watch
    from rawprobe.interceptor.options import parse_watch

    comm = unique_comm()
    t = Target(comm, "--ignore-term")
    written: list[tuple[float, str]] = []

    class Stream:
        def write(self, s: str) -> int:
            for line in s.splitlines():
                if line.strip():
                    written.append((time.monotonic(), json.loads(line)["event"]))
            return len(s)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    def armed(_: dict) -> None:
        t.go()
        t.wait_writes_done()           # its call is in the ring buffer now
        written.append((time.monotonic(), "called"))

    try:
        o = parse_watch(["--comm", comm, "--count", "1", "--kill-after", "3s"])
        status, _, _ = run_watch(o, text=None, json_stream=Stream(), summary_stream=None,
                                 on_armed=armed)
    finally:
        t.kill()
    assert status == 0
    when = dict((e, at) for at, e in reversed(written))
    assert when["signal"] - when["called"] < 1.5, written
    assert when["escalate"] - when["called"] > 2.5, written


@needs_kernel
def test_busy_poll_never_sleeps_and_still_signals():
    def cpu_seconds(*args: str) -> float:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        p = subprocess.Popen([sys.executable, "-m", "rawprobe", "watch", "--comm",
                              unique_comm(), "--duration", "1s", "--quiet", *args],
                             stdout=subprocess.DEVNULL, env=env, cwd=str(ROOT))
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = 0
        assert os.waitstatus_to_exitcode(status) == 0
        return ru.ru_utime + ru.ru_stime

    plain, busy = cpu_seconds(), cpu_seconds("--busy-poll")
    # ~1 s spent polling, not sleeping (a quarter of it even on a machine loaded
    # with two other busy tasks per CPU)
    assert busy - plain > 0.25, (plain, busy)

    comm = unique_comm()
    t = Target(comm, "--cleanup-ms", "5")
    try:
        w = Watch("--comm", comm, "--count", "1", "--busy-poll")
        t.go()
        assert w.finish() == 0, w.stderr
        assert w.of("armed")[0]["busy_poll"] is True
        assert w.of("signal", t.pid) and w.of("exit", t.pid)[0]["exit_code"] == 0
    finally:
        t.kill()


@needs_kernel
def test_duration_bounds_the_watch():
    t0 = time.monotonic()
    w = Watch("--comm", unique_comm(), "--duration", "300ms")
    assert w.finish() == 0, w.stderr
    assert 0.3 <= time.monotonic() - t0 < 10
    assert w.of("summary")


@needs_kernel
def test_json_to_a_file_and_text_to_stdout(tmp_path):
    comm = unique_comm()
    t = Target(comm)
    out = tmp_path / "events.jsonl"
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        p = subprocess.Popen([sys.executable, "-m", "rawprobe", "watch", "--comm", comm,
                              "--count", "1", "--json", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        assert p.stdout.readline().startswith("armed:")
        t.go()
        rest, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "intercept" in rest and "summary:" in rest and "time to exit" in rest
        kinds = [json.loads(x)["event"] for x in out.read_text().splitlines()]
        assert kinds[0] == "armed" and kinds[-1] == "summary" and "exit" in kinds
    finally:
        t.kill()


@needs_kernel
def test_kernel_signal_spares_the_tools_ancestors():
    """The tool's parent has the watched comm and calls write(): the kernel withholds
    the signal (protected_tgids), the tool reports a refusal, the parent lives on."""
    comm = unique_comm()
    code = ("import json, os, subprocess, sys; open('/proc/self/comm', 'w').write(sys.argv[1]); "
            "p = subprocess.Popen([sys.executable, '-m', 'rawprobe', 'watch', '--comm', sys.argv[1], "
            "'--action', 'kernel-signal', '--count', '1', '--json'], stdout=subprocess.PIPE, "
            "text=True); p.stdout.readline(); os.write(2, b'a write by the parent\\n'); "
            "out, _ = p.communicate(timeout=30); print(out, end=''); sys.exit(p.returncode)")
    r = subprocess.run([sys.executable, "-c", code, comm], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT), timeout=60)
    assert r.returncode == 0, r.stderr          # the parent was not killed
    ev = [json.loads(x) for x in r.stdout.splitlines()]
    refused = [e for e in ev if e["event"] == "refused"]
    assert refused and "ancestors" in refused[0]["reason"], ev
    assert not [e for e in ev if e["event"] == "signal"]


@needs_kernel
def test_a_comm_that_is_not_utf8_is_matched_byte_for_byte():
    """The kernel's comm is bytes: --comm with bytes that are not UTF-8 (argv brings
    them as surrogates) selects the target with exactly those bytes, and not one that
    differs in a byte that a lossy decoding would hide."""
    tail = unique_comm("").encode()
    mine, other = os.fsdecode(b"rpt\xff\xfe" + tail), os.fsdecode(b"rpt\xff\xfd" + tail)
    a, b = Target(other), Target(mine)
    try:
        with open(f"/proc/{b.pid}/comm", "rb") as f:
            assert f.read() == b"rpt\xff\xfe" + tail + b"\n"
        w = Watch("--comm", mine, "--action", "report", "--count", "1")
        a.go()
        a.wait_writes_done()
        b.go()
        assert w.finish() == 0, w.stderr
        assert {e["pid"] for e in w.of("intercept")} == {b.pid}
    finally:
        a.kill()
        b.kill()


@needs_kernel
def test_the_demo():
    r = run(timeout=60)
    assert r.returncode == 0, r.stderr
    assert "time to exit" in r.stdout and "exit code 143" in r.stdout
    r = run("demo", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    ev = [json.loads(x) for x in r.stdout.splitlines()]
    ex = [e for e in ev if e["event"] == "exit"][0]
    assert ex["exit_code"] == 143 and 250_000 <= ex["time_to_exit_us"] < 400_000
