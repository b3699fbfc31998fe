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
         "bpf_send_signal", "pidfd", "BPF_LINK_CREATE tracepoint",
         "BPF_LINK_CREATE kprobe", "BPF_LINK_CREATE uprobe", "BPF_LINK_CREATE tp_btf",
         "BPF_LINK_CREATE fentry"}


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
    exc = PermissionDeniedError("BPF_PROG_LOAD", errno.EPERM)
    monkeypatch.setattr(features, "_missing_caps", lambda: ["CAP_BPF", "CAP_PERFMON"])
    assert "lacks CAP_BPF and CAP_PERFMON" in features._why(exc)
    monkeypatch.setattr(features, "_missing_caps", lambda: [])
    monkeypatch.setattr(features, "_lockdown", lambda: "integrity")
    why = features._why(exc)
    assert "although this process has" in why and "'integrity'" in why
    assert "unknown to this kernel" in features._why(SyscallError("x", errno.EINVAL))


def test_main_features(capsys):
    assert features.main_features([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("kernel ")
    assert len(lines) == 1 + len(NAMES)
    assert all((" yes " in ln) != (" no " in ln) for ln in lines[1:])
    assert features.main_features(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == NAMES
