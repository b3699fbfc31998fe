"""The ring buffer consumer against the running kernel: records written by
real BPF programs (tests/bpf/ringbuf_test.bpf.c) run with BPF_PROG_TEST_RUN."""
from __future__ import annotations

import mmap
import os
import struct
import threading
import time

import pytest
from fdcheck import open_fds

import rawprobe
from rawprobe._sys import bpf
from rawprobe.errors import RawprobeError
from rawprobe.ringbuf import RingBuffer, map_counter

HERE = os.path.dirname(os.path.abspath(__file__))
OBJ = os.path.join(HERE, "bpf", "ringbuf_test.bpf.o")
EVENT = struct.Struct("<QQIIQ")          # struct event in ringbuf_test.bpf.c
STRIDE = 8 + EVENT.size                  # header + 32 bytes
RING = 4096
SUBMIT, DISCARD_ODD, OUTPUT = 0, 1, 2
BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP = 1, 2
BPF_MAP_TYPE_RINGBUF = 27

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")



@pytest.fixture
def obj():
    coll = rawprobe.load(OBJ)
    yield coll
    coll.close()


def run(coll, prog: str, *args: int) -> int:
    ctx = struct.pack(f"={len(args)}Q", *args)
    return bpf.prog_test_run(coll.programs[prog].fd, ctx_in=ctx, repeat=0)


def emit(coll, count: int, first: int = 0, mode: int = SUBMIT, flags: int = 0) -> int:
    return run(coll, "emit", count, first, mode, flags)


def test_mmap_layout_of_a_real_ring():
    before = open_fds()
    fd = bpf.map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, 2 * mmap.PAGESIZE)
    try:
        page = mmap.PAGESIZE
        # Only the consumer page may be mapped writable.
        with pytest.raises(OSError):
            mmap.mmap(fd.fileno(), page, flags=mmap.MAP_SHARED,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=page)
        with RingBuffer(fd.fileno()) as rb:
            assert rb.size == 2 * page
            assert rb.pending == 0
            assert rb.read_batch() == []
            with pytest.raises(TypeError):
                rb._data[0:1] = b"x"          # data pages are read-only
            rb._cons_q[0] = rb._cons_q[0]      # consumer page is writable
            assert rb.fileno() == fd.fileno()
    finally:
        fd.close()
    assert open_fds() == before


