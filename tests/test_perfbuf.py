"""The perf buffer reader against the running kernel: samples written by
tests/bpf/perfbuf_test.bpf.c, run with BPF_PROG_TEST_RUN on a chosen CPU."""
from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from fdcheck import open_fds

import rawprobe
from rawprobe._sys import bpf
from rawprobe.errors import RawprobeError
from rawprobe.perfbuf import PerfBuffer, online_cpus

HERE = os.path.dirname(os.path.abspath(__file__))
OBJ = os.path.join(HERE, "bpf", "perfbuf_test.bpf.o")
EVENT = struct.Struct("<QIIQ")            # struct event in perfbuf_test.bpf.c
SAMPLE_LEN = 28                           # 4 + 28 is a multiple of 8
RECORD = 8 + 4 + SAMPLE_LEN               # perf header + raw size + raw data
BPF_F_TEST_RUN_ON_CPU = 1

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")



@pytest.fixture
def obj():
    coll = rawprobe.load(OBJ)
    yield coll
    coll.close()


def emit(coll, cpu: int, count: int, first: int = 0) -> int:
    ctx = struct.pack("=2Q", count, first)
    return bpf.prog_test_run(coll.programs["emit"].fd, ctx_in=ctx, repeat=0,
                             flags=BPF_F_TEST_RUN_ON_CPU, cpu=cpu)


def seqs(samples) -> dict[int, list[int]]:
    by_cpu: dict[int, list[int]] = {}
    for cpu, data in samples:
        seq, ev_cpu, size, value = EVENT.unpack_from(data)
        assert ev_cpu == cpu and size == EVENT.size and value == seq * 7
        assert len(data) == SAMPLE_LEN      # 4 bytes of (unzeroed) padding
        by_cpu.setdefault(cpu, []).append(seq)
    return by_cpu


def test_samples_in_order_per_cpu(obj):
    cpus = online_cpus()
    with PerfBuffer(obj.maps["events"]) as pb:
        assert pb.cpus == cpus
        for round_ in range(3):
            for cpu in cpus:
                assert emit(obj, cpu, 20, 1000 * cpu + 20 * round_) == 20
        got = seqs(pb.read_batch())
        assert got == {cpu: list(range(1000 * cpu, 1000 * cpu + 60)) for cpu in cpus}
        assert pb.lost == 0 and pb.read_batch() == []


def test_wraparound_copies_straddling_records(obj):
    # 48-byte records through one 4096-byte page: records straddle the end.
    with PerfBuffer(obj.maps["events"], pages=1) as pb:
        got: list[int] = []
        first = 0
        for burst in [37, 5, 80, 1, 50] * 20:
            assert emit(obj, 0, burst, first) == burst
            first += burst
            if burst % 2:
                got += seqs(pb.read_batch()).get(0, [])
            else:
                pb.poll(0, lambda cpu, data: got.append(EVENT.unpack_from(data)[0]))
        assert got == list(range(first))
        assert pb._rings[0].tail > 20 * 4096
        assert pb.lost == 0


def test_overflow_is_counted_as_lost(obj):
    lost_calls: list[tuple[int, int]] = []
    cpu = online_cpus()[-1]
    with PerfBuffer(obj.maps["events"], pages=1,
                    on_lost=lambda c, n: lost_calls.append((c, n))) as pb:
        fit = 4096 // RECORD
        assert emit(obj, cpu, 300) == fit
        assert seqs(pb.read_batch()) == {cpu: list(range(fit))}
        # The kernel reports the loss once there is room again.
        assert emit(obj, cpu, 3, 5000) == 3
        assert seqs(pb.read_batch()) == {cpu: [5000, 5001, 5002]}
        assert pb.lost == 300 - fit
        assert pb.lost_by_cpu[cpu] == 300 - fit
        assert lost_calls == [(cpu, 300 - fit)]


def test_poll_wakes_on_a_sample(obj):
    with PerfBuffer(obj.maps["events"]) as pb:
        t0 = time.monotonic()
        assert pb.poll(50, lambda c, d: None) == 0
        assert time.monotonic() - t0 >= 0.045
        timer = threading.Timer(0.1, emit, (obj, 0, 4))
        timer.start()
        got: list[int] = []
        n = pb.poll(5000, lambda c, d: got.append(EVENT.unpack_from(d)[0]))
        timer.join()
        assert n == 4 and got == [0, 1, 2, 3]


def test_watermark_trickle_is_bounded(obj):
    # A watermark of 2 KiB never fires for two samples; the bounded sleep
    # still delivers them.
    with PerfBuffer(obj.maps["events"], watermark=2048, wakeup_bound_ms=50) as pb:
        timer = threading.Timer(0.05, emit, (obj, 0, 2))
        timer.start()
        t0 = time.monotonic()
        got = pb.read_batch(timeout_ms=5000)
        timer.join()
        assert seqs(got) == {0: [0, 1]}
        assert time.monotonic() - t0 < 1.0


def test_epoll_fileno_reports_readable(obj):
    import select
    with PerfBuffer(obj.maps["events"]) as pb:
        ep = select.epoll()
        try:
            ep.register(pb.fileno(), select.EPOLLIN)
            assert ep.poll(0) == []
            emit(obj, 0, 1)
            assert ep.poll(1.0)
            assert len(pb.read_batch()) == 1
        finally:
            ep.close()


def test_close_releases_fds_and_map_entries(obj):
    before = open_fds()
    for _ in range(3):
        pb = PerfBuffer(obj.maps["events"], pages=2)
        emit(obj, 0, 2)
        assert len(pb.read_batch()) == 2
        pb.close()
        pb.close()
    assert open_fds() == before
    # With the entries removed the program has nowhere to write.
    assert emit(obj, 0, 5) == 0
    with pytest.raises(RawprobeError, match="closed"):
        pb.read_batch()


def test_failure_paths_leak_nothing(obj):
    before = open_fds()
    with pytest.raises(RawprobeError, match="power of two"):
        PerfBuffer(obj.maps["events"], pages=3)
    with pytest.raises(RawprobeError, match="watermark"):
        PerfBuffer(obj.maps["events"], pages=1, watermark=4096)
    with pytest.raises(RawprobeError):
        PerfBuffer(obj.maps["events"], cpus=[999])
    arr = bpf.map_create(2, 4, 8, 1)                 # an ARRAY, not a perf event array
    try:
        with pytest.raises(RawprobeError):
            PerfBuffer(arr.fileno())
    finally:
        arr.close()
    # CPU 0 is set up completely before the event for a CPU that does not
    # exist fails: what was opened for CPU 0 must be closed again.
    events = bpf.map_create(4, 4, 4, 1024)
    try:
        with pytest.raises(RawprobeError):
            PerfBuffer(events.fileno(), cpus=[0, 1023])
    finally:
        events.close()
    assert open_fds() == before
