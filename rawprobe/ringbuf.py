"""Consumer of a ``BPF_MAP_TYPE_RINGBUF`` map over ``mmap`` (Linux >= 5.8).

Layout (kernel/bpf/ringbuf.c).  The map fd offers three regions to ``mmap``:
page offset 0 is the *consumer page*, whose first u64 is ``consumer_pos`` and
which is the only part user space may map writable; page offset 1 is the
*producer page* (``producer_pos``, read-only); the data area of ``max_entries``
bytes (a power of two, a multiple of the page size) follows it and is mapped
**twice** in a row, so a record that wraps past the end of the ring is still
contiguous in memory.  Positions only grow; a position's place in the ring is
``pos & (max_entries - 1)``.  Each record starts with an 8-byte header,
``u32 len`` then ``u32 pg_off`` (the kernel's own back-pointer, ignored here).
``len`` carries ``BPF_RINGBUF_BUSY_BIT`` (1 << 31) while the producer still
owns the record and ``BPF_RINGBUF_DISCARD_BIT`` (1 << 30) when it was thrown
away; the record occupies ``round_up(8 + len, 8)`` bytes.

Memory ordering: what the consumer relies on
---------------------------------------------
Python has no atomic or acquire/release accesses.  This consumer reads and
writes the shared words through ``memoryview`` casts; CPython copies a
fixed-size, naturally aligned 4- or 8-byte item with ``memcpy``, which gcc and
clang compile to one load or store, so each access is single-copy atomic (no
torn values).  Ordering between accesses is argued here.

The kernel producer, for each record:
  1. reserve, under a spinlock: write the header with the BUSY bit set, then
     ``smp_store_release(producer_pos, pos + size)``;
  2. the BPF program fills the record;
  3. commit: ``xchg(header.len, len without BUSY [| DISCARD])`` (a full
     barrier: everything written before it is visible first), then
     ``smp_load_acquire(consumer_pos)`` and, only if the consumer position
     equals this record's position, queue a wake-up of the map's wait queue
     (unless the program passed ``BPF_RB_NO_WAKEUP``; ``BPF_RB_FORCE_WAKEUP``
     always wakes).

The consumer, per batch (``_drain``):
  a. load ``producer_pos``;
  b. load headers from ``consumer_pos`` on, stopping at ``producer_pos`` or at
     the first BUSY header;
  c. load (copy or decode) the data of the committed records;
  d. store the new ``consumer_pos``;
  e. full fence; return if the caller's ``max`` is reached, else go back to
     (a); a pass that finds nothing committed returns.

x86-64 is TSO: loads are not reordered with older loads, and stores are not
reordered with older loads.  So (a)->(b) cannot read a header older than the
``producer_pos`` that covers it, (b)->(c) cannot read data older than the
committed header (the producer's ``xchg`` made the data visible first), and
(c)->(d) cannot let the producer reuse space before we finished reading it.
Plain loads and stores therefore suffice for those steps.

The one reordering x86 allows is a store followed by a load of another
address: the store of ``consumer_pos`` (d) may sit in the store buffer while
the next load of ``producer_pos`` (a) executes.  That is the lost wake-up: the
consumer sees no new record and goes to sleep, while the producer, having just
committed that record, still reads the *old* ``consumer_pos``, concludes the
consumer is behind (so someone will come back for the data) and does not wake
it.  Every later commit compares against the same old position and stays
silent too, so the consumer can sleep forever with data waiting.  libbpf's
consumer had no store-load barrier there and was saved only by level-triggered
epoll (whose re-poll of the map, under kernel locks, re-reads both positions);
it broke as soon as edge-triggered epoll was tried (2023), and aya's first
consumer had the same gap.  The full fence in (e)
(``rawprobe._sys.fence.full_fence()``) closes it: it is the store-load barrier of
the classic store-buffering pattern.  Either our reload of ``producer_pos`` /
the header sees the new record (and we consume it instead of sleeping), or
the producer's load after its ``xchg`` sees our new ``consumer_pos``, equal to
its record's position, and it wakes us.  A record still BUSY at our position
is the second case: its commit will find ``consumer_pos`` pointing at it.
Hence every ``_drain`` that returns without hitting a caller's ``max`` leaves
the ring in a state where the next commit wakes the map's waiters, which makes
this safe for edge-triggered use of :meth:`RingBuffer.fileno` as well.  One
that stops at ``max`` leaves committed records behind, for which no commit
will wake anyone: level-triggered epoll still reports them (the map is
readable while ``producer_pos != consumer_pos``), edge-triggered does not, so
edge-triggered callers must read until a call returns fewer than ``max``.

As a second line of defence, and for producers that use ``BPF_RB_NO_WAKEUP``,
:meth:`RingBuffer.poll` never sleeps in ``epoll_wait`` longer than
``wakeup_bound_ms`` before looking at the ring again, so a lost or suppressed
wake-up costs bounded latency, never a hang.

arm64 is weakly ordered: loads may pass loads and stores may pass loads, so
(a)->(b), (b)->(c) and (c)->(d) need barriers as well.  The consumer calls
``acquire_fence()`` after (a) and (b) and ``release_fence()`` before (d), once
per batch; on x86 those are empty, elsewhere they are ``full_fence()`` (on
arm64 a release store followed by an acquire read-modify-write, which ARMv8
keeps in order), stronger than the acquire/release pairs libbpf uses.  The kernel side is already correct on
arm64 (release/acquire and a fully ordered ``xchg``).

Drops
-----
The kernel does not count records it could not reserve: ``bpf_ringbuf_reserve``
returns NULL and ``bpf_ringbuf_output`` returns ``-EAGAIN``, and the BPF
program decides what to do.  The convention here: the program counts its
failures itself (for example ``__sync_fetch_and_add(&drops, 1)`` on a u64
global or a one-entry ``ARRAY``/``PERCPU_ARRAY`` map), and the caller passes a
function returning that count as ``RingBuffer(..., lost=...)``;
:attr:`RingBuffer.lost` then reports it (``None`` when no counter was given).
:func:`map_counter` builds such a function from a loaded map.
"""
from __future__ import annotations

