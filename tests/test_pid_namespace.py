"""watch in a child pid namespace of its own (pod mode), made here with
``unshare --pid --fork --mount-proc`` (tests/test_container.py does it with podman).

The kernel side sees every process by its pid in the initial namespace; the tool
gives it its namespace's inode number, and it leaves out what the tool cannot see
and reports the rest by the pids the tool sees (intercept.bpf.c, ns_nr).  Each
test runs, under one comm, a target on the host (never reported, never
signalled, alive at the end) and one in the namespace (intercepted, signalled
and timed by its pid there, which it writes down).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import ROOT, SLOW, Watch, targets, unique_comm  # noqa: E402,F401

TARGET = str(Path(__file__).parent / "targets" / "target.py")
UNSHARE = shutil.which("unshare")

needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None,
    reason="needs root (BPF, unshare --pid)" if os.geteuid() != 0 else "needs unshare (util-linux)")


def pod_script(comm: str, tmp: str, python: str, target: str, watch: str) -> str:
    """``sh -c`` script of a pid namespace's pid 1: a target named ``comm`` waits
    for "go" on the fifo ``tmp``/go (writing its pid to ``tmp``/pid) while sh
    becomes the tool (``watch``: its command line)."""
    return (f"sh -c 'echo $$ >{tmp}/pid; exec {python} -S {target} --comm {comm} "
            f"--wait-go --writes 3 --cleanup-ms 50' <{tmp}/go >/dev/null & exec {watch}")


def make_fifo(tmp: Path) -> None:
    """``tmp``/go, which pod_script's target and any user may use."""
    tmp.chmod(0o777)                      # a container's user writes its pid there
    os.mkfifo(tmp / "go")
    os.chmod(tmp / "go", 0o666)


def check_pod_mode(w: Watch, outside, tmp: Path) -> None:
    """The target ``outside`` the namespace makes three matching calls and is never
    seen; then the one inside (pod_script) is intercepted, signalled and timed by
    its pid inside."""
    assert w.armed["pid"] == 1
    outside.go()
    outside.wait_writes_done()
    with open(tmp / "go", "w") as f:
        f.write("go\n")
    assert w.finish() == 0, w.stderr
    (hit,) = w.of("intercept")
    (sig,) = w.of("signal")
    (ex,) = w.of("exit")
    inside = int((tmp / "pid").read_text())
    assert hit["pid"] == hit["tid"] == sig["pid"] == ex["pid"] == inside, w.events
    assert inside < 100 and inside != outside.pid     # the namespace's, not the host's
    assert ex["escalated"] is False and 50_000 <= ex["time_to_exit_us"] < 2_000_000, ex
    assert not w.of("refused") and not w.of("error"), w.events
    assert outside.alive(), "a process outside the namespace was signalled"


@needs_unshare
@pytest.mark.parametrize("action", ["signal", "kernel-signal"])
def test_only_the_namespaces_processes_are_seen_by_their_pids_there(targets, tmp_path,
                                                                     action):
    comm = unique_comm()
    outside = targets(comm, "--writes", "3")
    make_fifo(tmp_path)
    watch = f"{sys.executable} -m rawprobe watch --comm {comm} --json --count 1 --action {action}"
    w = Watch(command=[UNSHARE, "--pid", "--fork", "--mount-proc", "sh", "-c",
                       pod_script(comm, str(tmp_path), sys.executable, TARGET, watch)])
    check_pod_mode(w, outside, tmp_path)


@needs_unshare
def test_a_proc_of_another_namespace_is_refused_in_one_line():
    """unshare --pid without --mount-proc: /proc is still the host's, whose pids
    are not the ones the tool sees."""
    r = subprocess.run([UNSHARE, "--pid", "--fork", sys.executable, "-m", "rawprobe", "watch",
                        "--comm", unique_comm()], capture_output=True, text=True, timeout=60 * SLOW, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "/proc belongs to another pid namespace" in lines[0] and "--mount-proc" in lines[0]


def test_a_kernel_without_what_translation_reads_is_refused_in_one_line(monkeypatch):
    """Only where the kernel's BTF lacks struct pid's numbers[] (or the rest ns_nr
    reads) does a child pid namespace refuse; the initial one never asks."""
    from rawprobe import container, features
    from rawprobe.errors import NotSupportedError
    from rawprobe.interceptor import preflight
    lacking = features.Feature("pid namespace translation", False,
                               "struct pid has no numbers in the kernel's BTF")
    monkeypatch.setattr(features, "pid_namespaces", lambda: lacking)
    monkeypatch.setattr(container, "pid_namespace_inode", lambda: container.PROC_PID_INIT_INO)
    assert preflight.pid_namespace() == 0
    monkeypatch.setattr(container, "pid_namespace_inode", lambda: 4026532999)
    monkeypatch.setattr(container, "proc_is_own_pid_namespace", lambda: True)
    with pytest.raises(NotSupportedError) as e:
        preflight.pid_namespace()
    msg = str(e.value)
    assert "\n" not in msg and "struct pid has no numbers" in msg and "--pid=host" in msg
    monkeypatch.setattr(features, "pid_namespaces", lambda: features.Feature("", True, ""))
    assert preflight.pid_namespace() == 4026532999
