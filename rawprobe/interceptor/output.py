"""Where events go: human text lines, JSON lines, syslog.

Every event is a dict with at least ``event``, ``pid`` and ``comm`` (the summary has
no pid).  The same dict feeds every sink, so the JSON, the text and syslog always
say the same thing.
"""
from __future__ import annotations

import sys
import time
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import IO

SYSLOG_PRIORITY = {   # syslog module constants, resolved lazily
    "intercept": "LOG_INFO", "signal": "LOG_INFO", "exit": "LOG_INFO",
    "escalate": "LOG_WARNING", "refused": "LOG_WARNING", "error": "LOG_ERR",
    "summary": "LOG_NOTICE", "armed": "LOG_INFO", "lost": "LOG_ERR",
    "interrupted": "LOG_WARNING", "abandoned": "LOG_WARNING",
}
# Events an operator must see even when the text goes elsewhere: also on ``warn``.
WARNINGS = ("lost", "interrupted", "abandoned")


def _us(v: float | None) -> str:
    if v is None:
        return "?"
    if v >= 1_000_000:
        return f"{v / 1e6:.3f} s"
    if v >= 1000:
        return f"{v / 1000:.3f} ms"
    return f"{v:.0f} us"


def format_text(ev: dict) -> str:
    """One human line for an event (the summary has its own multi-line form)."""
    kind = ev["event"]
    who = f"pid {ev.get('pid')} ({ev.get('comm', '?')})"
    if kind == "armed":
        why_hook = f" ({ev['hook_reason']})" if ev.get("hook_reason") else ""
        line = (f"armed: {ev['hook']}{why_hook} on {ev['target']} for {ev['filter']}, "
                f"action {ev['action']}")
        line += f" ({ev['action_reason']})" if ev.get("action_reason") else ""
        return line + (f"; metrics at {ev['metrics']}" if ev.get("metrics") else "")
    if kind == "intercept":
        what = ev.get("syscall") or ev.get("symbol")
        args = ", ".join(hex(a) if a > 0xFFFF else str(a) for a in ev.get("args", ()))
        line = f"intercept {who} tid {ev.get('tid')} {what}({args}) call #{ev.get('hit')}"
        if ev.get("data"):
            line += f" data {ev['data'][:32]!r}"
        return line
    if kind == "signal":
        by = " from the kernel" if ev.get("by") == "kernel" else ""
        return f"signal    {who} {ev['signal']}{by}, {_us(ev.get('latency_us'))} after the call"
    if kind == "escalate":
        return f"escalate  {who} {ev['signal']}: still alive {_us(ev.get('after_us'))} after the signal"
    if kind == "exit":
        how = (f"killed by {ev['killed_by']}" if ev.get("killed_by")
               else f"exit code {ev.get('exit_code', '?')}")
        line = (f"exit      {who} {how}; time to exit {_us(ev.get('time_to_exit_us'))} (kernel), "
                f"{_us(ev.get('time_to_exit_pidfd_us'))} (pidfd)")
        if ev.get("escalated"):
            line += ", escalated"
        if ev.get("slipped_calls"):
            line += f", {ev['slipped_calls']} calls slipped through"
        return line
    if kind == "refused":
        return f"refused   {who}: {ev.get('reason')}"
    if kind == "lost":
        n = ev.get("records", ev.get("processes"))
        return f"LOST      {n} ({ev.get('total')} in all): {ev.get('reason')}"
    if kind == "interrupted":
        return f"interrupted by {ev.get('signal')}: {ev.get('reason')}"
    if kind == "abandoned":
        return f"abandoned {ev.get('targets')} targets {ev.get('pids')}: {ev.get('reason')}"
    if kind == "error":
        return f"error     {who}: {ev.get('message')}"
    return " ".join(f"{k}={v}" for k, v in ev.items())