import mmap
import select
import struct
import time
TYPE_CHECKING = False  # typing costs ~3 ms at start-up; checkers treat this name as True

if TYPE_CHECKING:
    from typing import Any, Callable

from .errors import ObjectFormatError, RawprobeError
from .uapi import MapType

__all__ = [
    "RingBuffer",
    "map_counter",
    "BPF_RINGBUF_BUSY_BIT",
    "BPF_RINGBUF_DISCARD_BIT",
    "BPF_RINGBUF_HDR_SZ",
]

BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
_LEN_MASK = BPF_RINGBUF_DISCARD_BIT - 1
_U64 = struct.Struct("=Q")

# One run of consecutive committed records: (pos, count, length, stride).
Run = tuple


class _Reader:
    """Lifetime and the bounded wait, shared with :class:`rawprobe.perfbuf.PerfBuffer`."""

    _closed = True
    _bound = 0.2          # seconds: the longest sleep in epoll_wait

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise RawprobeError(f"the {type(self).__name__} is closed")

    def _wait_read(self, timeout_ms: int | None, limit: int,
                   drain: Callable[[int], int], wait: Callable[[float], object]) -> int:
        """``drain(limit)``; if that found nothing, sleep in ``wait(seconds)``
        (an epoll wait) for at most ``wakeup_bound_ms`` at a time and drain
        again, until something arrives or ``timeout_ms`` (negative: never)
        runs out."""
        n = drain(limit)
        if n or timeout_ms == 0:
            return n
        forever = timeout_ms is None or timeout_ms < 0
        deadline = 0.0 if forever else time.monotonic() + timeout_ms / 1000.0
        while True:
            if forever:
                step = self._bound
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                step = min(left, self._bound)
            ready = wait(step)
            n = drain(limit)
            if n:
                return n
            if ready:
                # Readable but nothing to deliver (a ring's record at our
                # position is still BUSY: level-triggered epoll counts reserved
                # bytes; or only a loss report came).  Yield briefly.
                time.sleep(0.00005)


