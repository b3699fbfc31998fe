"""rawprobe as a user who is not root but holds CAP_BPF + CAP_PERFMON.

Such a user runs the demo and ``watch`` end to end and signals their own
processes (the kernel needs no CAP_KILL for those: kill_ok_by_cred in
kernel/signal.c); another user's process is refused "not permitted" and left
alone.  The tool runs as uid 65534 with the two capabilities as ambient
capabilities (util-linux ``setpriv``), the way a service would be given them.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rawprobe.caps import CAP_BPF, CAP_KILL, CAP_PERFMON, CAP_SYS_ADMIN

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "targets"))
from harness import Target, Watch, unique_comm  # noqa: E402
from test_cli import needs_kernel  # noqa: E402

USER = 65534                     # nobody
CLEANUP_MS = 250                 # the demo target's cleanup after SIGTERM (interceptor/demo.py)
KILL_AFTER_MS = 2000             # the demo's SIGKILL deadline
NOT_PERMITTED = "not permitted"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start processes as another user"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]


def as_user(uid: int = USER, caps: str = "+bpf,+perfmon") -> list[str]:
    """setpriv: run as ``uid`` (all uids and gids, no other groups) with ``caps``
    inheritable and ambient, so they survive the exec of python."""
    return [shutil.which("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}"]


class User:
    """How to run rawprobe as USER: ``env`` (a cache directory of its own, never
    /var/cache/rawprobe) and ``python``, an interpreter USER may run (the one
    running the tests may sit in root's home)."""

    def __init__(self, env: dict[str, str], python: str) -> None:
        self.env = env
        self.python = python

    def run(self, *args: str, env: dict[str, str] | None = None, uid: int = USER,
            caps: str = "+bpf,+perfmon", cwd: str = str(ROOT)) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user(uid, caps), self.python, *args], capture_output=True,
                              text=True, env=self.env if env is None else env, cwd=cwd,
                              timeout=60)


# What the tool needs of its interpreter as USER: rawprobe and cffi's backend
# importable, and starting another interpreter (the demo starts its target so).
_USABLE = ("import subprocess, sys, rawprobe._sys._native; "
           "sys.exit(subprocess.run([sys.executable, '-S', '-c', '0']).returncode)")


@pytest.fixture
def user():
    cache = tempfile.mkdtemp(prefix="rawprobe-user-cache-")
    os.chown(cache, USER, USER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAWPROBE_CACHE_DIR=cache)
    try:
        tried = []
        for python in dict.fromkeys([sys.executable, shutil.which("python3", path="/usr/bin:/bin")]):
            if python is None:
                continue
            u = User(env, python)
            r = u.run("-c", _USABLE)
            if r.returncode == 0:
                break
            tried.append(f"{python}: {r.stderr.strip()[-200:]}")
        else:
            pytest.skip(f"no interpreter uid {USER} can run rawprobe from this checkout with: "
                        + "; ".join(tried))
        # setpriv gave what the tests are about: that user, the two capabilities only
        r = u.run("-c", "print(open('/proc/self/status').read())")
        status = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
        assert status["Uid"].split() == [str(USER)] * 4, status["Uid"]
        eff = int(status["CapEff"], 16)
        assert eff >> CAP_BPF & 1 and eff >> CAP_PERFMON & 1, hex(eff)
        assert not eff >> CAP_KILL & 1 and not eff >> CAP_SYS_ADMIN & 1, hex(eff)
        yield u
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _events(stdout: str) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for line in stdout.splitlines():
        if line.strip():
            e = json.loads(line)
            by.setdefault(e["event"], []).append(e)
    return by


@needs_kernel
@pytest.mark.parametrize("action,cache", [("signal", "own"), ("kernel-signal", "none")])
def test_the_demo_runs_as_a_capability_holder(user, action, cache) -> None:
    """The whole demo: its target is the user's own, signalled and timed.
    ``cache``: own -- a cache directory of the user's; none -- a home the user
    cannot write (nobody's /nonexistent): the cache is skipped, nothing fails."""
    env = dict(user.env)
    if cache == "none":
        del env["RAWPROBE_CACHE_DIR"]
        env.pop("XDG_CACHE_HOME", None)
        env["HOME"] = "/nonexistent"
    args = ["demo", "--json"] + (["--kernel-signal"] if action == "kernel-signal" else [])
    r = user.run("-m", "rawprobe", *args, env=env)
    assert r.returncode == 0, f"demo exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    by = _events(r.stdout)
    (hit,) = by["intercept"]
    (sig,) = by["signal"]
    (ex,) = by["exit"]
    assert sig["pid"] == ex["pid"] == hit["pid"] and sig["signal"] == "SIGTERM"
    assert ex["escalated"] is False and ex["exit_code"] == 143
    assert CLEANUP_MS * 1000 <= ex["time_to_exit_us"] < KILL_AFTER_MS * 1000
    assert not by.get("refused") and not by.get("error"), by
    if cache == "own":       # the caches were written, as the user
        files = list(Path(user.env["RAWPROBE_CACHE_DIR"]).iterdir())
        assert files and all(f.stat().st_uid == USER for f in files), files


