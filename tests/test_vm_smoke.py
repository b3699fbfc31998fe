"""The test VM itself: the kernel `make vmtest` boots is the one asked for and
has what the `vm` tests need.  Outside the VM these tests skip."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

TRACING = Path("/sys/kernel/tracing")


def test_vm_runs_the_requested_kernel(vm_kernel):
    series = os.environ.get("RAWPROBE_VM_SERIES", "6.1")
    assert platform.release() == vm_kernel
    assert vm_kernel.startswith(series + "."), f"booted {vm_kernel}, wanted {series}"
    assert Path("/sys/kernel/btf/vmlinux").stat().st_size > 1_000_000


def append_line(path: Path, line: str) -> None:
    # O_APPEND without O_TRUNC: truncating kprobe_events deletes every probe.
    # Not open(path, "a"): Python then seeks to the end, and tracefs answers
    # lseek on these files with EINVAL.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def test_vm_has_kprobes(vm_kernel, bpf_privileges, requires_kprobes):
    pmu_type = Path("/sys/bus/event_source/devices/kprobe/type").read_text()
    assert int(pmu_type) > 0
    # A tracefs probe of our own, named after this process, removed again.
    event = f"rawprobe_smoke/w{os.getpid()}"
    events = TRACING / "kprobe_events"
    append_line(events, f"p:{event} ksys_write")
    try:
        assert f"p:{event} ksys_write" in events.read_text().splitlines()
        assert (TRACING / "events" / event / "id").exists()
    finally:
        append_line(events, f"-:{event}")
    assert event not in events.read_text()


def test_vm_kernel_has_what_vm_tests_need(vm_kernel, missing_feature):
    # Fails (rather than skipping every vm test) if the gates stay shut in the VM.
    needed = ("kprobes", "fentry", "module_btf", "bpf_lsm")
    assert {n: missing_feature(n) for n in needed} == dict.fromkeys(needed)


def test_vm_has_the_9pnet_module_btf(vm_kernel):
    """tools/vmtest.py loads 9pnet (the guest mounts the host over 9p); its BTF is
    where the module-BTF tests find struct p9_client, so they cannot skip here."""
    from rawprobe.btf.kernel import KernelBTF
    assert Path("/sys/kernel/btf/9pnet").stat().st_size > 0
    vmlinux = KernelBTF.load()
    assert not vmlinux.types_by_name("p9_client")        # a module's type, not vmlinux's
    mod = KernelBTF.load_module("9pnet", base=vmlinux)
    assert mod.types_by_name("p9_client") and mod.first_id == len(vmlinux)
