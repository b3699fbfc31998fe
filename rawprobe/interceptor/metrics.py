"""``watch --metrics ADDR:PORT``: the watch's counts and times for Prometheus.

prometheus_client (the optional extra ``rawprobe[metrics]``) serves them from its own
thread; this module is imported only when --metrics is given.  What it serves is
read at scrape time from the tracker, never pushed by the loop: the counters are the
summary's own ``Counts`` and the histograms are built from the same lists of times
the summary's distributions come from, so a scrape and the summary agree by
construction, and the loop does no extra work and takes no lock for them.

A scrape only competes for the GIL.  A thread that wants the GIL waits up to the
interpreter's switch interval (5 ms by default) before the holder is made to let
go; a scrape holding it would delay a woken loop that long, so --metrics shortens
the interval (``SWITCH_INTERVAL_S``).  Only a scrape contends: the loop alone runs
as before.
"""
from __future__ import annotations

import bisect
import sys
import threading
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

from ..errors import MissingExtraError, UsageError
from .tracker import Counts

if TYPE_CHECKING:
    from typing import Iterator

    from .tracker import Tracker

INSTALL = "pip install 'rawprobe[metrics]'"
# How long a woken loop waits at most for the GIL a scrape holds (see above).
SWITCH_INTERVAL_S = 0.0002
# Histogram buckets: powers of two microseconds, 4 us to 67 s (upper bounds, seconds).
BUCKETS_US = tuple(2.0 ** i for i in range(2, 27))

# What each of the summary's counts means (Counts), for the metric's HELP.
HELP = {
    "intercepted": "calls intercepted (the first matching call of each process)",
    "signalled": "targets signalled, by the tool or by the kernel at the call",
    "escalated": "targets sent SIGKILL at their --kill-after deadline",
    "exited": "signalled targets seen exiting",
    "refused": "targets not signalled: protected, gone, reused pid, or not permitted",
    "errors": "targets whose handling failed",
    "reported": "intercepts only reported (--action report)",
    "waited": "targets that waited for a free --max-in-flight slot",
    "max_waiting": "the most targets waiting for a slot at once",
    "dropped": "targets never signalled: waiting, or read after the intake stopped",
    "abandoned": "targets still in flight when the tool left",
    "duplicates": "further records of a process already handled",
    "lost": "records the kernel could not submit (ring buffer full)",
    "not_handled": "matching processes the kernel could not track (its table full)",
    "denied": "calls the kernel made fail (--action deny, deny-signal)",
}
# Counts that are a high-water mark, not a running total.
GAUGES = ("max_waiting",)


def _client():
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise MissingExtraError(f"--metrics needs prometheus_client: {INSTALL}") from None
    return prometheus_client, core


class _Histogram:
    """One histogram over a list the tracker appends to (microseconds).  Each scrape
    folds in only what was appended since the last one: the loop appends, this
    thread reads, and a slice of a list is one step under the GIL."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.seen = 0
        self.buckets = [0] * (len(BUCKETS_US) + 1)     # the last one: above them all
        self.sum_us = 0.0

    def update(self) -> None:
        new = self.values[self.seen:]
        self.seen += len(new)
        for v in new:
            self.buckets[bisect.bisect_left(BUCKETS_US, v)] += 1   # le: v <= bound
            self.sum_us += v

    def samples(self) -> tuple[list[tuple[str, int]], float]:
        """(cumulative (le, count) pairs, +Inf last; the sum in seconds)."""
        out, total = [], 0
        for bound, n in zip((*BUCKETS_US, None), self.buckets):
            total += n
            out.append(("+Inf" if bound is None else repr(bound / 1e6), total))
        return out, self.sum_us / 1e6


class WatchCollector:
    """A prometheus_client collector over a running ``Tracker``."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._tte = {"kernel": _Histogram(tracker.tte_kernel_us),
                     "pidfd": _Histogram(tracker.tte_pidfd_us)}
        self._latency = _Histogram(tracker.latency_us)
        # concurrent scrapes (one thread each) fold into the same buckets; the loop
        # never takes this lock
        self._lock = threading.Lock()

    def collect(self) -> Iterator:
        _, core = _client()
        t = self.tracker
        for name in Counts.__slots__:
            value = getattr(t.counts, name)
            if name in GAUGES:
                yield core.GaugeMetricFamily(f"rawprobe_{name}", HELP[name], value=value)
            else:
                yield core.CounterMetricFamily(f"rawprobe_{name}", HELP[name], value=value)
        yield core.GaugeMetricFamily("rawprobe_in_flight",
                                     "targets signalled and not yet exited", value=t.in_flight)
        yield core.GaugeMetricFamily("rawprobe_waiting", "targets waiting for a slot now",
                                     value=len(t.waiting))
        with self._lock:
            tte = core.HistogramMetricFamily(
                "rawprobe_time_to_exit_seconds",
                "signal to exit, as the kernel stamped it and as the pidfd told the tool",
                labels=["clock"])
            for clock, h in self._tte.items():
                h.update()
                buckets, total = h.samples()
                tte.add_metric([clock], buckets, total)
            self._latency.update()
            buckets, total = self._latency.samples()
            latency = core.HistogramMetricFamily(
                "rawprobe_signal_latency_seconds",
                "the intercepted call to the signal sent (by the kernel or the tool)",
                buckets=buckets, sum_value=total)
        yield tte
        yield latency


class MetricsServer:
    """prometheus_client's HTTP server on ``host:port``, in its own thread, serving
    a registry of its own (no process or platform metrics)."""

    def __init__(self, host: str, port: int) -> None:
        """Binds now: a bad address fails before anything is loaded.  Raises
        MissingExtraError without prometheus_client, UsageError when the address
        cannot be resolved or bound."""
        prometheus_client, _ = _client()
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        where = f"--metrics {host}:{port}"
        import socket
        try:
            self._httpd, self._thread = prometheus_client.start_http_server(
                port, addr=host, registry=self.registry)
        except socket.gaierror as e:
            raise UsageError(f"{where}: cannot resolve {host!r} ({e.strerror}); give an "
                             "address or a resolvable host name") from None
        except OSError as e:
            raise UsageError(f"{where}: cannot listen there ({e.strerror}); choose "
                             "another port or address") from None
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics"
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL_S))

    def serve(self, tracker: Tracker) -> None:
        """Serve this tracker's counts and times from now on."""
        self.registry.register(WatchCollector(tracker))

    def close(self) -> None:
        """Stop serving and free the port (shutdown() alone keeps it bound)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        sys.setswitchinterval(self._interval)
