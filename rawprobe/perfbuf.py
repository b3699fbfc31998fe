"""Consumer of a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` (Linux >= 4.4), for kernels
without the BPF ring buffer (< 5.8); prefer :mod:`rawprobe.ringbuf` elsewhere.

How it works.  For every CPU the reader opens a software perf event
(``PERF_TYPE_SOFTWARE`` / ``PERF_COUNT_SW_BPF_OUTPUT``, ``sample_type =
PERF_SAMPLE_RAW``), maps its ring (one metadata page, ``struct
perf_event_mmap_page``, then ``2^n`` data pages) read-write, and stores the
event fd in the map at index ``cpu``.  ``bpf_perf_event_output(ctx, &map,
BPF_F_CURRENT_CPU, data, size)`` then appends a ``PERF_RECORD_SAMPLE`` to the
running CPU's ring.  Records are ``struct perf_event_header`` (``u32 type``,
``u16 misc``, ``u16 size``) followed by the body; a sample's body is ``u32
size`` then the raw bytes.  The kernel rounds the raw part so that ``4 + size``
is a multiple of 8: a 24-byte struct arrives as 28 bytes, and the padding is
whatever the ring held there before (the kernel skips it, it does not clear it).
When a ring is full the kernel drops the sample and later writes a
``PERF_RECORD_LOST`` (``u64 id``, ``u64 lost``); those counts add up in
:attr:`PerfBuffer.lost`.  The data area is mapped once, so a record that
runs past its end continues at its start and is copied together.

Memory ordering.  The kernel writes a record, then ``smp_wmb()``, then
``data_head``; before writing it reads ``data_tail`` followed by a full
barrier, so it never overwrites what the reader has not released.  The reader
loads ``data_head``, reads the records below it, then stores ``data_tail``.
On x86-64 (TSO) plain loads and stores keep exactly that order: loads are not
reordered with older loads (head before records) and stores are not reordered
with older loads (records before tail).  The reader calls
``rawprobe._sys.fence.acquire_fence()`` after loading ``data_head`` and
``release_fence()`` before storing ``data_tail``, once per batch: empty on
x86, full barriers elsewhere (arm64).  Unlike the BPF ring buffer, the
perf ring's wake-ups do not depend on the reader's position (every
``wakeup_events`` samples, or every ``watermark`` bytes, wake the poller),
so there is no lost wake-up to prevent; with a watermark a trickle of small
samples could wait indefinitely, which is why :meth:`PerfBuffer.poll` also
never sleeps longer than ``wakeup_bound_ms`` before looking at the rings.

Ordering guarantees: samples of one CPU arrive in the order they were written;
there is no order across CPUs (compare timestamps in the samples if needed).
"""
from __future__ import annotations

import mmap
import os
import select
import struct

from .errors import ObjectFormatError, RawprobeError
from .ringbuf import _map_fd_and_size, _Reader
from .uapi import MapType, PerfRecordType, PerfSampleFormat, PerfSwId, PerfType

# No run-time ``typing`` (it imports re, enum, collections...: several ms).
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Iterable

__all__ = ["PerfBuffer", "online_cpus"]

# module globals: the read loop compares every record's type with them
_RECORD_SAMPLE = PerfRecordType.SAMPLE
_RECORD_LOST = PerfRecordType.LOST

# struct perf_event_mmap_page: u64 indexes of data_head, data_tail,
# data_offset, data_size (offsets 1024..1048, fixed since Linux 3.x / 4.1).
_HEAD, _TAIL, _DATA_OFFSET, _DATA_SIZE = 128, 129, 130, 131
_HDR = struct.Struct("=IHH")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_KEY = struct.Struct("=I")


