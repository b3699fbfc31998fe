#!/usr/bin/env python3
"""How many ring buffer events per second Python consumes, each parsed into
its five fields.

The producer is tests/bpf/ringbuf_bench.bpf.c: ``flood`` writes N fixed-size
events (u64 seq, u64 ts, u32 pid, u32 cpu, u64 value) in a bpf_loop, run with
BPF_PROG_TEST_RUN.  Two scenarios, each timing three consumers:

* drain: the ring (32 MiB, ~839k events) is filled first, then drained.
  Pure consumer speed, the producer idle.
* live: a child process pinned to the last CPU floods the ring without pause
  while the consumer, pinned to the first, runs for a fixed time; the ring
  stays full, so consumption is the bottleneck and failed reservations count
  as drops.

Consumers:
  callback   rb.poll(0, cb, max=BATCH): cb(view) unpacks the five fields
  cb+fmt     rb.poll(0, cb, max=BATCH, fmt=EVENT): cb gets the decoded tuple
  structs    rb.read_structs(fmt, max=BATCH): iter_unpack over runs
  baseline   (drain only) a plain Python loop of struct.unpack_from over the
             same bytes already copied out of the ring: what a hand-written
             consumer costs before it even checks a header

Usage: python3 tools/bench_ringbuf.py [--rounds 5] [--seconds 2] [--batch 1024]
Needs root.  Prints the best and the median of the rounds, by wall clock and
by the consumer thread's CPU time (steadier when other work shares the CPUs).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import rawprobe  # noqa: E402
from rawprobe._sys import bpf  # noqa: E402
from rawprobe.ringbuf import RingBuffer, map_counter  # noqa: E402

OBJ = os.path.join(ROOT, "tests", "bpf", "ringbuf_bench.bpf.o")
EVENT = struct.Struct("<QQIIQ")
STRIDE = 8 + EVENT.size
BPF_RB_NO_WAKEUP = 1
MAX_LOOP = 1 << 23


class Timer:
    """Wall-clock and this thread's CPU time: on a busy machine the CPU-time
    rate says what the consumer costs, the wall-clock rate what it got."""

    def __enter__(self) -> "Timer":
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.thread_time() - self.cpu

    def rates(self, n: int) -> tuple[float, float]:
        return n / self.wall, n / max(self.cpu, 1e-9)


def flood(prog_fd: int, count: int, first: int = 0, flags: int = BPF_RB_NO_WAKEUP) -> int:
    sent = 0
    while count > 0:
        n = min(count, MAX_LOOP)
        sent += bpf.prog_test_run(prog_fd, ctx_in=struct.pack("=3Q", n, first + sent, flags),
                                  repeat=0)
        count -= n
    return sent


def fill(rb: RingBuffer, prog_fd: int) -> int:
    rb.read_batch()                     # start from an empty ring
    return flood(prog_fd, rb.size // STRIDE - 1)


def drain_callback(rb: RingBuffer, prog_fd: int, batch: int) -> tuple[float, float]:
    n = fill(rb, prog_fd)
    unpack = EVENT.unpack
    fields = [0]

    def cb(view):
        seq, ts, pid, cpu, value = unpack(view)
        fields[0] = seq
    got = 0
    with Timer() as t:
        while True:
            k = rb.poll(0, cb, max=batch)
            if not k:
                break
            got += k
    assert got == n and fields[0] == n - 1, (got, n, fields)
    return t.rates(n)


def drain_callback_fmt(rb: RingBuffer, prog_fd: int, batch: int) -> tuple[float, float]:
    n = fill(rb, prog_fd)
    fields = [0]

    def cb(row):
        seq, ts, pid, cpu, value = row
        fields[0] = seq
    got = 0
    with Timer() as t:
        while True:
            k = rb.poll(0, cb, max=batch, fmt=EVENT)
            if not k:
                break
            got += k
    assert got == n and fields[0] == n - 1, (got, n, fields)
    return t.rates(n)


def drain_structs(rb: RingBuffer, prog_fd: int, batch: int) -> tuple[float, float]:
    n = fill(rb, prog_fd)
    got = 0
    last = None
    with Timer() as t:
        while True:
            events = rb.read_structs(EVENT, max=batch)
            if not events:
                break
            got += len(events)
            last = events[-1]
    assert got == n and last[0] == n - 1, (got, n, last)
    return t.rates(n)


def drain_baseline(rb: RingBuffer, prog_fd: int, batch: int) -> tuple[float, float]:
    n = fill(rb, prog_fd)
    blob = rb._data[(rb._cons & rb._mask):(rb._cons & rb._mask) + n * STRIDE].tobytes()
    rb.read_batch()
    unpack_from = EVENT.unpack_from
    got = 0
    with Timer() as t:
        for start in range(0, n * STRIDE, batch * STRIDE):
            end = min(n * STRIDE, start + batch * STRIDE)
            events = [unpack_from(blob, off + 8) for off in range(start, end, STRIDE)]
            got += len(events)
    assert got == n
    return t.rates(n)


def live(rb: RingBuffer, prog_fd: int, seconds: float, mode: str, batch: int,
         lost) -> tuple[float, float, int]:
    rb.read_batch()
    drops0 = lost()
    # BPF_PROG_TEST_RUN runs the program with preemption off: keep the
    # producer and the consumer on different CPUs.
    cpus = sorted(os.sched_getaffinity(0))
    pid = os.fork()
    if pid == 0:                         # producer: flood until killed
        try:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            os.sched_setaffinity(0, {cpus[-1]})
            first = 0
            while True:
                first += flood(prog_fd, 1 << 14, first)
        finally:
            os._exit(0)
    got = 0
    os.sched_setaffinity(0, {cpus[0]})
    try:
        unpack = EVENT.unpack
        box = [0]

        def cb(view):
            seq, ts, pid_, cpu, value = unpack(view)
            box[0] = seq
        deadline = time.perf_counter() + seconds
        with Timer() as t:
            while time.perf_counter() < deadline:
                if mode == "callback":
                    got += rb.poll(100, cb, max=batch)
                else:
                    got += len(rb.read_structs(EVENT, max=batch, timeout_ms=100))
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, cpus)
    wall, cpu = t.rates(got)
    return wall, cpu, lost() - drops0


def fmt(rates: list[float]) -> str:
    return f"best {max(rates) / 1e6:5.2f}  median {statistics.median(rates) / 1e6:5.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args()

    with rawprobe.load(OBJ) as coll:
        prog_fd = coll.programs["flood"].fd
        lost = map_counter(coll.maps["drops"])
        with RingBuffer(coll.maps["rb"], lost=lost) as rb:
            print(f"ring {rb.size >> 20} MiB, {rb.size // STRIDE - 1} events of "
                  f"{EVENT.size} bytes (5 fields) per fill; cpus {os.cpu_count()}; "
                  f"loadavg {os.getloadavg()[0]:.2f}")
            t0 = time.perf_counter()
            n = fill(rb, prog_fd)
            print(f"producer (bpf_loop, BPF_PROG_TEST_RUN): "
                  f"{n / (time.perf_counter() - t0) / 1e6:.1f} M events/s")
            runs = {"baseline": drain_baseline, "callback": drain_callback,
                    "cb+fmt": drain_callback_fmt, "structs": drain_structs}
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
            for _ in range(args.rounds):
                for name, fn in runs.items():
                    res[name].append(fn(rb, prog_fd, args.batch))
            print(f"\ndrain a full ring ({args.rounds} rounds, batch {args.batch}), "
                  f"M events/s:")
            print(f"  {'':9s} {'wall clock':>24s}   {'CPU time':>24s}   CPU vs baseline")
            base = statistics.median(c for _, c in res["baseline"])
            for name in runs:
                wall = [w for w, _ in res[name]]
                cpu = [c for _, c in res[name]]
                print(f"  {name:9s} {fmt(wall):>24s}   {fmt(cpu):>24s}   "
                      f"x{statistics.median(cpu) / base:.2f}")
            print(f"\nlive flood from another process ({args.seconds:g} s each):")
            for mode in ("callback", "structs"):
                wall, cpu, drops = live(rb, prog_fd, args.seconds, mode, args.batch, lost)
                print(f"  {mode:9s} consumed {wall / 1e6:5.2f} M/s (per CPU second "
                      f"{cpu / 1e6:5.2f})   producer drops {drops / args.seconds / 1e6:5.2f} M/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
