"""The ring buffer consumer over memory images laid out like the kernel's,
checked against a list model of the producer (hypothesis)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe.errors import ObjectFormatError, RawprobeError
from rawprobe.ringbuf import (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
                              RingBuffer)


class KernelImage:
    """A producer that writes memory the way kernel/bpf/ringbuf.c does:
    header with BUSY at reserve, producer_pos advanced, data written, header
    rewritten at commit; the data area appears twice in ``data``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.mask = size - 1
        self.consumer = bytearray(8)
        self.producer = bytearray(8)
        self.data = bytearray(2 * size)
        self.prod = 0
        self.pending = 0
        self.records: list[list] = []   # [pos, payload, state] in reserve order

    @property
    def cons(self) -> int:
        return struct.unpack("=Q", self.consumer)[0]

    def _write(self, pos: int, blob: bytes) -> None:
        # The same physical page appears at off and off + size.
        for i in range(0, len(blob)):
            p = (pos + i) & self.mask
            self.data[p] = self.data[p + self.size] = blob[i]

    def _hdr(self, pos: int) -> int:
        return struct.unpack_from("=I", self.data, pos & self.mask)[0]

    def reserve(self, payload: bytes) -> int | None:
        total = (len(payload) + 8 + 7) & ~7
        if total > self.size:
            return None
        cons = self.cons
        while self.prod - self.pending > 0:
            h = self._hdr(self.pending)
            if h & BPF_RINGBUF_BUSY_BIT:
                break
            self.pending += ((h & (BPF_RINGBUF_DISCARD_BIT - 1)) + 15) & ~7
        new = self.prod + total
        if new - cons > self.mask or new - self.pending > self.mask:
            return None
        pos = self.prod
        self._write(pos, struct.pack("=II", len(payload) | BPF_RINGBUF_BUSY_BIT, 7))
        # Garbage where the payload goes until the program writes it.
        self._write(pos + 8, b"\xee" * (total - 8))
        self.prod = new
        struct.pack_into("=Q", self.producer, 0, new)
        self.records.append([pos, payload, "busy"])
        return len(self.records) - 1

    def commit(self, idx: int, discard: bool) -> None:
        pos, payload, state = self.records[idx]
        assert state == "busy"
        self._write(pos + 8, payload)
        flags = BPF_RINGBUF_DISCARD_BIT if discard else 0
        self._write(pos, struct.pack("=I", len(payload) | flags))
        self.records[idx][2] = "discarded" if discard else "committed"

    def ring(self) -> RingBuffer:
        return RingBuffer._over_memory(memoryview(self.consumer), memoryview(self.producer),
                                       memoryview(self.data), self.size)


def model_take(records: list[list], taken: int, limit: int) -> tuple[list[bytes], int]:
    """What a consumer should return: committed payloads after ``taken``, in
    reserve order, stopping at the first busy record or after ``limit``."""
    out = []
    i = taken
    while i < len(records) and len(out) < limit:
        state = records[i][2]
        if state == "busy":
            break
        if state == "committed":
            out.append(records[i][1])
        i += 1
    return out, i


ops = st.lists(st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 70), st.booleans()),
    st.tuples(st.just("commit"), st.integers(0, 1 << 16), st.booleans()),
    st.tuples(st.just("read"), st.integers(1, 12), st.sampled_from(["bytes", "calls"])),
), max_size=120)


@settings(max_examples=150, deadline=None)
@given(ops=ops, size_log=st.integers(6, 9))
def test_decoder_matches_list_model(ops, size_log):
    img = KernelImage(1 << size_log)
    rb = img.ring()
    taken = 0      # index into img.records up to which the consumer went
    counter = 0
    # Records in the same fixed-size bursts exercise the bulk run detection.
    for op in ops:
        if op[0] == "reserve":
            n = op[1] if not op[2] else 16
            counter += 1
            payload = (counter.to_bytes(4, "little") * 20)[:n]
            img.reserve(payload)
        elif op[0] == "commit":
            busy = [i for i, r in enumerate(img.records) if r[2] == "busy"]
            if busy:
                img.commit(busy[op[1] % len(busy)], discard=op[2] and op[1] % 3 == 0)
        else:
            want, new_taken = model_take(img.records, taken, op[1])
            if op[2] == "bytes":
                got = rb.read_batch(max=op[1])
            else:
                got = []
                assert rb.consume(lambda v: got.append(bytes(v)), max=op[1]) == len(got)
            assert got == want
            # The consumer position covers exactly the records walked, except
            # trailing discards which the consumer may or may not have passed.
            if len(want) < op[1]:
                # Drained: everything up to the first busy record is consumed.
                j = new_taken
                end = img.records[j][0] if j < len(img.records) else img.prod
                assert img.cons == end
                taken = j
            else:
                # Stopped by max: right after the last record returned.
                last = img.records[new_taken - 1]
                assert img.cons == last[0] + ((len(last[1]) + 15) & ~7)
                taken = new_taken
    # Finally commit everything and drain: each committed record exactly once.
    for i, r in enumerate(img.records):
        if r[2] == "busy":
            img.commit(i, discard=False)
    want, _ = model_take(img.records, taken, 1 << 30)
    assert rb.read_batch() == want
    assert img.cons == img.prod
    rb.close()


