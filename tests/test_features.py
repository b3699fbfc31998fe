"""Feature probes: they tell the truth about this kernel, are cached, leak nothing."""
from __future__ import annotations

import errno
import json
import os

import pytest

from rawprobe import features
from rawprobe.errors import PermissionDeniedError, SyscallError

pytestmark = pytest.mark.usefixtures("bpf_privileges")

NAMES = {"BTF", "raw tracepoints", "tp_btf", "kprobe PMU", "tracefs kprobe_events",
         "uprobe PMU", "tracefs uprobe_events", "fentry/fexit", "ring buffer map",
         "bpf_send_signal", "BPF cookie", "syscall wrapper", "pidfd",
         "BPF_LINK_CREATE tracepoint",
         "BPF_LINK_CREATE kprobe", "BPF_LINK_CREATE uprobe", "BPF_LINK_CREATE tp_btf",
         "BPF_LINK_CREATE fentry", "kprobe.multi", "uprobe.multi", "BPF LSM",
         "fmod_ret on security_*",
         "pid namespace translation"}
# What a container may take away (rawprobe.container), after the kernel's lines.
PROCESS_NAMES = {"capabilities", "signalling", "seccomp", "pid namespace", "tracefs", "cache"}


def clear_caches() -> None:
    for probe in features.PROBES:
        probe.cache_clear()


def test_report_shape_and_no_leaks():
    clear_caches()
    # The kernel BTF index stays mapped for the process (rawprobe.btf.kernel
    # caches it on purpose); map it before counting.
    from rawprobe.btf.kernel import KernelBTF
    KernelBTF.load()
    before = set(os.listdir("/proc/self/fd"))
    rows = features.report()
    assert set(os.listdir("/proc/self/fd")) == before
    assert {name for name, _, _ in rows} == NAMES
    for name, ok, detail in rows:
        assert isinstance(ok, bool) and detail and "\n" not in detail, name


def test_probes_are_cached():
    assert features.ringbuf() is features.ringbuf()
    assert bool(features.ringbuf()) == features.ringbuf().supported


def test_pmus_follow_the_kernel_config(kernel_config):
    # The kernel's build configuration is the oracle, not the sysfs files the
    # probes themselves look at: CONFIG_{K,U}PROBE_EVENTS give the PMUs (4.17+).
    for option, probe in (("CONFIG_KPROBE_EVENTS", features.kprobe_pmu),
                          ("CONFIG_UPROBE_EVENTS", features.uprobe_pmu)):
        assert probe().supported == (kernel_config.get(option) == "y"), (option, probe())


def test_what_every_kernel_here_has():
    # Both kernels rawprobe is tested on (6.18 here, Debian's 6.1 in the VM).
    for probe in (features.btf, features.raw_tracepoint, features.tp_btf,
                  features.ringbuf, features.send_signal, features.bpf_cookie,
                  features.pidfd, features.link_perf_tracepoint, features.pid_namespaces):
        assert probe().supported, probe()


def test_syscall_wrapper_follows_kallsyms():
    if os.uname().machine != "x86_64":
        pytest.skip("the symbol checked here is x86-64's")
    with open("/proc/kallsyms") as f:
        has = any(line.rstrip("\n").endswith(" __x64_sys_bpf") for line in f)
    assert features.syscall_wrapper().supported == has


def test_kprobes_follow_the_kernel(kernel_config):
    has = kernel_config.get("CONFIG_KPROBE_EVENTS") == "y"
    assert features.kprobe_pmu().supported == has
    if any(os.path.ismount(t) for t in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")):
        assert features.kprobe_events().supported == has
    if not has:
        assert not features.link_perf_kprobe()


@pytest.mark.vm("kprobes", "fentry")
def test_vm_kernel_has_kprobes_and_fentry():
    for probe in (features.kprobe_pmu, features.kprobe_events, features.fentry,
                  features.link_perf_kprobe, features.link_tracing):
        assert probe().supported, probe()


def test_eperm_explained(monkeypatch):
    from rawprobe import caps
    exc = PermissionDeniedError("BPF_PROG_LOAD", errno.EPERM)
    monkeypatch.setattr(caps, "effective", lambda: 0)
    assert "lacks CAP_BPF and CAP_PERFMON" in features._why(exc)
    monkeypatch.setattr(caps, "effective", lambda: 1 << caps.CAP_BPF)
    assert "lacks CAP_PERFMON (" in features._why(exc)
    monkeypatch.setattr(caps, "effective", lambda: 1 << caps.CAP_BPF | 1 << caps.CAP_PERFMON)
    monkeypatch.setattr(caps, "seccomp_mode", lambda: 0)
    monkeypatch.setattr(caps, "lockdown", lambda: "integrity")
    why = features._why(exc)
    assert "although this process has" in why and "'integrity'" in why
    # in a container: the runtime's seccomp filter, not the kernel
    monkeypatch.setattr(caps, "seccomp_mode", lambda: caps.SECCOMP_MODE_FILTER)
    why = features._why(exc)
    assert why.endswith("seccomp filter refuses it")     # the seccomp line says more
    assert "Containers" in caps.why_refused()
    assert "unknown to this kernel" in features._why(SyscallError("x", errno.EINVAL))


def test_main_features(capsys):
    assert features.main_features([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("kernel ")
    assert lines[1 + len(NAMES)].startswith("this process (uid ")
    assert len(lines) == 2 + len(NAMES) + len(PROCESS_NAMES)
    w = max(map(len, NAMES | PROCESS_NAMES))     # the answer's column
    assert all(ln[w + 2:w + 5] in ("yes", "no ") for ln in lines[1:1 + len(NAMES)])
    assert all(ln[w + 2:w + 5] in ("ok ", "no ") for ln in lines[2 + len(NAMES):])
    assert features.main_features(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows if r["kind"] == "kernel"} == NAMES
    assert {r["name"] for r in rows if r["kind"] == "process"} == PROCESS_NAMES
