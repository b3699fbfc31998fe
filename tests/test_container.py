"""rawprobe's container image, run for real with podman (README, "Containers").

The image (``make image``; CI: ``make base-image && make image
BASE=localhost/rawprobe-base``) is run the least-privileged way: as its own
non-root user, ``--cap-drop=ALL --cap-add=BPF,PERFMON`` (+ KILL only to signal
other users' processes), a read-only root file system, no tracefs, never
``--privileged``, under a seccomp profile that lets bpf(2) through with
CAP_BPF (deploy/seccomp.py: podman's own default allows it only with
CAP_SYS_ADMIN).  Host mode (``--pid=host``) intercepts, signals and times a
process of the host started here; pod mode (a pid namespace of its own) only
the container's processes, by their pids there.

Skipped without podman or without the image (with the command that builds
it), or when the image was built from other sources than this checkout's
(deploy/source_key.py); RAWPROBE_CONTAINER_TESTS=required (CI) turns those
skips into failures.  RAWPROBE_IMAGE names another image.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "targets"))
sys.path.insert(0, str(ROOT / "deploy"))
from harness import Watch, targets, unique_comm  # noqa: E402,F401
from source_key import source_key  # noqa: E402
from test_pid_namespace import check_pod_mode, make_fifo, pod_script  # noqa: E402

PODMAN = shutil.which("podman")
REQUIRED = os.environ.get("RAWPROBE_CONTAINER_TESTS") == "required"
IMAGE_USER = 10001                      # deploy/Containerfile
BUILD_HINT = "make base-image && make image BASE=localhost/rawprobe-base"
TRACEFS = "/sys/kernel/tracing"
KUBE = ROOT / "deploy" / "kubernetes"


def _version() -> str:
    import tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


IMAGE = os.environ.get("RAWPROBE_IMAGE") or f"rawprobe:{_version()}"


def _unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why} (RAWPROBE_CONTAINER_TESTS=required)")
    pytest.skip(why)


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> dict:
    """The image's configuration (``podman image inspect``), once it is known to be
    this checkout's."""
    if os.geteuid() != 0:
        pytest.skip("needs root: rootless podman cannot hand CAP_BPF to a container")
    if PODMAN is None:
        _unavailable("needs podman (and runc) to run containers")
    r = _podman("image", "inspect", IMAGE)
    if r.returncode != 0:
        _unavailable(f"no image {IMAGE}: build it with `{BUILD_HINT}`")
    info = json.loads(r.stdout)[0]
    key = (info["Config"].get("Labels") or {}).get("rawprobe.source-key")
    if key != source_key():
        _unavailable(f"{IMAGE} was built from other sources than this checkout's: "
                     f"rebuild it with `{BUILD_HINT}`")
    return info


