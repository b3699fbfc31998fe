"""The one epoll loop: readable fds, deadlines, and the tool's own SIGINT/SIGTERM.

Facts it relies on:

* Everything that can wake the tool is an fd in one epoll set: the BPF ring buffer
  (readable when the kernel producer has submitted records and woken us), every
  target's pidfd (readable once that process has exited), and the read end of a
  self-pipe that CPython writes a byte into when a signal arrives
  (``signal.set_wakeup_fd``).  The deadlines need no timerfd: the epoll timeout is
  the time to the nearest one, so one ``epoll_wait`` covers all of them.
* A Python signal handler runs in the main thread between bytecodes; ``epoll.poll``
  is retried after it (PEP 475), but the wakeup byte makes that retry return at once,
  so the loop notices the stop request without delay.  A byte written before the
  wait began is still in the pipe, so no signal is ever slept through.  Each stop
  signal counts (``stops``): a ``run`` returns at the first one that arrives while
  it runs, so the caller can finish up on the first and leave on the second.
* ``epoll.poll`` rounds its timeout up to whole milliseconds: deadlines are kept to
  about 1 ms, which is ample for ``--kill-after``.
* ``busy_poll`` (``--busy-poll``) polls the same epoll set without ever blocking.
  Waking a sleeping tool costs an interrupt, an IPI and, on a virtual machine, the
  host waking an idle vCPU: measured here, it is most of ``--action signal``'s
  latency.  The price is one CPU at 100 % for the whole watch.
* The monotonic clock here (``time.monotonic_ns``) is CLOCK_MONOTONIC, the clock of
  ``bpf_ktime_get_ns()``: kernel and userspace stamps subtract directly.
"""
from __future__ import annotations

import os
import select
import _signal as signal  # the C module: "signal" builds enums at import (ms)
import time
from _heapq import heappop, heappush   # the C functions; heapq.py adds nothing used here
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import Callable

now_ns = time.monotonic_ns


class Timer:
    """A one-shot deadline; ``cancel()`` is O(1) (the heap entry is skipped later)."""

    __slots__ = ("when_ns", "callback", "cancelled")

    def __init__(self, when_ns: int, callback: Callable[[], None]) -> None:
        self.when_ns = when_ns
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return self.when_ns < other.when_ns


class Reactor:
    """``busy_poll``: never sleep, poll without blocking (a CPU at 100 %, no wake-up
    latency)."""

    def __init__(self, stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
                 busy_poll: bool = False) -> None:
        self._epoll = select.epoll()
        self._fds: dict[int, Callable[[int], None]] = {}
        self._timers: list[Timer] = []
        self.stop_requested: int | None = None   # the first signal that asked us to stop
        self.stops = 0                           # stop signals received so far
        self._stop_signals = stop_signals
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup: int | None = None
        self._pipe: tuple[int, int] | None = None
        self.busy_poll = busy_poll

    # -- fds -------------------------------------------------------------------------
    def add_reader(self, fd: int, callback: Callable[[int], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._fds[fd] = callback

    def remove_reader(self, fd: int) -> None:
        if self._fds.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    @property
    def reader_count(self) -> int:
        return len(self._fds)

    # -- deadlines -------------------------------------------------------------------
    def call_at(self, when_ns: int, callback: Callable[[], None]) -> Timer:
        t = Timer(when_ns, callback)
        heappush(self._timers, t)
        return t

    def call_later(self, delay_ns: int, callback: Callable[[], None]) -> Timer:
        return self.call_at(now_ns() + delay_ns, callback)

    def _next_deadline(self) -> int | None:
        while self._timers and self._timers[0].cancelled:
            heappop(self._timers)
        return self._timers[0].when_ns if self._timers else None

    def _run_due(self) -> None:
        t_now = now_ns()
        while self._timers and self._timers[0].when_ns <= t_now:
            t = heappop(self._timers)
            if not t.cancelled:
                t.cancelled = True
                t.callback()

    # -- the tool's own signals ------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM set ``stop_requested`` and wake the loop (main thread only)."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pipe = (r, w)
        self.add_reader(r, self._drain_pipe)
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in self._stop_signals:
            self._old_handlers[sig] = signal.signal(sig, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stop_requested is None:
            self.stop_requested = signum
        self.stops += 1

    def _drain_pipe(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    # -- running ---------------------------------------------------------------------
    def run_once(self, max_wait_ns: int | None = None) -> None:
        """Wait for one batch of fd events or the next deadline, and dispatch them."""
        deadline = self._next_deadline()
        waits = [w for w in (max_wait_ns,
                             None if deadline is None else max(0, deadline - now_ns()))
                 if w is not None]
        timeout = min(waits) / 1e9 if waits else -1
        if self.busy_poll and timeout != 0:
            events = self._spin(timeout)
        else:
            events = self._epoll.poll(timeout, 256)
        for fd, _ in events:
            cb = self._fds.get(fd)
            if cb is not None:
                cb(fd)
        self._run_due()

    def _spin(self, timeout: float) -> list:
        """``epoll_wait`` without sleeping, again and again, until something is
        ready or ``timeout`` (seconds, negative: none) is over."""
        poll = self._epoll.poll
        end = now_ns() + int(timeout * 1e9) if timeout > 0 else None
        while True:
            events = poll(0, 256)
            if events or (end is not None and now_ns() >= end):
                return events

    def run(self, done: Callable[[], bool], until_ns: int | None = None,
            before_wait: Callable[[], None] | None = None,
            stops_allowed: int | None = None) -> None:
        """Loop until ``done()``, more than ``stops_allowed`` stop signals in all
        (default: as many as had come; so any new one), or the monotonic time
        ``until_ns``.  ``before_wait`` runs before each wait (e.g. to write out what
        was done since the last one): never sleep on work."""
        stops = self.stops if stops_allowed is None else stops_allowed
        while not done() and self.stops <= stops:
            if before_wait is not None:
                before_wait()
            if until_ns is not None:
                left = until_ns - now_ns()
                if left <= 0:
                    return
                self.run_once(left)
            else:
                self.run_once()
        if before_wait is not None:
            before_wait()

    def close(self) -> None:
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            for sig, old in self._old_handlers.items():
                signal.signal(sig, old)  # type: ignore[arg-type]
            self.remove_reader(self._pipe[0])
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        self._epoll.close()

    def __enter__(self) -> "Reactor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