class RingBuffer(_Reader):
    """Reads records that BPF programs write into a ``BPF_MAP_TYPE_RINGBUF``.

    ``ring`` is a loaded ``Map`` (anything with ``fd`` and ``max_entries``) or
    a raw map fd (then ``max_entries`` is asked from the kernel).  The
    RingBuffer maps the ring but does not own the map's fd.

    Three ways to read, all of which consume what they return:

    * ``poll(timeout_ms, callback, max=None, fmt=None)``: wait for data, call
      ``callback(view)`` per record; ``view`` is a ``memoryview`` over a
      private copy, so it may be kept (with ``fmt``: the decoded tuple).
      Returns the number of records handled.
    * ``read_batch(max=None, timeout_ms=0)`` -> ``list[bytes]``.
    * ``read_structs(fmt, max=None, timeout_ms=0)`` -> ``list[tuple]``: the fast
      path for fixed-layout records, decoded at C speed with
      ``struct.iter_unpack`` over runs of same-sized records.

    ``peek(fmt)`` decodes the next record without consuming it (to act on it
    before reading the batch).

    ``fileno()`` is the map fd, pollable (``EPOLLIN`` while unconsumed data
    exists) for use in the caller's own epoll loop; after it reports readable,
    call any read method.  Each read that returns fewer records than its
    ``max`` guarantees a wake-up for the next record (see the module notes),
    so edge-triggered loops are safe as long as they drain that far.

    ``lost`` is the producer's drop counter as a function (see the module
    notes and :func:`map_counter`).  ``wakeup_bound_ms`` caps each sleep in
    ``epoll_wait`` so that a missed wake-up costs at most that much latency.

    Not thread-safe: one consumer per ring.  Close with ``close()`` or use it
    as a context manager.  Linux >= 5.8.
    """

    def __init__(self, ring: Any, *, lost: Callable[[], int] | None = None,
                 wakeup_bound_ms: int = 200) -> None:
        self._closed = True
        self._views: list[memoryview] = []
        self._mmaps: list[mmap.mmap] = []
        self._epoll: Any = None
        self._lost_fn = lost
        self._bound = max(1, int(wakeup_bound_ms)) / 1000.0
        fd, size = _map_fd_and_size(ring, MapType.RINGBUF, "BPF_MAP_TYPE_RINGBUF")
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ObjectFormatError(
                f"ring buffer size {size} is not a power of two multiple of the "
                f"page size; is fd {fd} a BPF_MAP_TYPE_RINGBUF map?")
        from ._sys import fence
        page = mmap.PAGESIZE
        try:
            cons_mm = mmap.mmap(fd, page, flags=mmap.MAP_SHARED,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._mmaps.append(cons_mm)
            prod_mm = mmap.mmap(fd, page + 2 * size, flags=mmap.MAP_SHARED,
                                prot=mmap.PROT_READ, offset=page)
            self._mmaps.append(prod_mm)
        except OSError as e:
            self._release()
            from .errors import SyscallError
            raise SyscallError("mmap(ringbuf)", e.errno or 0,
                               "is this fd a BPF_MAP_TYPE_RINGBUF map?") from None
        self._fd = fd
        cons = memoryview(cons_mm)
        prod = memoryview(prod_mm)
        self._views += [cons, prod]
        self._setup(cons[:8], prod[:8], prod[page:], size,
                    (fence.acquire_fence, fence.release_fence, fence.full_fence))

    @classmethod
    def _over_memory(cls, consumer: memoryview, producer: memoryview,
                     data: memoryview, size: int) -> RingBuffer:
        """A RingBuffer over caller-provided memory laid out like the kernel's
        (``data`` holds the ring twice); used to test the decoder."""
        self = cls.__new__(cls)
        self._closed = True
        self._views = []
        self._mmaps = []
        self._epoll = None
        self._lost_fn = None
        self._bound = 0.2
        self._fd = -1
        nop = lambda: None  # noqa: E731 -- private memory needs no fences
        self._setup(consumer, producer, data, size, (nop, nop, nop))
        return self

    def _setup(self, consumer: memoryview, producer: memoryview, data: memoryview,
               size: int, fences: tuple[Callable[[], None], ...]) -> None:
        cons_q = consumer[:8].cast("Q")
        prod_q = producer[:8].cast("Q")
        data = data[:2 * size]
        u32 = data.cast("I")
        self._views += [cons_q, prod_q, u32, data]
        self._cons_q = cons_q
        self._prod_q = prod_q
        self._data = data
        self._u32 = u32
        self._size = size
        self._mask = size - 1
        self._acquire_fence, self._release_fence, self._full_fence = fences
        self._cons = cons_q[0]
        self._structs: dict[tuple[str, int, int], struct.Struct] = {}
        self._closed = False

    # -- public API ---------------------------------------------------------

    @property
    def size(self) -> int:
        """Size of the data area in bytes (the map's ``max_entries``)."""
        return self._size

    @property
    def lost(self) -> int | None:
        """Records the producer failed to reserve, from the ``lost=`` counter
        given at construction; ``None`` when there is none (see module notes)."""
        return None if self._lost_fn is None else int(self._lost_fn())

    @property
    def pending(self) -> int:
        """Bytes written (or reserved) but not yet consumed."""
        self._check_open()
        return self._prod_q[0] - self._cons

    def fileno(self) -> int:
        """The ring map's fd: poll it for ``EPOLLIN``."""
        self._check_open()
        return self._fd

    def poll(self, timeout_ms: int, callback: Callable[[Any], object],
             max: int | None = None, fmt: struct.Struct | str | None = None) -> int:
        """Wait up to ``timeout_ms`` (negative: forever, 0: do not wait) for
        records, then call ``callback(view)`` for each one available, in
        order.  Returns how many were handled (0 on timeout).  With ``fmt``
        the callback gets each record decoded as by :meth:`read_structs`
        (a tuple, unpacked at C speed) instead of the bytes.

        If the callback raises, the records before it and the one it raised on
        are consumed and the exception propagates.
        """
        if fmt is None:
            return self._read(timeout_ms, max,
                              lambda runs, end: self._emit_calls(runs, end, callback))
        if not isinstance(fmt, struct.Struct):
            fmt = struct.Struct(fmt)
        done = [0]
        return self._read(timeout_ms, max, lambda runs, end: self._emit_struct_calls(
            runs, end, fmt, callback, done))

    def consume(self, callback: Callable[[Any], object], max: int | None = None,
                fmt: struct.Struct | str | None = None) -> int:
        """``poll(0, callback, max, fmt)``: handle what is available without waiting."""
        return self.poll(0, callback, max, fmt)

    def read_batch(self, max: int | None = None, timeout_ms: int = 0) -> list[bytes]:
        """The available records (at most ``max``) as ``bytes``, in order,
        waiting up to ``timeout_ms`` for the first one."""
        out: list[bytes] = []
        self._read(timeout_ms, max, lambda runs, end: self._emit_bytes(runs, end, out))
        return out

    def read_structs(self, fmt: struct.Struct | str, max: int | None = None,
                     timeout_ms: int = 0) -> list[tuple]:
        """The available records decoded with ``fmt``, one tuple per record.

        Every record must be at least ``fmt.size`` bytes; longer records are
        decoded from their start (so a ``'@'`` format without trailing padding
        still matches ``sizeof`` of the C struct).  Runs of same-sized records
        are decoded by one ``struct.iter_unpack`` call; a ``max`` of a few
        thousand keeps the batch in cache and is fastest.  A record shorter than
        ``fmt`` stops the batch before it; if it is the first one,
        ``ObjectFormatError`` is raised and it stays unconsumed (read it with
        ``read_batch``).
        """
        if not isinstance(fmt, struct.Struct):
            fmt = struct.Struct(fmt)
        out: list[tuple] = []
        self._read(timeout_ms, max,
                   lambda runs, end: self._emit_structs(runs, end, fmt, out))
        return out

    def peek(self, fmt: struct.Struct) -> tuple | None:
        """The record at the consumer position decoded with ``fmt`` (from its
        start), WITHOUT consuming it; None if there is none yet, it is still
        BUSY, discarded, or shorter than ``fmt``.  The cheapest look at the
        next record (no copy, no list, a few lines of Python): for acting on it
        at once, before the batch is read by one of the methods above, which
        return it again."""
        if self._closed:
            self._check_open()
        cons = self._cons
        if self._prod_q[0] == cons:
            return None
        self._acquire_fence()
        off = cons & self._mask
        hdr = self._u32[off >> 2]
        if hdr & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) or (hdr & _LEN_MASK) < fmt.size:
            return None
        self._acquire_fence()
        return fmt.unpack_from(self._data, off + 8)

    def close(self) -> None:
        """Unmap the ring and close the internal epoll fd (idempotent)."""
        self._closed = True
        self._release()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd} size={self._size}"
        return f"<RingBuffer {state}>"

    # -- waiting ------------------------------------------------------------

    def _read(self, timeout_ms: int | None, max: int | None,
              emit: Callable[[list[Run], int], tuple[int, int]]) -> int:
        self._check_open()
        limit = (1 << 62) if max is None else int(max)
        if limit <= 0:
            return 0
        if self._fd < 0:          # memory image (tests): nothing to wait on
            timeout_ms = 0
        return self._wait_read(timeout_ms, limit, lambda k: self._drain(k, emit),
                               lambda seconds: self._epoll_obj().poll(seconds, 1))

    def _epoll_obj(self) -> Any:
        if self._epoll is None:
            ep = select.epoll()
            try:
                ep.register(self._fd, select.EPOLLIN)
            except OSError:
                ep.close()
                raise
            self._epoll = ep
        return self._epoll

    # -- the consumer loop (see the module docstring for the ordering) -------

    def _drain(self, limit: int,
               emit: Callable[[list[Run], int], tuple[int, int]]) -> int:
        total = 0
        cons = self._cons
        acquire = self._acquire_fence       # no-ops on x86 (see module notes)
        while True:
            prod = self._prod_q[0]                       # (a)
            acquire()
            runs, end = self._scan(cons, prod, limit - total)   # (b)
            if end == cons:
                return total
            acquire()
            n, end = emit(runs, end)                     # (c)
            if end == cons:
                return total
            self._release_fence()
            self._cons_q[0] = end                        # (d)
            self._cons = cons = end
            total += n
            self._full_fence()                           # (e)
            if total >= limit:
                return total

    def _scan(self, cons: int, prod: int, limit: int) -> tuple[list[Run], int]:
        """Committed records in ``[cons, prod)``, at most ``limit`` of them, as
        runs of equal-sized records; discarded ones are skipped.  Returns the
        runs and the position after the last record walked."""
        u32 = self._u32
        mask = self._mask
        if prod - cons > self._size or prod < cons:
            raise ObjectFormatError(
                f"ring buffer positions are inconsistent (consumer {cons}, producer "
                f"{prod}, size {self._size}); is another process consuming this ring?")
        runs: list[Run] = []
        pos = cons
        n = 0
        while pos < prod and n < limit:
            off = pos & mask
            hdr = u32[off >> 2]
            if hdr & BPF_RINGBUF_BUSY_BIT:
                break
            length = hdr & _LEN_MASK
            stride = (length + 15) & ~7
            if stride > prod - pos:
                raise ObjectFormatError(
                    f"ring buffer record at position {pos} claims {length} bytes, past "
                    f"the producer position {prod}; the ring is corrupt or shared "
                    f"with another consumer")
            if hdr & BPF_RINGBUF_DISCARD_BIT:
                pos += stride
                continue
            count = 1
            rest = min((prod - pos) // stride, limit - n)
            if rest > 1 and u32[(off + stride) >> 2] == hdr:
                count = self._same_headers(off, stride, hdr, rest)
            runs.append((pos, count, length, stride))
            pos += count * stride
            n += count
        return runs, pos

    def _same_headers(self, off: int, stride: int, hdr: int, rest: int) -> int:
        """How many of the next ``rest`` records, starting at data offset
        ``off`` and ``stride`` apart, carry exactly the header word ``hdr``
        (the first two are known to).  Compares header words in C with strided
        ``memoryview`` slices, in growing chunks so a short run costs little."""
        u32 = self._u32
        step = stride >> 2
        base = off >> 2
        word = struct.pack("=I", hdr)
        done = 2
        chunk = 14
        while done < rest:
            k = min(chunk, rest - done)
            start = base + done * step
            got = u32[start:start + k * step:step].tobytes()
            want = word * k
            if got != want:
                diff = int.from_bytes(got, "little") ^ int.from_bytes(want, "little")
                return done + ((diff & -diff).bit_length() - 1) // 32
            done += k
            chunk = min(chunk * 4, 1 << 16)
        return rest

    # -- emitters: turn runs into results; return (records, new position) ---

    def _emit_bytes(self, runs: list[Run], end: int, out: list[bytes]) -> tuple[int, int]:
        data = self._data
        mask = self._mask
        n = 0
        for pos, count, length, stride in runs:
            off = pos & mask
            if count == 1:
                out.append(data[off + 8:off + 8 + length].tobytes())
            else:
                blob = data[off:off + count * stride].tobytes()
                out.extend([blob[o:o + length] for o in range(8, 8 + count * stride, stride)])
            n += count
        return n, end

    def _emit_calls(self, runs: list[Run], end: int,
                    callback: Callable[[memoryview], object]) -> tuple[int, int]:
        data = self._data
        mask = self._mask
        n = 0
        for pos, count, length, stride in runs:
            off = pos & mask
            view = memoryview(data[off:off + count * stride].tobytes())
            o = 8
            try:
                for o in range(8, 8 + count * stride, stride):
                    callback(view[o:o + length])
            except BaseException:
                # Consume up to and including the record that raised.
                self._commit(pos + o - 8 + stride)
                raise
            n += count
        return n, end

    def _emit_structs(self, runs: list[Run], end: int, fmt: struct.Struct,
                      out: list[tuple]) -> tuple[int, int]:
        n = 0
        for run in runs:
            rows = self._decode_run(run, fmt, first=not (n or out))
            if rows is None:
                return n, run[0]
            out.extend(rows)
            n += run[1]
        return n, end

    def _emit_struct_calls(self, runs: list[Run], end: int, fmt: struct.Struct,
                           callback: Callable[[tuple], object], state: list[int]) -> tuple[int, int]:
        n = 0
        for run in runs:
            rows = self._decode_run(run, fmt, first=not (n or state[0]))
            if rows is None:
                return n, run[0]
            i = 0
            try:
                for i, row in enumerate(rows):
                    callback(row)
            except BaseException:
                self._commit(run[0] + (i + 1) * run[3])
                raise
            n += run[1]
            state[0] += run[1]
        return n, end

    def _decode_run(self, run: Run, fmt: struct.Struct, first: bool) -> list[tuple] | None:
        """The records of ``run`` decoded with ``fmt``; None if they are too
        short for it (an error if ``first``: nothing could be returned)."""
        pos, count, length, stride = run
        if length < fmt.size:
            if first:
                raise ObjectFormatError(
                    f"ring buffer record at position {pos} has {length} bytes but "
                    f"the struct format {fmt.format!r} needs {fmt.size}; read it "
                    f"with read_batch()")
            return None
        off = pos & self._mask
        st = self._run_struct(fmt, length, stride)
        if count == 1:
            return [st.unpack_from(self._data, off)]
        return list(st.iter_unpack(self._data[off:off + count * stride]))

    def _run_struct(self, fmt: struct.Struct, length: int, stride: int) -> struct.Struct:
        """``fmt`` widened to a whole record: header skipped, padding after."""
        key = (fmt.format, length, stride)
        st = self._structs.get(key)
        if st is None:
            text = fmt.format
            order = text[0] if text[:1] in ("@", "=", "<", ">", "!") else "@"
            body = text[1:] if text[:1] in ("@", "=", "<", ">", "!") else text
            st = struct.Struct(f"{order}8x{body}{stride - 8 - fmt.size}x")
            if st.size != stride:  # native alignment would shift fields
                raise ObjectFormatError(
                    f"struct format {fmt.format!r} cannot be laid over {length}-byte "
                    f"records; use an explicit byte order ('<', '=') and padding")
            self._structs[key] = st
        return st

    def _commit(self, end: int) -> None:
        self._release_fence()
        self._cons_q[0] = end
        self._cons = end
        self._full_fence()

    # -- lifetime -----------------------------------------------------------

    def _release(self) -> None:
        ep, self._epoll = self._epoll, None
        if ep is not None:
            ep.close()
        views, self._views = self._views, []
        for v in reversed(views):
            v.release()
        mms, self._mmaps = self._mmaps, []
        for m in mms:
            m.close()


def _map_fd_and_size(m: Any, want: int, type_name: str) -> tuple[int, int]:
    """``(fd, max_entries)`` of a loaded Map or a raw map fd of type ``want``."""
    if isinstance(m, int):
        from ._sys import bpf
        info = bpf.map_get_info(m)
        what, mtype, size = f"fd {m}", info["type"], info["max_entries"]
    else:
        fd = m.fd if isinstance(m.fd, int) else m.fd.fileno()
        what, mtype, size = f"map {getattr(m, 'name', fd)!r}", getattr(m, "type", want), \
            m.max_entries
        m = fd
    if mtype != want:
        raise ObjectFormatError(f"{what} is a map of type {mtype}, not {type_name}")
    return m, int(size)


def map_counter(m: Any, key: int = 0) -> Callable[[], int]:
    """A ``lost=`` function for the usual drop counter: a u64 at ``key`` of a
    loaded ``ARRAY`` or ``PERCPU_ARRAY`` map (per-CPU values are summed)."""
    if getattr(m, "value_size", 8) != 8:
        raise ObjectFormatError(
            f"map {getattr(m, 'name', m)!r} has {m.value_size}-byte values; a drop "
            f"counter is one u64")

    def read() -> int:
        raw = m.lookup(key)
        return sum(x for (x,) in _U64.iter_unpack(raw)) if raw else 0
    return read