def online_cpus() -> list[int]:
    """The CPUs in /sys/devices/system/cpu/online (``"0-3,6"`` -> ``[0, 1, 2, 3, 6]``)."""
    try:
        with open("/sys/devices/system/cpu/online", encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


class _CpuRing:
    """One CPU's perf event, its mapping and our read position."""
    __slots__ = ("cpu", "fd", "mm", "meta", "data", "size", "mask", "tail", "views")

    def __init__(self, cpu: int, fd: Any, mm: mmap.mmap, pages: int) -> None:
        self.cpu = cpu
        self.fd = fd
        self.mm = mm
        whole = memoryview(mm)
        meta = whole[:mmap.PAGESIZE].cast("Q")
        offset = meta[_DATA_OFFSET] or mmap.PAGESIZE      # 0 before Linux 4.1
        size = meta[_DATA_SIZE] or pages * mmap.PAGESIZE
        self.meta = meta
        self.data = whole[offset:offset + size]
        self.size = size
        self.mask = size - 1
        self.tail = meta[_TAIL]
        self.views = [whole, meta, self.data]

    def release(self) -> None:
        for v in reversed(self.views):
            v.release()
        self.views = []
        self.mm.close()


class PerfBuffer(_Reader):
    """Reads the samples BPF programs send with ``bpf_perf_event_output``.

    ``events`` is a loaded ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` map (anything
    with ``fd`` and ``max_entries``) or its raw fd.  Each CPU gets a ring of
    ``pages`` data pages (a power of two).  By default every sample wakes the
    poller (``wakeup_events = 1``); with ``watermark`` (bytes) the kernel
    wakes it only once that much data is waiting.  ``cpus`` defaults to the
    online CPUs that fit in the map.  ``on_lost(cpu, count)`` is called for
    each ``PERF_RECORD_LOST``; :attr:`lost` sums them.

    * ``poll(timeout_ms, callback)``: wait, then ``callback(cpu, data)`` for
      each sample (``data`` is ``bytes``, including the kernel's padding).
    * ``read_batch(max=None, timeout_ms=0)`` -> ``list[(cpu, bytes)]``.
    * ``fileno()``: an epoll fd covering every CPU's event, for the caller's
      own event loop.

    ``close()`` (or the context manager) removes the map entries it set and
    releases every mapping and fd.  Not thread-safe.
    """

    def __init__(self, events: Any, *, pages: int = 8, watermark: int = 0,
                 cpus: Iterable[int] | None = None,
                 on_lost: Callable[[int, int], object] | None = None,
                 wakeup_bound_ms: int = 200) -> None:
        self._closed = True
        self._rings: list[_CpuRing] = []
        self._keys: list[bytes] = []
        self._epoll: Any = None
        self._map_fd = -1
        if pages <= 0 or pages & (pages - 1):
            raise RawprobeError(f"pages must be a power of two, not {pages}")
        if watermark < 0 or watermark >= pages * mmap.PAGESIZE:
            raise RawprobeError(f"watermark {watermark} must be below the ring size "
                                f"{pages * mmap.PAGESIZE}")
        self._map_fd, max_entries = _map_fd_and_size(
            events, MapType.PERF_EVENT_ARRAY, "BPF_MAP_TYPE_PERF_EVENT_ARRAY")
        want = online_cpus() if cpus is None else sorted(set(cpus))
        cpu_list = [c for c in want if c < max_entries]
        if not cpu_list:
            raise ObjectFormatError(
                f"the perf event array has {max_entries} entries, too few for CPUs "
                f"{want}; give it max_entries >= the number of CPUs")
        self._on_lost = on_lost
        self._lost = 0
        self._lost_by_cpu = {c: 0 for c in cpu_list}
        self._bound = max(1, int(wakeup_bound_ms)) / 1000.0
        self._pages = pages
        from ._sys import bpf, perf
        from ._sys.fence import acquire_fence, release_fence
        self._acquire_fence = acquire_fence
        self._release_fence = release_fence
        self._bpf = bpf
        self._closed = False
        try:
            self._epoll = select.epoll()
            attr = perf.perf_attr(type=PerfType.SOFTWARE, config=PerfSwId.BPF_OUTPUT,
                                  sample_type=PerfSampleFormat.RAW, sample_period=1)
            if watermark:
                attr.watermark = 1
                attr.wakeup_watermark = watermark
            else:
                attr.wakeup_events = 1
            for cpu in cpu_list:
                self._open_cpu(perf, attr, cpu)
        except BaseException:
            self.close()
            raise

    def _open_cpu(self, perf: Any, attr: Any, cpu: int) -> None:
        fd = perf.perf_event_open(attr, pid=-1, cpu=cpu, group_fd=-1)
        try:
            mm = mmap.mmap(fd.fileno(), (1 + self._pages) * mmap.PAGESIZE,
                           flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            fd.close()
            from .errors import SyscallError
            raise SyscallError(f"mmap(perf event, cpu {cpu})", e.errno or 0,
                               "try fewer pages, or raise perf_event_mlock_kb") from None
        ring = _CpuRing(cpu, fd, mm, self._pages)
        self._rings.append(ring)
        perf.enable(fd)
        key = _KEY.pack(cpu)
        self._bpf.map_update_elem(self._map_fd, key, _KEY.pack(fd.fileno()))
        self._keys.append(key)
        self._epoll.register(fd.fileno(), select.EPOLLIN)

    # -- public API ---------------------------------------------------------

    @property
    def cpus(self) -> list[int]:
        """The CPUs this reader listens on."""
        return [r.cpu for r in self._rings]

    @property
    def lost(self) -> int:
        """Samples the kernel dropped because a ring was full (from
        ``PERF_RECORD_LOST`` records read so far)."""
        return self._lost

    @property
    def lost_by_cpu(self) -> dict[int, int]:
        return dict(self._lost_by_cpu)

    def fileno(self) -> int:
        """An epoll fd that is readable when any CPU's ring has news."""
        self._check_open()
        return self._epoll.fileno()

    def poll(self, timeout_ms: int, callback: Callable[[int, bytes], object],
             max: int | None = None) -> int:
        """Wait up to ``timeout_ms`` (negative: forever, 0: do not wait), then
        call ``callback(cpu, data)`` for each available sample, CPU by CPU
        and in order within a CPU.  Returns the number of samples handled.
        If the callback raises, the samples up to and including that one are
        consumed and the exception propagates."""
        return self._read(timeout_ms, max, callback)

    def consume(self, callback: Callable[[int, bytes], object],
                max: int | None = None) -> int:
        """``poll(0, callback)``."""
        return self.poll(0, callback, max)

    def read_batch(self, max: int | None = None,
                   timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        """Available samples as ``(cpu, data)``, waiting up to ``timeout_ms``."""
        out: list[tuple[int, bytes]] = []
        add = out.append
        self._read(timeout_ms, max, lambda cpu, data: add((cpu, data)))
        return out

    def close(self) -> None:
        """Remove the map entries, unmap the rings, close every fd (idempotent)."""
        self._closed = True
        keys, self._keys = self._keys, []
        for key in keys:
            try:
                self._bpf.map_delete_elem(self._map_fd, key)
            except (RawprobeError, OSError, ValueError):
                pass   # the map may be gone already; its entries went with it
        rings, self._rings = self._rings, []
        for r in rings:
            r.release()
            r.fd.close()
        ep, self._epoll = self._epoll, None
        if ep is not None:
            ep.close()

    def __repr__(self) -> str:
        if self._closed:
            return "<PerfBuffer closed>"
        return f"<PerfBuffer cpus={self.cpus} pages={self._pages} lost={self._lost}>"

    # -- reading --------------------------------------------------------------

    def _read(self, timeout_ms: int | None, max: int | None,
              emit: Callable[[int, bytes], object]) -> int:
        self._check_open()
        limit = (1 << 62) if max is None else int(max)
        if limit <= 0:
            return 0
        return self._wait_read(timeout_ms, limit, lambda k: self._drain_all(k, emit),
                               lambda seconds: self._epoll.poll(seconds, len(self._rings)))

    def _drain_all(self, limit: int, emit: Callable[[int, bytes], object]) -> int:
        n = 0
        for r in self._rings:
            if n >= limit:
                break
            n += self._drain(r, limit - n, emit)
        return n

    def _drain(self, r: _CpuRing, limit: int, emit: Callable[[int, bytes], object]) -> int:
        head = r.meta[_HEAD]
        tail = pos = r.tail
        if head == tail:
            return 0
        if head - tail > r.size or head < tail:
            raise ObjectFormatError(
                f"perf ring of CPU {r.cpu} has inconsistent positions (head {head}, "
                f"tail {tail}, size {r.size}); is another reader using it?")
        self._acquire_fence()
        data = r.data
        size = r.size
        mask = r.mask
        cpu = r.cpu
        n = 0
        unpack_hdr = _HDR.unpack_from
        try:
            while pos < head and n < limit:
                off = pos & mask
                if off + 8 <= size:
                    typ, _misc, sz = unpack_hdr(data, off)
                else:
                    typ, _misc, sz = unpack_hdr(_wrapped(data, off, 8, size))
                if sz < 8 or sz > head - pos:
                    raise ObjectFormatError(
                        f"perf record of {sz} bytes at position {pos} on CPU {cpu} does "
                        f"not fit below the head {head}; the ring is corrupt")
                rec_pos = pos
                pos += sz
                if typ == _RECORD_SAMPLE:
                    if off + sz <= size:
                        raw = _U32.unpack_from(data, off + 8)[0] if sz >= 12 else -1
                        if raw < 0 or 12 + raw > sz:
                            raise _bad_sample(cpu, rec_pos, raw, sz)
                        sample = data[off + 12:off + 12 + raw].tobytes()
                    else:
                        rec = _wrapped(data, off, sz, size)
                        raw = _U32.unpack_from(rec, 8)[0] if sz >= 12 else -1
                        if raw < 0 or 12 + raw > sz:
                            raise _bad_sample(cpu, rec_pos, raw, sz)
                        sample = rec[12:12 + raw]
                    n += 1
                    emit(cpu, sample)
                elif typ == _RECORD_LOST and sz >= 24:
                    body = (data[off:off + sz].tobytes() if off + sz <= size
                            else _wrapped(data, off, sz, size))
                    count = _U64.unpack_from(body, 16)[0]
                    self._lost += count
                    self._lost_by_cpu[cpu] += count
                    if self._on_lost is not None:
                        self._on_lost(cpu, count)
                # other record types (none expected for BPF output) are skipped
        finally:
            if pos != tail:
                self._release_fence()
                r.meta[_TAIL] = pos
                r.tail = pos
        return n


def _wrapped(data: memoryview, off: int, length: int, size: int) -> bytes:
    """``length`` bytes at ``off`` of a ring of ``size`` bytes, wrapping to its start."""
    first = data[off:min(size, off + length)].tobytes()
    return first + data[:length - len(first)].tobytes()


def _bad_sample(cpu: int, pos: int, raw: int, sz: int) -> ObjectFormatError:
    return ObjectFormatError(
        f"perf sample at position {pos} on CPU {cpu} claims {raw} raw bytes in a "
        f"{sz}-byte record; the ring is corrupt")