@settings(max_examples=120, deadline=None)
@given(kinds=st.lists(st.sampled_from(["ev", "ev", "ev", "disc", "short", "busy"]),
                      max_size=60),
       size_log=st.integers(8, 10), limit=st.integers(1, 80), calls=st.booleans())
def test_read_structs_matches_model(kinds, size_log, limit, calls):
    fmt = struct.Struct("<QIhbx")      # 16 bytes
    img = KernelImage(1 << size_log)
    rb = img.ring()
    expected: list[tuple] = []
    blocked = False
    for i, kind in enumerate(kinds):
        if kind == "short":
            payload = b"abc"
        else:
            payload = fmt.pack(i, i * 3, -i, i % 100)
        idx = img.reserve(payload)
        if idx is None:
            break
        if kind == "busy":
            blocked = True
            continue
        img.commit(idx, discard=(kind == "disc"))
        if blocked or kind == "disc":
            continue
        expected.append("short" if kind == "short" else fmt.unpack(payload))
    got: list = []
    while len(got) < len(expected):
        want = expected[len(got):len(got) + limit]
        if want[0] == "short":
            with pytest.raises(ObjectFormatError, match="read_batch"):
                if calls:
                    rb.consume(lambda row: None, max=limit, fmt=fmt)
                else:
                    rb.read_structs(fmt, max=limit)
            assert len(rb.read_batch(max=1)[0]) == 3
            got.append("short")
            continue
        want = want[:want.index("short")] if "short" in want else want
        if calls:
            part = []
            assert rb.consume(part.append, max=limit, fmt=fmt) == len(part)
        else:
            part = rb.read_structs(fmt, max=limit)
        assert part == want
        got += part
    assert rb.read_structs(fmt) == []
    rb.close()


def test_wrapped_record_is_contiguous():
    img = KernelImage(64)
    rb = img.ring()
    a = img.reserve(b"x" * 32)          # 40 bytes at 0
    img.commit(a, False)
    assert rb.read_batch() == [b"x" * 32]
    b = img.reserve(bytes(range(40)))   # 48 bytes at 40: wraps past 64
    img.commit(b, False)
    assert rb.read_batch() == [bytes(range(40))]
    assert rb.read_structs("<5Q") == []
    assert img.cons == 88


def test_busy_record_blocks_later_committed_ones():
    img = KernelImage(256)
    rb = img.ring()
    a = img.reserve(b"first")
    b = img.reserve(b"second")
    img.commit(b, False)
    assert rb.read_batch() == []
    assert img.cons == 0
    img.commit(a, False)
    assert rb.read_batch() == [b"first", b"second"]


def test_long_uniform_run_then_different_size():
    img = KernelImage(1 << 16)
    rb = img.ring()
    fmt = struct.Struct("<QQ")
    for i in range(1000):
        img.commit(img.reserve(fmt.pack(i, i * i)), False)
    img.commit(img.reserve(b"tail-record"), False)
    for i in range(5):
        img.commit(img.reserve(fmt.pack(i, 7)), False)
    assert rb.read_structs(fmt) == [(i, i * i) for i in range(1000)]
    with pytest.raises(ObjectFormatError):
        rb.read_structs(fmt)
    assert rb.read_batch(max=1) == [b"tail-record"]
    assert rb.read_structs(fmt) == [(i, 7) for i in range(5)]


def test_callback_exception_consumes_up_to_failing_record():
    img = KernelImage(256)
    rb = img.ring()
    for i in range(5):
        img.commit(img.reserve(bytes([i]) * 8), False)
    seen = []

    def cb(v):
        seen.append(v[0])
        if v[0] == 2:
            raise KeyError("stop")
    with pytest.raises(KeyError):
        rb.consume(cb)
    assert seen == [0, 1, 2]
    assert [r[0] for r in rb.read_batch()] == [3, 4]


def test_struct_callback_exception_consumes_up_to_failing_record():
    img = KernelImage(512)
    rb = img.ring()
    for i in range(6):
        img.commit(img.reserve(struct.pack("<QQ", i, 0)), False)
    img.commit(img.reserve(b"odd one"), False)
    img.commit(img.reserve(struct.pack("<QQ", 6, 0)), False)
    seen = []

    def cb(row):
        seen.append(row[0])
        if row[0] == 3:
            raise KeyError("stop")
    with pytest.raises(KeyError):
        rb.consume(cb, fmt="<QQ")
    assert seen == [0, 1, 2, 3]
    assert rb.consume(seen.append, fmt="<QQ") == 2        # stops before "odd one"
    assert seen[4:] == [(4, 0), (5, 0)]
    assert rb.read_batch(max=1) == [b"odd one"]
    assert rb.consume(seen.append, fmt="<QQ") == 1


