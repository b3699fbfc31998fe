"""``watch --metrics ADDR:PORT``: what Prometheus scrapes agrees with the summary.

The end-to-end test runs a real watch on this kernel, lets it signal real targets,
scrapes the endpoint over HTTP while the watch runs and compares the scrape with
the events and the summary the watch writes.  The text format is parsed here by
hand, not by prometheus_client's parser: the check does not trust the library it
checks the use of.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from rawprobe.errors import UsageError
from rawprobe.interceptor.options import parse_watch
from rawprobe.interceptor.metrics import BUCKETS_US
from rawprobe.interceptor.tracker import Counts

sys.path.insert(0, str(Path(__file__).parent / "targets"))
from harness import Watch, targets, unique_comm  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF and signals)")
needs_client = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import prometheus_client"]).returncode != 0,
    reason="prometheus_client is not installed (pip install -e '.[test,metrics]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict[str, float]:
    """The text exposition -> {'name{labels}': value} (comments left out)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def buckets(values_us: list[float]) -> list[int]:
    """Cumulative counts of ``values_us`` at each bound (le: v <= bound), +Inf last."""
    return [sum(v <= b for v in values_us) for b in BUCKETS_US] + [len(values_us)]


def le(bound_us: float | None) -> str:
    return "+Inf" if bound_us is None else repr(bound_us / 1e6)


# -- the address ---------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), (":9464", ("0.0.0.0", 9464)),
    ("[::1]:1", ("::1", 1)), ("localhost:65535", ("localhost", 65535)),
])
def test_metrics_address_is_parsed(text, want):
    assert parse_watch(["--comm", "x", "--metrics", text]).metrics == want


@pytest.mark.parametrize("text, says", [
    ("9464", "write ADDR:PORT"), ("127.0.0.1:", "write ADDR:PORT"),
    ("127.0.0.1:http", "write ADDR:PORT"), (":0", "1 to 65535"), (":65536", "1 to 65535"),
    (":99999999999999999999", "1 to 65535"), ("::1:9464", "in brackets"),
])
def test_a_bad_metrics_address_is_one_usage_error(text, says):
    with pytest.raises(UsageError, match=says):
        parse_watch(["--comm", "x", "--metrics", text])
    assert parse_watch(["--comm", "x"]).metrics is None


def test_metrics_address_edges():
    from rawprobe.interceptor.optvalues import parse_listen, shown

    def refusal(*args) -> str:
        with pytest.raises(UsageError) as ei:
            parse_listen(*args)
        return str(ei.value)
    assert parse_listen(" [fe80::1]:9464 ") == ("fe80::1", 9464)
    assert parse_listen("host:065535") == ("host", 65535)
    assert parse_listen(":1") == ("0.0.0.0", 1)
    assert refusal("[::1:9464") == \
        "--metrics '[::1:9464': write an IPv6 address in brackets, as [::1]:9464"
    assert refusal("9464", "--m") == \
        "bad --m '9464': write ADDR:PORT, as 127.0.0.1:9464 or :9464 (every address)"
    for bad in (":0", ":65536", ":0065536", ":" + "9" * 5000):
        assert refusal(bad) == f"--metrics {shown(bad)}: the port must be 1 to 65535"