def test_records_in_order_with_fields(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        assert emit(obj, 50, first=1000) == 50
        got = rb.read_structs(EVENT)
        assert [e[0] for e in got] == list(range(1000, 1050))
        assert all(e[2] == 0xE0E0 and e[4] == e[0] * 3 for e in got)
        assert [t for t in (e[1] for e in got)] == sorted(e[1] for e in got)
        assert emit(obj, 5, first=7, mode=OUTPUT) == 5
        raw = rb.read_batch()
        assert [EVENT.unpack(r)[0] for r in raw] == [7, 8, 9, 10, 11]
        assert rb.read_batch() == [] and rb.pending == 0


def test_wraparound_through_a_small_ring(obj):
    # 40-byte records through a 4096-byte ring: 4096 is no multiple of 40, so
    # records straddle the end and are read through the second mapping.
    with RingBuffer(obj.maps["rb"]) as rb:
        seqs: list[int] = []
        first = 0
        for burst in [37, 1, 99, 64, 13, 102] * 12:
            assert emit(obj, burst, first) == burst
            if burst % 2:
                seqs += [e[0] for e in rb.read_structs(EVENT)]
            else:
                rb.poll(0, lambda v: seqs.append(EVENT.unpack(v)[0]))
            first += burst
        assert seqs == list(range(first))
        assert rb._cons > 30 * RING          # wrapped many times


def test_variable_sized_records(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        got: list[bytes] = []
        for first in range(0, 600, 20):
            assert run(obj, "emit_var", 20, first) == 20
            got += rb.read_batch()
        assert len(got) == 600
        for seq, rec in enumerate(got):
            assert rec == bytes([seq & 0xFF]) * (1 + seq % 200)


def test_discarded_records_are_skipped(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        assert emit(obj, 40, 0, mode=DISCARD_ODD) == 20
        assert [e[0] for e in rb.read_structs(EVENT)] == list(range(0, 40, 2))
        assert rb.pending == 0                # the discarded ones were passed too


def test_overflow_counts_drops(obj):
    lost = map_counter(obj.maps["drops"])
    with RingBuffer(obj.maps["rb"], lost=lost) as rb:
        fit = (RING - 1) // STRIDE            # the kernel keeps one byte free
        assert emit(obj, 200) == fit
        assert rb.lost == 200 - fit
        assert [e[0] for e in rb.read_structs(EVENT)] == list(range(fit))
        # Space again after consuming; the counter stays where it was.
        assert emit(obj, 10, 500) == 10
        assert [e[0] for e in rb.read_structs(EVENT)] == list(range(500, 510))
        assert rb.lost == 200 - fit
    with RingBuffer(obj.maps["rb"]) as rb:
        assert rb.lost is None                # no counter given: unknown


def test_busy_record_holds_back_later_ones(obj):
    """``hold`` reserves A, reserves and submits B, spins, then submits A.
    While A is BUSY the consumer must return nothing, then A and B in order.

    BPF_PROG_TEST_RUN runs a raw_tp program with preemption off, so the
    producer and the consumer are pinned to different CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the producer spins with preemption disabled")
    busy = 1 << 31
    with RingBuffer(obj.maps["rb"]) as rb:
        os.sched_setaffinity(0, {cpus[0]})
        try:
            for spins in (1 << 21, 1 << 22, (1 << 23) - 1):
                errors: list[BaseException] = []

                def producer():
                    try:
                        os.sched_setaffinity(0, {cpus[1]})
                        assert run(obj, "hold", spins, 77) == 0
                    except BaseException as e:       # surfaced below
                        errors.append(e)
                t = threading.Thread(target=producer)
                cons = rb._cons
                hdr_a, hdr_b = (cons & rb._mask) // 4, ((cons + STRIDE) & rb._mask) // 4
                t.start()
                records: list[bytes] = []
                held_back = False
                while t.is_alive() and not records:
                    a, b = rb._u32[hdr_a], rb._u32[hdr_b]
                    got = rb.read_batch()
                    if rb.pending and a & busy and b == EVENT.size and not got:
                        held_back = True        # B committed, A busy: nothing returned
                    records += got
                    time.sleep(0.0002)
                t.join()
                assert not errors
                records += rb.read_batch()
                assert [EVENT.unpack(r)[0] for r in records] == [77, 78]
                if held_back:
                    return
        finally:
            os.sched_setaffinity(0, cpus)
    pytest.skip("never caught the program between its two submits (the consumer "
                "thread did not get a CPU in time)")


def test_poll_waits_and_wakes(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        t0 = time.monotonic()
        assert rb.poll(50, lambda v: None) == 0
        assert time.monotonic() - t0 >= 0.045
        timer = threading.Timer(0.1, emit, (obj, 3, 1))
        timer.start()
        got: list[int] = []
        t0 = time.monotonic()
        n = rb.poll(5000, lambda v: got.append(EVENT.unpack(v)[0]))
        timer.join()
        assert n == 3 and got == [1, 2, 3]
        assert time.monotonic() - t0 < 2.0


def test_no_lost_wakeup_under_bursts(obj):
    """A producer thread writes bursts with the kernel's default wake-up
    policy while the consumer sleeps in poll().  The wake-up bound is set far
    beyond the test's patience, so a lost wake-up shows as a stall."""
    bursts = [1 + (i * 7) % 23 for i in range(400)]
    expected = sum(bursts)
    rb = RingBuffer(obj.maps["rb"], wakeup_bound_ms=60_000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def producer():
        try:
            first = 0
            for i, n in enumerate(bursts):
                # Never overflow: a failed reservation would leave a gap.
                while RING - rb.pending < (n + 1) * STRIDE:
                    if stop.wait(0.0002):
                        return
                assert emit(obj, n, first) == n
                first += n
                if i % 3 == 0:
                    time.sleep(0.0003 * (i % 5))
        except BaseException as e:
            errors.append(e)

    seqs: list[int] = []
    t = threading.Thread(target=producer)
    with rb:
        t.start()
        try:
            while len(seqs) < expected and not errors:
                got = rb.read_structs(EVENT, timeout_ms=10_000)
                assert got, f"stalled with {len(seqs)} of {expected} records: lost wake-up"
                seqs += [e[0] for e in got]
        finally:
            stop.set()
            t.join()
    assert not errors
    assert seqs == list(range(expected))


def test_no_wakeup_producer_is_bounded(obj):
    """BPF_RB_NO_WAKEUP never wakes the consumer; the bounded sleep does."""
    with RingBuffer(obj.maps["rb"], wakeup_bound_ms=50) as rb:
        timer = threading.Timer(0.05, emit, (obj, 4, 0, SUBMIT, BPF_RB_NO_WAKEUP))
        timer.start()
        t0 = time.monotonic()
        got = rb.read_structs(EVENT, timeout_ms=5000)
        timer.join()
        assert [e[0] for e in got] == [0, 1, 2, 3]
        assert time.monotonic() - t0 < 1.0


def test_callback_path_on_kernel_records(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        emit(obj, 30, 0)
        seen: list[int] = []
        keep: list = []

        def cb(view):
            keep.append(view)              # views are private copies: safe to keep
            seen.append(EVENT.unpack(view)[0])
        assert rb.poll(0, cb, max=10) == 10
        assert rb.consume(cb) == 20
        assert seen == list(range(30))
        assert EVENT.unpack(keep[0])[0] == 0
        assert emit(obj, 90, 100) == 90
        rows: list[tuple] = []
        assert rb.poll(0, rows.append, fmt=EVENT) == 90
        assert [r[0] for r in rows] == list(range(100, 190))


def test_no_fd_leak_and_failure_paths(obj):
    before = open_fds()
    for _ in range(3):
        rb = RingBuffer(obj.maps["rb"])
        emit(obj, 3)
        rb.poll(10, lambda v: None)          # creates the internal epoll fd
        rb.close()
        rb.close()
    assert open_fds() == before
    with pytest.raises(RawprobeError):
        RingBuffer(obj.maps["drops"])        # an ARRAY map, not a ring
    with pytest.raises(RawprobeError):
        RingBuffer(obj.maps["drops"].fd)     # same, as a raw fd
    assert open_fds() == before
    rb = RingBuffer(obj.maps["rb"])
    rb.close()
    with pytest.raises(RawprobeError, match="closed"):
        rb.poll(0, lambda v: None)


# -- what is refused and why; limits, timeouts, waiting ------------------------------------

def test_what_is_not_a_ring_is_refused_saying_what_it_is(obj):
    import errno
    import types
    from rawprobe.errors import ObjectFormatError, SyscallError
    drops = obj.maps["drops"]
    array = int(drops.type)
    with pytest.raises(ObjectFormatError) as ei:
        RingBuffer(drops)
    assert str(ei.value) == f"map 'drops' is a map of type {array}, not BPF_MAP_TYPE_RINGBUF"
    with pytest.raises(ObjectFormatError) as ei:
        RingBuffer(drops.fd)
    assert str(ei.value) == f"fd {drops.fd} is a map of type {array}, not BPF_MAP_TYPE_RINGBUF"
    # Anything with fd and max_entries: its size must be a power-of-two number of pages...
    ring = obj.maps["rb"]
    for size in (0, mmap.PAGESIZE // 2, 3 * mmap.PAGESIZE):
        with pytest.raises(ObjectFormatError) as ei:
            RingBuffer(types.SimpleNamespace(fd=ring.fd, max_entries=size))
        assert str(ei.value) == (f"ring buffer size {size} is not a power of two multiple of "
                                 f"the page size; is fd {ring.fd} a BPF_MAP_TYPE_RINGBUF map?")
    # ...and the kernel must let it be mapped as a ring.
    with pytest.raises(SyscallError) as ei:
        RingBuffer(types.SimpleNamespace(fd=drops.fd, max_entries=RING, type=BPF_MAP_TYPE_RINGBUF))
    assert (ei.value.call, ei.value.errno) == ("mmap(ringbuf)", errno.EINVAL)
    assert str(ei.value).endswith("; is this fd a BPF_MAP_TYPE_RINGBUF map?")


def test_any_object_with_an_fd_and_a_size_will_do():
    import types
    fd = bpf.map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, RING)      # an FD object
    try:
        with RingBuffer(types.SimpleNamespace(fd=fd, max_entries=RING)) as rb:
            assert rb.size == RING and rb.fileno() == fd.fileno()
            assert rb.read_batch() == [] and rb.lost is None
            assert repr(rb) == f"<RingBuffer fd={fd.fileno()} size={RING}>"
        assert repr(rb) == "<RingBuffer closed>" and rb.closed
    finally:
        fd.close()


def test_max_and_timeouts(obj):
    with RingBuffer(obj.maps["rb"]) as rb:
        emit(obj, 10)
        pending = rb.pending
        assert rb.read_batch(max=0) == [] and rb.poll(0, lambda v: None, max=0) == 0
        assert rb.read_structs(EVENT, max=0) == [] and rb.pending == pending
        assert [e[0] for e in rb.read_structs(EVENT, max=3)] == [0, 1, 2]
        assert len(rb.read_batch(max=4)) == 4
        assert rb.consume(lambda v: None, max=2) == 2
        assert rb.consume(lambda v: None) == 1 and rb.pending == 0
        # Empty: each read waits for its timeout (not forever), sleeping, not spinning.
        for read in (lambda: rb.read_batch(timeout_ms=150),
                     lambda: rb.read_structs(EVENT, timeout_ms=150),
                     lambda: rb.poll(150, lambda v: None),
                     lambda: rb.poll(150, lambda v: None, fmt=EVENT)):
            t0, cpu0 = time.monotonic(), time.process_time()
            assert not read()
            assert 0.14 <= time.monotonic() - t0 < 2.0
            assert time.process_time() - cpu0 < 0.1
        t0 = time.monotonic()
        assert rb.consume(lambda v: None) == 0 and rb.read_batch() == []
        assert time.monotonic() - t0 < 0.1                     # no waiting at all


def test_map_counter_reads_and_checks_its_map(obj):
    from rawprobe.errors import ObjectFormatError
    drops = obj.maps["drops"]
    drops.update(0, 41)
    assert map_counter(drops)() == 41
    with pytest.raises(ObjectFormatError) as ei:
        map_counter(obj.maps["rb"])                          # 0-byte values
    assert str(ei.value) == ("map 'rb' has 0-byte values; a drop counter is one u64")

    class Absent:                                            # duck-typed, no such key
        value_size = 8

        @staticmethod
        def lookup(key):
            return None
    assert map_counter(Absent())() == 0


def test_reads_that_take_nothing_or_have_no_timeout_never_wait(obj):
    """max=0 returns at once whatever the timeout; consume() and the reads'
    default timeout do not wait for an empty ring (500 calls take no 500 ms)."""
    with RingBuffer(obj.maps["rb"]) as rb:
        t0 = time.monotonic()
        assert rb.read_batch(max=0, timeout_ms=5000) == []
        assert rb.read_structs(EVENT, max=0, timeout_ms=5000) == []
        assert rb.poll(5000, lambda v: None, max=0) == 0
        assert time.monotonic() - t0 < 1.0
        for read in (lambda: rb.consume(lambda v: None), lambda: rb.read_batch(),
                     lambda: rb.read_structs(EVENT)):
            t0 = time.monotonic()
            for _ in range(500):
                assert not read()
            assert time.monotonic() - t0 < 0.25


def test_what_is_refused_is_named_even_without_a_name(obj):
    """A duck-typed map without ``name`` is named by its fd (a ring) or its repr
    (a counter); a counter without ``value_size`` is taken as a u64 one."""
    import types
    from rawprobe.errors import ObjectFormatError
    drops = obj.maps["drops"]
    with pytest.raises(ObjectFormatError) as ei:
        RingBuffer(types.SimpleNamespace(fd=drops.fd, max_entries=RING, type=int(drops.type)))
    assert str(ei.value) == (f"map {drops.fd} is a map of type {int(drops.type)}, not "
                             f"BPF_MAP_TYPE_RINGBUF")
    narrow = types.SimpleNamespace(value_size=4, lookup=drops.lookup)
    with pytest.raises(ObjectFormatError) as ei:
        map_counter(narrow)
    assert str(ei.value) == f"map {narrow!r} has 4-byte values; a drop counter is one u64"
    drops.update(0, 5)
    assert map_counter(types.SimpleNamespace(lookup=drops.lookup))() == 5


def test_waiting_reads_return_what_is_there_at_once_and_forever_is_bounded(obj):
    """A read with a timeout returns the records already there without waiting
    for more; a negative timeout waits forever, still waking every
    wakeup_bound_ms for a producer that never wakes it (BPF_RB_NO_WAKEUP; a
    record forcing a wake-up 3 s later ends a read that missed that)."""
    with RingBuffer(obj.maps["rb"], wakeup_bound_ms=50) as rb:
        emit(obj, 3)
        t0 = time.monotonic()
        assert rb.poll(5000, lambda v: None) == 3
        emit(obj, 2)
        assert len(rb.read_batch(timeout_ms=5000)) == 2
        assert time.monotonic() - t0 < 1.0
        quiet = threading.Timer(0.05, emit, (obj, 4, 0, SUBMIT, BPF_RB_NO_WAKEUP))
        loud = threading.Timer(3.0, emit, (obj, 1, 99, SUBMIT, BPF_RB_FORCE_WAKEUP))
        quiet.start()
        loud.start()
        try:
            t0 = time.monotonic()
            got: list[int] = []
            assert rb.poll(-1, lambda v: got.append(EVENT.unpack(v)[0])) == 4
            assert got == [0, 1, 2, 3] and time.monotonic() - t0 < 1.5
        finally:
            quiet.join()
            loud.cancel()
            loud.join()


def test_a_busy_record_is_waited_for_without_spinning_or_stalling(obj):
    """While the record at the consumer position is still BUSY, epoll reports the
    ring readable though nothing can be read: poll() yields briefly and looks
    again, and returns soon after the commit."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the producer spins with preemption disabled")
    with RingBuffer(obj.maps["rb"]) as rb:
        os.sched_setaffinity(0, {cpus[0]})
        try:
            for spins in (1 << 22, (1 << 23) - 1):
                t = threading.Thread(target=lambda: (os.sched_setaffinity(0, {cpus[1]}),
                                                     run(obj, "hold", spins, 77)))
                got: list[int] = []
                t0 = time.monotonic()
                t.start()
                while len(got) < 2:
                    rb.poll(5000, lambda v: got.append(EVENT.unpack(v)[0]))
                elapsed = time.monotonic() - t0
                t.join()
                assert got == [77, 78] and elapsed < 0.9
        finally:
            os.sched_setaffinity(0, cpus)


def test_a_ring_on_fd_0_is_waited_on_like_any_other():
    """A raw fd 0 (a daemon without stdin, handed a map fd by other code; rawprobe's
    own fds are kept above 2) is a real ring, not the fd-less memory image of the
    decoder's tests, so reads on it wait."""
    saved = os.dup(0)
    try:
        fd = bpf.map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, RING)
        try:
            os.dup2(fd.fileno(), 0)
            with RingBuffer(0) as rb:
                t0 = time.monotonic()
                assert rb.read_batch(timeout_ms=150) == []
                assert time.monotonic() - t0 >= 0.14
        finally:
            fd.close()
    finally:
        os.dup2(saved, 0)
        os.close(saved)