@needs_kernel
@pytest.mark.parametrize("action", ["signal", "kernel-signal"])
def test_watch_signals_the_users_own_process(user, action) -> None:
    comm = unique_comm()
    t = Target(comm, "--cleanup-ms", "100", uid=USER, python=user.python)
    try:
        w = Watch("--comm", comm, "--count", "1", "--action", action,
                  run_as=as_user(), env=user.env, python=user.python)
        t.go()
        assert w.finish() == 0, w.stderr
        (sig,) = w.of("signal", t.pid)
        (ex,) = w.of("exit", t.pid)
        assert sig["signal"] == "SIGTERM" and ex["escalated"] is False
        assert 100_000 <= ex["time_to_exit_us"] < 2_000_000, ex
        assert not w.of("refused") and not w.of("error"), w.events
        assert not t.alive()
    finally:
        t.kill()


@needs_kernel
@pytest.mark.parametrize("action", ["signal", "kernel-signal", "auto"])
def test_another_users_process_is_refused_and_left_alone(user, action) -> None:
    """Two targets with the same comm, root's and the user's: root's is refused
    with one reason (the kernel said EPERM) and lives on; the user's is handled.
    With kernel-signal the BPF program keeps the same rule (bpf_send_signal itself
    would signal anyone): it leaves root's process to the tool, which is refused."""
    comm = unique_comm()
    theirs = Target(comm)                            # root's
    own = Target(comm, "--cleanup-ms", "100", uid=USER, python=user.python)
    try:
        w = Watch("--comm", comm, "--count", "2", "--action", action,
                  run_as=as_user(), env=user.env, python=user.python)
        theirs.go()
        refused = w._until("refused")
        assert refused["pid"] == theirs.pid, refused
        assert refused["reason"].startswith(NOT_PERMITTED), refused
        own.go()
        w.finish()
        assert "Traceback" not in w.stderr, w.stderr
        assert [e["reason"] for e in w.of("refused")] == [refused["reason"]]
        assert not w.of("signal", theirs.pid) and not w.of("error"), w.events
        assert theirs.alive(), "another user's process was signalled"
        assert w.of("signal", own.pid) and w.of("exit", own.pid), w.events
        assert not own.alive()
    finally:
        theirs.kill()
        own.kill()


def test_tracefs_out_of_reach_is_said_so(user) -> None:
    """tracefs is root-only by default: the tracepoint hook says that, instead of
    "not mounted" and advice to mount it."""
    from rawprobe.link.tracefs import TRACEFS
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        pytest.skip(f"tracefs is not mounted at {TRACEFS}")
    if os.stat(TRACEFS).st_mode & stat.S_IXOTH:
        pytest.skip(f"{TRACEFS} is open to other users here")
    r = user.run("-m", "rawprobe", "watch", "--comm", unique_comm(), "--hook", "tracepoint",
                 "--duration", "1s")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "permission denied" in lines[0] and "root-only" in lines[0], lines[0]
    assert "mount" not in lines[0], lines[0]


@needs_kernel
def test_auto_hook_passes_over_a_root_only_tracefs_and_says_why(user, missing_feature) -> None:
    """--hook auto as this user: the syscall's tracepoint is out of reach (tracefs is
    root-only), so the next hook, and the armed line says why.  Where neither fentry
    nor kprobes work (this project's machine) that is the sys_enter raw tracepoint."""
    from rawprobe.link.tracefs import TRACEFS
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        pytest.skip(f"tracefs is not mounted at {TRACEFS}")
    if os.stat(TRACEFS).st_mode & stat.S_IXOTH:
        pytest.skip(f"{TRACEFS} is open to other users here")
    for feature in ("fentry", "kprobes"):
        if missing_feature(feature) is None:
            pytest.skip(f"{feature} works here: auto takes it before the tracepoint")
    w = Watch("--comm", unique_comm(), "--duration", "1s", run_as=as_user(), env=user.env,
              python=user.python)
    assert w.finish() == 0, w.stderr
    assert w.armed["hook"].startswith("raw_tp sys_enter"), w.armed
    reason = w.armed["hook_reason"]
    assert reason.startswith("auto: every syscall runs it"), reason
    assert "; tracepoint: " in reason and "root-only" in reason.split("; tracepoint: ")[1], reason


def _has_passwd(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def test_no_cache_dir_without_an_absolute_home(user) -> None:
    """A uid with no passwd entry and no $HOME has "~" for a home, and a relative
    XDG_CACHE_HOME is invalid: the cache is off, never under the cwd."""
    uid = next(u for u in range(40000, 41000) if not _has_passwd(u))
    code = "from rawprobe._cache import cache_dir; print(cache_dir())"
    env = {k: v for k, v in user.env.items()
           if k not in ("HOME", "XDG_CACHE_HOME", "RAWPROBE_CACHE_DIR")}
    for extra, want in [({}, "None"), ({"XDG_CACHE_HOME": "rel"}, "None"),
                        ({"XDG_CACHE_HOME": "rel", "HOME": "/h"}, "/h/.cache/rawprobe"),
                        ({"XDG_CACHE_HOME": "/x"}, "/x/rawprobe")]:
        r = user.run("-c", code, env={**env, **extra}, uid=uid, caps="-all", cwd="/")
        assert r.returncode == 0 and r.stdout.strip() == want, (extra, r.stdout, r.stderr)