@pytest.fixture(scope="module")
def seccomp(tmp_path_factory) -> str:
    """deploy/seccomp.py's profile: podman's default, bpf(2) allowed under CAP_BPF."""
    path = tmp_path_factory.mktemp("seccomp") / "rawprobe-seccomp.json"
    r = subprocess.run([sys.executable, str(ROOT / "deploy" / "seccomp.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path.write_text(r.stdout)
    return str(path)


@pytest.fixture
def run(image):
    """``run(*podman_options, args=[...])``: ``podman run`` of the image, named so it
    can be removed even when the client is killed; every container started is
    removed at the end."""
    names: list[str] = []

    def command(*options: str, args: list[str]) -> list[str]:
        names.append(f"rawprobe-test-{secrets.token_hex(4)}")
        return [PODMAN, "run", "--rm", "--name", names[-1], *options, IMAGE, *args]

    yield command
    for name in names:
        _podman("rm", "--force", "--time", "0", "--ignore", name)


def least(seccomp: str, *caps: str) -> list[str]:
    """The documented way to run it: only these capabilities, a read-only root
    file system, no new privileges, the seccomp profile."""
    return ["--cap-drop=ALL", *(f"--cap-add={c}" for c in caps), "--read-only",
            "--security-opt", "no-new-privileges", "--security-opt", f"seccomp={seccomp}"]


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    return lines[0]


def features(run, *options: str) -> dict[str, tuple[str, str]]:
    """``features`` in a container: name -> (answer, detail)."""
    r = subprocess.run(run(*options, args=["features"]), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+(?: \S+)*) {2,}(yes|ok|no) +(.*)$", line)
        if m:
            rows[m[1]] = (m[2], m[3])
    return rows


# -- the image --------------------------------------------------------------------

def test_image_runs_python_m_rawprobe_as_its_own_user_with_json_lines(image, run):
    cfg = image["Config"]
    assert cfg["Entrypoint"] == ["python3", "-m", "rawprobe"]
    assert cfg["User"] == f"{IMAGE_USER}:{IMAGE_USER}"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["RAWPROBE_JSON"] == "1" and env["RAWPROBE_CACHE_DIR"] == "/var/cache/rawprobe"
    # no compiler, no kernel or libbpf headers
    r = subprocess.run(run("--entrypoint", "sh", args=[
        "-c", "id -u; for c in cc gcc clang clang-19; do command -v $c; done; "
              "ls /usr/include/linux/bpf.h /usr/include/bpf 2>/dev/null; true"]),
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == [str(IMAGE_USER)], r.stdout + r.stderr


def test_features_say_what_the_container_lacks(image, run, seccomp):
    """Nothing granted: the capabilities, CAP_KILL, tracefs and the cache are
    named as missing, each with what to add."""
    bare = features(run, "--cap-drop=ALL", "--read-only")
    assert bare["capabilities"][0] == "no" and "CAP_BPF and CAP_PERFMON" in bare["capabilities"][1]
    assert bare["signalling"][0] == "no" and "--cap-add=KILL" in bare["signalling"][1]
    assert bare["pid namespace"][1].startswith("its own")
    assert bare["tracefs"][0] == "no" and f"-v {TRACEFS}:{TRACEFS}" in bare["tracefs"][1]
    assert bare["cache"][0] == "no" and "not writable" in bare["cache"][1]
    assert bare["ring buffer map"][0] == "no" and "lacks CAP_BPF" in bare["ring buffer map"][1]
    # podman's own seccomp profile refuses bpf(2) although the capabilities are there
    default = features(run, "--cap-drop=ALL", "--cap-add=BPF,PERFMON", "--pid=host")
    assert default["capabilities"][0] == "ok"
    assert default["seccomp"][0] == "no" and "refuses bpf(2)" in default["seccomp"][1]
    assert "seccomp filter refuses it" in default["ring buffer map"][1]
    # the documented way, with a cache volume: all there but tracefs
    volume = f"rawprobe-test-cache-{secrets.token_hex(4)}"
    try:
        good = features(run, *least(seccomp, "BPF,PERFMON,KILL"), "--pid=host",
                        "-v", f"{volume}:/var/cache/rawprobe")
    finally:
        _podman("volume", "rm", "--force", volume)
    for name in ("capabilities", "signalling", "seccomp", "pid namespace", "cache",
                 "raw tracepoints", "ring buffer map", "bpf_send_signal", "pidfd"):
        assert good[name][0] in ("ok", "yes"), (name, good[name])


# -- host mode, least privilege -------------------------------------------------------

def test_host_mode_intercepts_signals_and_times_a_host_process(run, seccomp, targets):
    """The host's process (root's), watched from the container as uid 10001 with
    CAP_BPF, CAP_PERFMON and CAP_KILL only, on a read-only root file system and
    without a cache: JSON lines by default, the host's pid in every event."""
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "100")
    w = Watch(command=run("--pid=host", *least(seccomp, "BPF,PERFMON,KILL"),
                          args=["watch", "--comm", comm, "--count", "1"]), timeout=60)
    assert w.armed["hook"].startswith("raw_tp")
    t.go()
    assert w.finish() == 0, w.stderr
    (hit,) = w.of("intercept")
    (sig,) = w.of("signal")
    (ex,) = w.of("exit")
    assert hit["pid"] == sig["pid"] == ex["pid"] == t.pid and hit["comm"] == comm
    assert sig["signal"] == "SIGTERM" and ex["escalated"] is False
    assert 100_000 <= ex["time_to_exit_us"] < 2_000_000, ex
    assert not t.alive()
    assert w.summary()["counts"]["exited"] == 1


def test_without_cap_kill_only_the_users_own_processes_are_signalled(run, seccomp, targets):
    """No CAP_KILL: root's process is refused (the kernel's rule) and lives on; the
    process of the container's user (uid 10001 on the host too) is signalled."""
    comm = unique_comm()
    theirs = targets(comm)
    own = targets(comm, "--cleanup-ms", "50", uid=IMAGE_USER, python="/usr/bin/python3")
    w = Watch(command=run("--pid=host", *least(seccomp, "BPF,PERFMON"),
                          args=["watch", "--comm", comm, "--count", "2"]), timeout=60)
    theirs.go()
    refused = w._until("refused")
    assert refused["pid"] == theirs.pid and refused["reason"].startswith("not permitted")
    own.go()
    w.finish()
    assert theirs.alive(), "another user's process was signalled"
    assert w.of("signal", own.pid) and w.of("exit", own.pid) and not own.alive(), w.events


# -- pod mode: a pid namespace of its own ---------------------------------------------

def test_pod_mode_sees_only_the_containers_processes_by_their_pids_there(run, seccomp, targets,
                                                                         tmp_path):
    """No --pid=host: a host process under the watched comm makes matching calls
    and is never reported nor signalled; the container's own process is
    intercepted, signalled and timed by its pid there.  Both the tool and it run
    as uid 10001: no CAP_KILL."""
    comm = unique_comm()
    outside = targets(comm, "--writes", "3")
    make_fifo(tmp_path)
    script = pod_script(comm, "/go", "python3", "/targets/target.py",
                        f"python3 -m rawprobe watch --comm {comm} --count 1")
    w = Watch(command=run(*least(seccomp, "BPF,PERFMON"), "--entrypoint", "sh",
                          "-v", f"{ROOT / 'tests' / 'targets'}:/targets:ro",
                          "-v", f"{tmp_path}:/go", args=["-c", script]), timeout=60)
    check_pod_mode(w, outside, tmp_path)


def test_cgroup_filter_in_a_private_cgroup_namespace(run, seccomp, tmp_path):
    """--cgroupns=private: the container's cgroup namespace is rooted at its own
    cgroup (levels below the hierarchy's root: podman's libpod_parent/ID), and a
    cgroup2 mounted there shows paths from that root.  --cgroup /cg/inner must
    still select inner's processes (BPF counts levels from the real root).  The
    tool runs as root with CAP_SYS_ADMIN for the mount, which only the test needs."""
    comm = unique_comm()
    make_fifo(tmp_path)
    mount = "from rawprobe._sys.fs import mount; mount('none', '/cg', 'cgroup2')"
    # the mount and the cgroup first (a `&` would take them into the background too)
    script = (f'python3 -c "{mount}" && mkdir /cg/inner || exit 1; '
              "sh -c 'echo $$ >/cg/inner/cgroup.procs; echo $$ >/go/pid; exec python3 -S "
              f"/targets/target.py --comm {comm} --wait-go --cleanup-ms 50' </go/go >/dev/null & "
              f"exec python3 -m rawprobe watch --cgroup /cg/inner --comm {comm} --count 1")
    w = Watch(command=run(*least(seccomp, "BPF,PERFMON,KILL,SYS_ADMIN"), "--user", "0",
                          "--cgroupns=private", "--tmpfs", "/cg", "--entrypoint", "sh",
                          "-v", f"{ROOT / 'tests' / 'targets'}:/targets:ro",
                          "-v", f"{tmp_path}:/go", args=["-c", script]), timeout=60)
    with open(tmp_path / "go", "w") as f:
        f.write("go\n")
    assert w.finish() == 0, w.stderr
    inside = int((tmp_path / "pid").read_text())
    assert [e["pid"] for e in w.events if e["event"] in ("intercept", "signal", "exit")] \
        == [inside] * 3, w.events


@pytest.mark.parametrize("caps,lacking", [("BPF", "CAP_PERFMON"), ("PERFMON", "CAP_BPF"),
                                          ("KILL", "CAP_BPF and CAP_PERFMON")])
def test_a_missing_capability_fails_in_one_line_naming_it(run, seccomp, caps, lacking):
    r = subprocess.run(run("--pid=host", *least(seccomp, caps),
                           args=["watch", "--comm", unique_comm()]),
                       capture_output=True, text=True, timeout=120)
    line = one_line(r)
    assert r.returncode == 1 and f"lacks {lacking}:" in line and "--cap-add" in line, line


def test_the_runtimes_default_seccomp_profile_is_named_in_one_line(run):
    r = subprocess.run(run("--pid=host", "--cap-drop=ALL", "--cap-add=BPF,PERFMON",
                           args=["watch", "--comm", unique_comm()]),
                       capture_output=True, text=True, timeout=120)
    line = one_line(r)
    assert r.returncode == 1 and "seccomp filter refuses it" in line, line
    assert "Containers" in line, line


def test_only_the_tracepoint_hook_needs_tracefs(run, seccomp):
    """The default hook ran above without tracefs; --hook tracepoint says in one line
    what it needs, and runs with the host's tracefs bound in, as uid 0 (tracefs is
    root's; no capability more)."""
    args = ["watch", "--comm", unique_comm(), "--hook", "tracepoint", "--duration", "1s"]
    r = subprocess.run(run("--pid=host", *least(seccomp, "BPF,PERFMON"), args=args),
                       capture_output=True, text=True, timeout=120)
    line = one_line(r)
    assert r.returncode == 1 and "tracefs" in line and f"-v {TRACEFS}:{TRACEFS}" in line, line
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        pytest.skip(f"the host has no tracefs at {TRACEFS} to bind in")
    r = subprocess.run(run("--pid=host", *least(seccomp, "BPF,PERFMON"), "--user", "0",
                           "-v", f"{TRACEFS}:{TRACEFS}:ro", args=args),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    armed = json.loads(r.stdout.splitlines()[0])
    assert armed["event"] == "armed" and armed["hook"].startswith("tracepoint"), armed


# -- deploy/kubernetes under podman kube play -------------------------------------------

@pytest.fixture
def kube(image, seccomp, tmp_path):
    """``kube(name, replace)``: deploy/kubernetes/NAME.yaml, its ``replace`` pairs
    applied, played; every manifest played is taken down at the end.  The
    seccomp profile is where the manifests' Localhost profile names it."""
    played: list[Path] = []

    def play(name: str, replace: list[tuple[str, str]] = ()) -> Path:
        text = (KUBE / f"{name}.yaml").read_text()
        pinned = f"image: localhost/rawprobe:{_version()}"
        assert pinned in text, f"{name}.yaml does not name the image of this version"
        for old, new in [(pinned, f"image: {IMAGE}"), *replace]:
            assert text.count(old) >= 1, (name, old)
            text = text.replace(old, new)
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        played.append(path)
        r = _podman("kube", "play", "--seccomp-profile-root", str(Path(seccomp).parent),
                    str(path))
        assert r.returncode == 0, r.stderr
        return path

    yield play
    for path in played:
        _podman("kube", "down", str(path))


def _logs(container: str, until: str, timeout: float = 60) -> list[dict]:
    """The container's JSON lines, once one of event ``until`` is among them."""
    end = time.monotonic() + timeout
    while True:
        r = _podman("logs", container)
        events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        if any(e["event"] == until for e in events) or time.monotonic() > end:
            return events
        time.sleep(0.2)


def test_kube_sidecar_watches_its_pods_app_by_its_pid_there(kube):
    """sidecar.yaml as it is: pod mode in a pod sharing its pid namespace; the app
    (the demo target, 250 ms of cleanup) is intercepted, signalled and timed."""
    kube("sidecar")
    events = _logs("rawprobe-sidecar-rawprobe", "summary")
    by = {e["event"]: e for e in events}
    assert {"armed", "intercept", "signal", "exit", "summary"} <= set(by), events
    assert by["intercept"]["comm"] == "demo-app" and by["intercept"]["pid"] < 100
    assert by["exit"]["exit_code"] == 143 and by["exit"]["escalated"] is False
    assert 250_000 <= by["exit"]["time_to_exit_us"] < 2_000_000, by["exit"]
    r = _podman("inspect", "--format", "{{.State.ExitCode}}", "rawprobe-sidecar-rawprobe")
    assert r.stdout.strip() == "0", r.stdout


HOST_TEMPLATES = pytest.mark.parametrize("name,kind,container", [
    ("daemonset", "DaemonSet", "rawprobe-pod-0-rawprobe"),
    ("job", "Job", "rawprobe-once-pod-0-rawprobe")])
# Run by `podman exec` in the tool's container: prints its pid, takes the watched comm
# (that write to /proc is still python3's), then makes the watched call and waits.
EXEC_TARGET = ("import os, sys, time; print(os.getpid(), flush=True); "
               "open('/proc/self/comm', 'w').write(sys.argv[1]); os.write(1, b'call'); "
               "time.sleep(30)")


@HOST_TEMPLATES
def test_kube_templates_intercept_a_process_in_their_container(kube, name, kind, container):
    """daemonset.yaml's and job.yaml's pod templates, played as a Deployment, with
    the target started inside the tool's own container (``podman exec``): there
    it is in the tool's pid namespace whether or not podman honours hostPID
    (4.3 does not), so CI checks on any podman that the templates as written
    intercept, signal and time, in the JSON lines of the container's log."""
    comm = unique_comm()
    kube(name, [(f"kind: {kind}\n", "kind: Deployment\n"),
                ('"--comm", "java"', f'"--comm", "{comm}"')])
    events = _logs(container, "armed")
    assert events and events[0]["event"] == "armed", events
    r = _podman("exec", container, "python3", "-S", "-c", EXEC_TARGET, comm, timeout=60)
    assert r.returncode == 128 + 15, (r.returncode, r.stdout, r.stderr)   # SIGTERM
    pid = int(r.stdout.split()[0])
    events = _logs(container, "exit")
    by = {e["event"]: e for e in events if e.get("pid") == pid}
    assert by["intercept"]["comm"] == comm and by["signal"]["signal"] == "SIGTERM", events
    assert by["exit"]["killed_by"] == "SIGTERM" and by["exit"]["escalated"] is False, events
    assert 0 < by["exit"]["time_to_exit_us"] < 2_000_000, by["exit"]


@HOST_TEMPLATES
def test_kube_host_mode_templates(kube, targets, name, kind, container):
    """daemonset.yaml's and job.yaml's pod templates, played as a Deployment (podman
    4.3 plays Pods and Deployments only): they arm as uid 10001 with CAP_BPF,
    CAP_PERFMON and CAP_KILL only, a read-only root and no new privileges, and
    intercept, signal and time a host process where podman honours hostPID."""
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "50")
    kube(name, [(f"kind: {kind}\n", "kind: Deployment\n"),
                ('"--comm", "java"', f'"--comm", "{comm}"')])
    events = _logs(container, "armed")
    assert events and events[0]["event"] == "armed", events
    r = _podman("inspect", "--format", "{{.Config.User}}|{{.HostConfig.ReadonlyRootfs}}|"
                "{{.HostConfig.SecurityOpt}}|{{.EffectiveCaps}}|{{.HostConfig.PidMode}}", container)
    user, ro, opts, caps, pid_mode = r.stdout.strip().split("|")
    assert (user, ro) == ("10001:10001", "true") and "no-new-privileges" in opts, r.stdout
    assert caps == "[CAP_BPF CAP_KILL CAP_PERFMON]", r.stdout
    if pid_mode != "host":
        version = _podman("version", "--format", "{{.Client.Version}}").stdout.strip()
        pytest.skip(f"podman {version} kube play ignores hostPID (it honours it from 4.5 "
                    "on): the template armed with its privileges, in a pid namespace of its "
                    "own here, where the host's process cannot be seen")
    t.go()
    events = _logs(container, "exit")
    assert [e["pid"] for e in events if e["event"] in ("signal", "exit")] == [t.pid] * 2, events
