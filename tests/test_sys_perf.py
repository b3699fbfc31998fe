"""perf_event_open, its ioctls, PMU lookups, and full_fence,
against the running kernel."""
from __future__ import annotations

import os
import threading
import time

import pytest

from rawprobe.errors import NotSupportedError, PermissionDeniedError, RawprobeError, SyscallError
from rawprobe._sys import bpf, perf
from rawprobe._sys.consts import PerfSwId, PerfType, ProgType
from rawprobe._sys.fence import acquire_fence, full_fence, release_fence
from rawprobe.link import tracefs as tracefs_mod

# Inside the test VM (vmrun.sh / make vmtest) Python runs ~12x slower.
EMULATED = os.environ.get("VMRUN_GUEST") == "1" or os.environ.get("RAWPROBE_VM") == "1"
RET0 = bytes.fromhex("b700000000000000" "9500000000000000")


@pytest.fixture(scope="module")
def tracefs():
    try:
        return tracefs_mod.tracefs_path(mount=False)
    except RawprobeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", autouse=True)
def bpf_allowed():
    try:
        bpf.map_create(2, 4, 4, 1).close()
    except PermissionDeniedError as exc:
        pytest.skip(f"bpf(2) is not allowed here: {exc}")


def test_tracepoint_event_runs_program_via_set_bpf(tracefs):
    with open(os.path.join(tracefs, "events/syscalls/sys_enter_getpid/id")) as f:
        tp_id = int(f.read())
    assert tracefs_mod.tracepoint_id("syscalls", "sys_enter_getpid") == tp_id
    with bpf.enable_stats(), \
            bpf.prog_load(ProgType.TRACEPOINT, RET0, b"GPL") as prog, \
            perf.perf_event_open({"type": PerfType.TRACEPOINT, "config": tp_id}) as ev:
        assert ev.fileno() >= 3
        perf.set_bpf(ev, prog)
        perf.enable(ev)
        before = bpf.prog_get_info(prog)["run_cnt"]
        for _ in range(10):
            os.getpid()              # glibc does not cache getpid: 10 syscalls
        assert bpf.prog_get_info(prog)["run_cnt"] >= before + 10
        perf.disable(ev)
        ev.close()                   # the last reference: the program is detached
        stopped = bpf.prog_get_info(prog)["run_cnt"]
        os.getpid()
        assert bpf.prog_get_info(prog)["run_cnt"] == stopped


def test_perf_attr_fields_and_bitfields():
    a = perf.perf_attr(type=PerfType.SOFTWARE, config=PerfSwId.BPF_OUTPUT, sample_period=1,
                       wakeup_events=1, disabled=1, precise_ip=2, uprobe_path=b"/bin/true")
    assert a.size == 136 and a.disabled == 1 and a.precise_ip == 2 and a.inherit == 0
    assert a.sample_freq == 1                                    # same union
    from rawprobe._sys._native import ffi
    assert ffi.string(ffi.cast("char *", a.config1)) == b"/bin/true"
    raw = bytes(ffi.buffer(a))
    assert int.from_bytes(raw[40:48], "little") == 1 | 2 << 15   # disabled bit 0, precise_ip bits 15-16


def test_software_event_counts_and_errors():
    # a counting software event on this task: task-clock advances
    with perf.perf_event_open({"type": PerfType.SOFTWARE, "config": PerfSwId.TASK_CLOCK},
                              pid=0, cpu=-1) as ev:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.01:
            pass
        assert int.from_bytes(os.read(ev.fileno(), 8), "little") > 0
    with pytest.raises(SyscallError) as ei:
        perf.perf_event_open({"type": PerfType.TRACEPOINT, "config": 1 << 40})
    assert ei.value.call == "perf_event_open"


def test_pmu_lookups():
    try:
        uprobe = perf.pmu_type("uprobe")
    except NotSupportedError:
        pytest.skip("no uprobe PMU on this kernel")
    assert uprobe > PerfType.BREAKPOINT                     # dynamic PMUs come after the fixed ones
    assert perf.retprobe_bit("uprobe") == 0
    assert perf.pmu_format("uprobe", "retprobe") == ("config", 0, 0)
    with pytest.raises(NotSupportedError, match="no-such-pmu"):
        perf.pmu_type("no-such-pmu")
    with pytest.raises(NotSupportedError):
        perf.pmu_format("uprobe", "no_such_field")


def test_fences_are_cheap_and_thread_safe():
    full_fence()
    acquire_fence()
    release_fence()
    n = 20000
    t = time.perf_counter()
    for _ in range(n):
        full_fence()
    per_call = (time.perf_counter() - t) / n
    print(f"full_fence: {per_call * 1e9:.0f} ns")
    if not EMULATED:
        assert per_call < 20e-6

    def hammer():
        for _ in range(20000):
            full_fence()
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in threads)        # never blocks, never deadlocks