def _cli(*args: str, code: str = "") -> subprocess.CompletedProcess:
    prog = (code + "\nimport sys; from rawprobe.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", prog, "watch", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@needs_root
@needs_client
def test_an_address_that_cannot_be_served_fails_in_one_line_before_arming():
    comm = unique_comm()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli("--comm", comm, "--metrics", f"127.0.0.1:{port}")
    assert r.returncode == 2 and "armed" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and f"127.0.0.1:{port}: cannot listen" in r.stderr
    r = _cli("--comm", comm, "--metrics", "no-such-host.invalid:9464")
    assert r.returncode == 2 and "armed" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "cannot resolve 'no-such-host.invalid'" in r.stderr


@needs_root
def test_without_prometheus_client_metrics_fails_in_one_line_saying_what_to_install():
    # None in sys.modules: "import prometheus_client" raises ImportError, as if absent
    r = _cli("--comm", unique_comm(), "--metrics", f"127.0.0.1:{free_port()}",
             code="import sys; sys.modules['prometheus_client'] = None")
    assert r.returncode == 1 and "armed" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr == ("rawprobe: error: --metrics needs prometheus_client: "
                        "pip install 'rawprobe[metrics]'\n")


@needs_root
@pytest.mark.parametrize("metrics", [False, pytest.param(True, marks=needs_client)])
def test_prometheus_client_is_imported_only_with_metrics(metrics):
    """The launch-to-armed import set: without --metrics neither the client nor
    this feature's module is imported."""
    extra = f", '--metrics', '127.0.0.1:{free_port()}'" if metrics else ""
    code = ("import sys\n"
            "from rawprobe.interceptor.options import parse_watch\n"
            "from rawprobe.interceptor.cli import run_watch\n"
            f"o = parse_watch(['--comm', '{unique_comm()}', '--duration', '10ms'{extra}])\n"
            "def armed(_):\n"
            "    mods = {'prometheus_client', 'rawprobe.interceptor.metrics'}\n"
            "    sys.stderr.write('at armed: ' + ' '.join(sorted(mods & set(sys.modules))))\n"
            "run_watch(o, text=None, summary_stream=None, on_armed=armed)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    seen = r.stderr.split("at armed:")[1].split()
    assert seen == (["prometheus_client", "rawprobe.interceptor.metrics"] if metrics
                    else []), seen


# -- end to end ----------------------------------------------------------------------

@needs_root
@needs_client
def test_the_scrape_matches_the_events_and_the_summary(targets):
    """Two targets, one exits at SIGTERM and one ignores it (SIGKILL at 300 ms): the
    endpoint's counters are the summary's counts, and its histograms hold exactly
    the times the exit and signal events reported, in the right buckets."""
    comm = unique_comm()
    port = free_port()
    a, b = targets(comm), targets(comm, "--ignore-term")     # ready before the watch
    w = Watch("--comm", comm, "--action", "signal", "--kill-after", "300ms",
              "--metrics", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    assert w.armed["metrics"] == url
    assert scrape(url)["rawprobe_intercepted_total"] == 0
    a.go()
    b.go()
    w._until("exit")
    w._until("exit")
    got = scrape(url)
    w.p.send_signal(signal.SIGINT)
    assert w.finish() == 128 + signal.SIGINT, w.stderr
    counts = w.summary()["counts"]
    assert set(counts) == set(Counts.__slots__)
    assert counts["signalled"] == counts["exited"] == 2 and counts["escalated"] == 1
    for name, value in counts.items():
        key = f"rawprobe_{name}" if name == "max_waiting" else f"rawprobe_{name}_total"
        assert got[key] == value, (name, got[key], value)
    assert got["rawprobe_in_flight"] == 0 and got["rawprobe_waiting"] == 0

    exits = w.of("exit")
    lat = [e["latency_us"] for e in w.of("signal")]
    for family, labels, values in (
            ("rawprobe_time_to_exit_seconds", 'clock="kernel",',
             [e["time_to_exit_us"] for e in exits]),
            ("rawprobe_time_to_exit_seconds", 'clock="pidfd",',
             [e["time_to_exit_pidfd_us"] for e in exits]),
            ("rawprobe_signal_latency_seconds", "", lat)):
        assert len(values) == 2 and None not in values, (family, labels, values)
        have = [got[f'{family}_bucket{{{labels}le="{le(bound)}"}}']
                for bound in (*BUCKETS_US, None)]
        assert have == buckets(values), (family, labels, values)
        sel = f"{{{labels.rstrip(',')}}}" if labels else ""
        assert got[f"{family}_count{sel}"] == 2
        assert got[f"{family}_sum{sel}"] == pytest.approx(sum(values) / 1e6, abs=1e-6)
    # the escalated one took the 300 ms deadline, the other far less: they are in
    # different buckets, so the comparison above checks where each one went
    pidfd = sorted(e["time_to_exit_pidfd_us"] for e in exits)
    assert pidfd[1] >= 300_000 and buckets(pidfd[:1]) != buckets(pidfd[1:])