def test_native_format_with_trailing_padding():
    # C: struct { u64 a; u32 b; } is 16 bytes; '@QI' is 12.
    img = KernelImage(256)
    rb = img.ring()
    img.commit(img.reserve(struct.pack("@QI4x", 5, 6)), False)
    img.commit(img.reserve(struct.pack("@QI4x", 7, 8)), False)
    assert rb.read_structs("@QI") == [(5, 6), (7, 8)]


def test_corrupt_positions_raise_rawprobe_error():
    img = KernelImage(64)
    rb = img.ring()
    struct.pack_into("=Q", img.producer, 0, 1000)
    with pytest.raises(RawprobeError, match="another"):
        rb.read_batch()
    struct.pack_into("=Q", img.producer, 0, 16)
    struct.pack_into("=I", img.data, 0, 50)      # record longer than prod allows
    with pytest.raises(RawprobeError, match="corrupt"):
        rb.read_batch()


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=128, max_size=128), cons=st.integers(0, 1 << 20),
       delta=st.integers(0, 80))
def test_garbage_raises_only_rawprobe_error(data, cons, delta):
    size = 64
    img = KernelImage(size)
    img.data[:] = data
    struct.pack_into("=Q", img.consumer, 0, cons)
    struct.pack_into("=Q", img.producer, 0, cons + delta)
    rb = img.ring()
    try:
        rb.read_batch()
        rb.read_structs("<Q")
        rb.consume(lambda v: None)
    except RawprobeError:
        pass


def test_closed_ring_refuses():
    rb = KernelImage(64).ring()
    rb.close()
    rb.close()
    with pytest.raises(RawprobeError, match="^the RingBuffer is closed$"):
        rb.read_batch()


def test_peek_decodes_the_next_record_without_consuming_it():
    img = KernelImage(256)
    rb = img.ring()
    fmt = struct.Struct("<IQ")
    assert rb.peek(fmt) is None                       # empty
    a = img.reserve(fmt.pack(1, 11))
    assert rb.peek(fmt) is None                       # still BUSY
    img.commit(a, discard=False)
    assert rb.peek(fmt) == (1, 11) and rb.peek(fmt) == (1, 11)
    assert rb.read_batch() == [fmt.pack(1, 11)]       # it is still there for a read
    assert rb.peek(fmt) is None
    b = img.reserve(fmt.pack(2, 22))
    img.commit(b, discard=True)
    c = img.reserve(b"\x03\0\0\0")
    img.commit(c, discard=False)
    assert rb.peek(fmt) is None                       # a discarded record is not data
    assert rb.read_batch() == [b"\x03\0\0\0"]         # (reading skips it)
    d = img.reserve(fmt.pack(4, 44))
    img.commit(d, discard=False)
    assert rb.peek(fmt) == (4, 44)
    short = KernelImage(256)
    short.commit(short.reserve(b"\x05\0\0\0"), discard=False)
    assert short.ring().peek(fmt) is None             # shorter than fmt
    assert short.ring().read_batch() == [b"\x05\0\0\0"]


def _image(*payloads: bytes, size: int = 1024) -> KernelImage:
    img = KernelImage(size)
    for p in payloads:
        img.commit(img.reserve(p), discard=False)
    return img


def test_max_counts_across_runs_of_different_sizes():
    """Two runs (2 records of 8 bytes, then 10 of 16): max counts both."""
    small = [bytes([i]) * 8 for i in range(2)]
    big = [bytes([10 + i]) * 16 for i in range(10)]
    img = _image(*small, *big)
    rb = img.ring()
    assert rb.read_batch(max=5) == small + big[:3]
    assert rb.read_batch(max=5) == big[3:8]
    assert rb.read_batch() == big[8:]
    rb = _image(*small, *big).ring()                   # the same, decoded
    fmt = struct.Struct("<Q")
    assert rb.read_structs(fmt, max=5) == [fmt.unpack_from(p) for p in small + big[:3]]
    assert rb.read_structs(fmt) == [fmt.unpack_from(p) for p in big[3:]]


def test_records_committed_while_draining_are_read_up_to_max():
    """The callback's own producer adds records; the same call reads them too (the
    drain loop looks at the producer position again), never more than ``max``."""
    img = _image(*(bytes([i]) * 8 for i in range(3)))
    rb = img.ring()
    seen: list[bytes] = []

    def cb(view):
        seen.append(bytes(view))
        if len(seen) == 1:
            for i in range(3, 13):
                img.commit(img.reserve(bytes([i]) * 8), discard=False)
    assert rb.poll(0, cb, max=5) == 5
    assert seen == [bytes([i]) * 8 for i in range(5)]
    assert rb.poll(0, cb) == 8 and len(seen) == 13


