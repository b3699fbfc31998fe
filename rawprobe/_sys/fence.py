"""``full_fence()``: a full memory barrier, for reading ring buffers in Python.

A BPF ring buffer (and a perf buffer) is shared memory between the kernel,
writing on any CPU, and us.  The consumer's protocol needs ordering:

* load ``producer_pos`` (``data_head``), *then* read the records below it
  (load-acquire);
* finish reading a record, *then* store ``consumer_pos`` (``data_tail``),
  which lets the kernel overwrite it (store-release);
* store ``consumer_pos``, *then* load ``producer_pos`` once more before
  sleeping in epoll (store->load): otherwise the kernel may see the old
  consumer position, skip the wake-up, and we sleep on a pending record.

Python has no atomics.  Each access from Python is its own opaque C call,
so the C compiler cannot reorder them; the CPU still may: x86-64 only
reorders a store with a later load (the third case), aarch64 reorders
everything.  So the consumer calls ``full_fence()`` between those steps.

The barrier has to come from a C library call (ABI mode cannot compile
one).  ``pthread_spin_trylock`` is real, cheap, never blocks, and:

* on x86-64 (glibc: ``lock cmpxchg``; musl: ``lock cmpxchg``) it always
  executes one locked instruction, a full barrier, whether or not it gets
  the lock -- so one call on a private lock is enough;
* on aarch64 it is an acquire RMW.  ``pthread_spin_unlock`` (a release
  store) followed by it forms a full barrier, because ARMv8 never reorders
  a store-release with a later load-acquire and neither lets accesses cross
  it the other way.  Two calls.

The lock is private and never waited on, so threads and signal handlers
calling ``full_fence()`` at the same time cannot deadlock (the lock's
state does not matter).  ``__sync_synchronize`` is a compiler builtin, not
a symbol, and ``membarrier(2)`` costs a system call, hence this.

Cost: the locked instruction itself is ~10 ns; the cffi ABI-mode call
around it (libffi, GIL release) dominates: ~0.2 us on a typical machine,
~1 us on this project's loaded 2-core VM (tests/test_sys_perf.py prints it).

``acquire_fence()`` / ``release_fence()`` are for the first two cases
only; they are no-ops on x86-64, whose loads are never reordered with
other loads or with later stores, and full fences elsewhere.  A consumer
calls ``acquire_fence()`` after each load of a position or record header,
``release_fence()`` before storing its position, and ``full_fence()``
between that store and the last look at the producer before sleeping.
"""
from __future__ import annotations

import os

from ._native import ffi, lib

__all__ = ["full_fence", "acquire_fence", "release_fence"]

_lock = ffi.new("pthread_spinlock_t *")
lib.pthread_spin_init(_lock, 0)

_trylock = lib.pthread_spin_trylock
_unlock = lib.pthread_spin_unlock

if os.uname().machine == "x86_64":
    def full_fence() -> None:
        """A full memory barrier (one locked instruction)."""
        _trylock(_lock)

    def acquire_fence() -> None:
        """Order earlier loads before later loads and stores: free under x86-TSO."""

    def release_fence() -> None:
        """Order earlier loads and stores before later stores: free under x86-TSO."""
else:
    def full_fence() -> None:
        """A full memory barrier (store-release then load-acquire)."""
        _unlock(_lock)
        _trylock(_lock)

    acquire_fence = release_fence = full_fence