def format_summary(ev: dict, histogram_lines: list[str]) -> list[str]:
    c = ev["counts"]
    lines = ["", "summary: " + ", ".join(f"{k} {v}" for k, v in c.items() if v or k in (
        "intercepted", "signalled", "exited"))]
    for key, label in (("time_to_exit_us", "time to exit (kernel)"),
                       ("time_to_exit_pidfd_us", "time to exit (pidfd) "),
                       ("latency_us", "call -> signal       ")):
        d = ev.get(key)
        if d:
            lines.append(f"  {label}: min {_us(d['min'])}  p50 {_us(d['p50'])}  "
                         f"p90 {_us(d['p90'])}  p99 {_us(d['p99'])}  max {_us(d['max'])}  (n={d['n']})")
    if histogram_lines:
        lines.append(f"  time to exit ({ev.get('histogram_of', 'kernel')}):")
        lines.extend(histogram_lines)
    return lines


# A sample and its json.dumps(..., separators=(",", ":")) text: checks the C encoder.
_SAMPLE = {"event": "x", "n": [1, -2.5, None, True, 1e100], "s": "\u00e9\n\"", "d": {}}
_SAMPLE_JSON = '{"event":"x","n":[1,-2.5,null,true,1e+100],"s":"\\u00e9\\n\\"","d":{}}'


def json_dumps():
    """``json.dumps(d, separators=(",", ":"), default=str)`` without importing
    ``json``, which pulls in ``re`` and ``enum`` (~7 ms before "armed"): the C
    encoder ``json`` itself uses, checked once against a known output.  Any
    surprise (another Python's signature, no ``_json``) falls back to ``json``."""
    try:
        from _json import encode_basestring_ascii, make_encoder
        # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys,
        # allow_nan); markers None: events are never circular.
        enc = make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False,
                           True)

        def dumps(d: dict) -> str:
            return "".join(enc(d, 0))

        if dumps(_SAMPLE) == _SAMPLE_JSON:
            return dumps
    except Exception:   # noqa: BLE001 - any failure means: use the json module
        pass
    import json
    return lambda d: json.dumps(d, separators=(",", ":"), default=str)


class Output:
    """Fan events out to text (``text``), JSON lines (``json``) and syslog."""

    def __init__(self, text: IO[str] | None = sys.stdout, json: IO[str] | None = None,
                 use_syslog: bool = False, quiet: bool = False, record: bool = False,
                 warn: IO[str] | None = None) -> None:
        """``record``: keep every event in ``events`` (tests, the demo); ``warn``:
        where the WARNINGS also go as text (stderr), unless that is ``text``."""
        self.text = text
        self.warn = warn if warn is not text else None
        self.json = json
        self.quiet = quiet
        self._syslog = None
        if use_syslog:
            import syslog
            syslog.openlog("rawprobe", syslog.LOG_PID, syslog.LOG_DAEMON)
            self._syslog = syslog
        self._dumps = json_dumps() if json is not None else None
        self.events: list[dict] = []   # kept only when record=True (tests, demo)
        self.record = record

    def emit(self, ev: dict) -> None:
        ev.setdefault("time", round(time.time(), 6))
        if self.record:
            self.events.append(ev)
        if self.json is not None:
            self.json.write(self._dumps(ev) + "\n")
            self.json.flush()
        if self.text is not None and not self.quiet and ev["event"] != "summary":
            self.text.write(format_text(ev) + "\n")
            self.text.flush()
        if self.warn is not None and ev["event"] in WARNINGS:
            self.warn.write("rawprobe: " + format_text(ev) + "\n")
            self.warn.flush()
        if self._syslog is not None and ev["event"] != "summary":
            self._syslog.syslog(getattr(self._syslog, SYSLOG_PRIORITY.get(ev["event"], "LOG_INFO")),
                                format_text(ev))

    def summary(self, ev: dict, histogram_lines: list[str], stream: IO[str] | None) -> None:
        """The summary: a JSON record, a syslog line, and text with the histogram."""
        self.emit(ev)
        lines = format_summary(ev, histogram_lines)
        if stream is not None:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        if self._syslog is not None:
            self._syslog.syslog(self._syslog.LOG_NOTICE, lines[1])

    def close(self) -> None:
        if self.json is not None and self.json not in (sys.stdout, sys.stderr):
            self.json.close()
        if self._syslog is not None:
            self._syslog.closelog()