def test_record_longer_than_what_was_produced_is_corruption():
    img = _image(b"a" * 8, b"b" * 8)
    # The second header now claims 24 bytes: 32 with its header, 16 are produced.
    struct.pack_into("=I", img.data, 16, 24)
    struct.pack_into("=I", img.data, 16 + img.size, 24)
    with pytest.raises(ObjectFormatError,
                       match=r"^ring buffer record at position 16 claims 24 bytes, past the "
                             r"producer position 32; the ring is corrupt or shared with "
                             r"another consumer$"):
        img.ring().read_batch()


@pytest.mark.parametrize("fmt", ["QI", "@QI", "=QI", "<QI", ">QI", "!QI", "<HH", "<IQ", "=IQ"])
def test_struct_formats_in_any_byte_order_decode_as_struct_does(fmt):
    """read_structs and poll(fmt=) on runs of records: the same tuples as
    struct.unpack_from(fmt, record), whatever byte order the format names."""
    payloads = [bytes(range(i, i + 16)) for i in range(0, 60, 5)]
    want = [struct.unpack_from(fmt, p) for p in payloads]
    assert _image(*payloads).ring().read_structs(fmt) == want
    got: list[tuple] = []
    assert _image(*payloads).ring().poll(0, got.append, fmt=struct.Struct(fmt)) == len(want)
    assert got == want
    rb = _image(*payloads).ring()                    # in pieces: the layouts are reused
    assert rb.read_structs(fmt, max=5) + rb.read_structs(fmt) == want


def test_an_image_is_open_has_no_counter_and_struct_callbacks_count_to_max():
    img = _image(*(struct.pack("<Q", i) for i in range(4)),
                 *(struct.pack("<QQ", 10 + i, 0) for i in range(6)))
    rb = img.ring()
    assert rb.closed is False and rb.lost is None
    rows: list[tuple] = []
    fmt = struct.Struct("<Q")
    assert rb.poll(0, rows.append, max=3, fmt=fmt) == 3
    assert rb.consume(rows.append, max=3, fmt=fmt) == 3       # across the two runs
    assert rb.consume(rows.append, fmt=fmt) == 4
    assert rows == [(i,) for i in range(4)] + [(10 + i,) for i in range(6)]
    rb.close()
    assert rb.closed is True


def test_headers_left_from_the_last_lap_are_not_records():
    """Past the producer position lie the last lap's records, headers intact and of
    the same size as the new ones: a run of equal headers must end at the producer
    position, not where the stale ones end."""
    img = _image(b"old0----", b"old1----", b"old2----", size=64)
    rb = img.ring()
    assert rb.read_batch() == [b"old0----", b"old1----", b"old2----"]
    new = [b"new%d----" % i for i in range(3)]
    for p in new:
        img.commit(img.reserve(p), discard=False)
    assert rb.read_batch() == new
    assert rb.read_batch() == [] and rb.pending == 0


def test_payloads_that_look_like_headers_are_not_records():
    """A run of equal headers is counted by comparing header words a record apart:
    words of the same value inside later, longer records are not headers."""
    eight = struct.pack("<I", 8) * 12                      # 48 bytes of "len 8" words
    payloads = [b"a" * 8, b"b" * 8, *(eight[:44] + bytes([i]) * 4 for i in range(40))]
    img = _image(*payloads, size=4096)
    assert img.ring().read_batch() == payloads
    img = _image(*payloads, size=4096)
    assert img.ring().read_batch(max=3) == payloads[:3]


def test_a_run_is_counted_where_it_lies_after_a_lap():
    """A run of equal headers that starts mid-ring is compared at its own offset:
    the last lap left 8-byte headers all over the data area, so counting from any
    other place finds a longer run than the one there and misreads what follows."""
    img = KernelImage(4096)
    rb = img.ring()
    for _ in range(2):                                    # a whole lap of 8-byte records
        lap = [bytes([i]) * 8 for i in range(128)]
        for p in lap:
            img.commit(img.reserve(p), discard=False)
        assert rb.read_batch() == lap
    for p in (b"e" * 8,) * 4:                             # on to offset 64 of the next lap
        img.commit(img.reserve(p), discard=False)
    assert rb.read_batch() == [b"e" * 8] * 4 and img.cons & img.mask == 64
    new = [b"a" * 8, b"b" * 8, b"c" * 24, b"d" * 8]
    for p in new:
        img.commit(img.reserve(p), discard=False)
    assert rb.read_batch() == new
