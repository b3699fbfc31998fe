"""Running ``python -m rawprobe watch`` against test targets and reading its JSON lines.

Every target gets a unique comm (``rpt_`` + random hex): tests never act on a
common process name.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
# Python runs ~20x slower in the TCG test VM (tools/vmtest.py sets RAWPROBE_VM)
SLOW = 10.0 if os.environ.get("RAWPROBE_VM") else 1.0


def unique_comm(prefix: str = "rpt_") -> str:
    return prefix + secrets.token_hex(4)


class Target:
    """tests/targets/target.py, started and waiting for "go"."""

    def __init__(self, comm: str, *args: str, report: bool = False,
                 real_uid: int | None = None, uid: int | None = None,
                 python: str = sys.executable) -> None:
        """``real_uid``: run with that real uid (what --uid filters on);
        ``uid``: run wholly as that user (uids and gids, no other groups), with
        ``python`` (an interpreter that user may run)."""
        self.comm = comm
        self.report_r = -1
        extra: list[str] = []
        fds: tuple[int, ...] = ()
        if report:   # the target tells when its handler ran and when it called exit
            self.report_r, w = os.pipe()
            extra, fds = ["--report-fd", str(w)], (w,)
        self.p = subprocess.Popen([python, "-S", str(HERE / "target.py"), "--comm", comm,
                                   "--wait-go", *args, *extra], pass_fds=fds,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  # another real uid, root still effective (it can read
                                  # this checkout wherever it is)
                                  preexec_fn=(lambda: os.setresuid(real_uid, 0, 0))
                                  if real_uid is not None else
                                  (lambda: _become(uid)) if uid is not None else None)
        for fd in fds:
            os.close(fd)
        line = self.p.stdout.readline()
        assert line == "ready\n", f"target did not start: {line!r}"
        self.pid = self.p.pid

    def go(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def wait_writes_done(self, timeout: float = 10.0) -> None:
        """Until the target closed its stdout after its writes."""
        r, _, _ = select.select([self.p.stdout], [], [], timeout * SLOW)
        assert r and self.p.stdout.read() == "", "target did not finish its writes"

    def results(self, timeout: float = 10.0) -> list[str]:
        """With --record: each call's result ("ok" or an errno name), as the target
        reported it on stdout (read to its EOF)."""
        r, _, _ = select.select([self.p.stdout], [], [], timeout * SLOW)
        assert r, "the target reported no results"
        lines = [ln for ln in self.p.stdout.read().splitlines() if ln.startswith("results")]
        assert len(lines) == 1, lines
        return lines[0].split()[1:]

    def own_times(self) -> tuple[int, int]:
        """(handler entry, exit call) in CLOCK_MONOTONIC ns, as the target saw them."""
        with os.fdopen(self.report_r, "rb") as f:
            t_in, t_out = f.read().split()
        self.report_r = -1
        return int(t_in), int(t_out)

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def _become(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


# Every Watch started, until kill_leftovers(): a test that fails before finish()
# must not leave a tool armed (conftest calls it after each test).
LIVE: list["Watch"] = []


def kill_leftovers() -> None:
    while LIVE:
        w = LIVE.pop()
        if w.p.poll() is None:
            w.p.kill()
            w.p.communicate()


class Watch:
    """``python -m rawprobe watch ... --json`` (JSON lines on its stdout)."""

    def __init__(self, *args: str, comm: str | None = None, timeout: float = 30.0,
                 run_as: list[str] | None = None, env: dict[str, str] | None = None,
                 python: str = sys.executable, command: list[str] | None = None) -> None:
        """``run_as``: a command prefix (setpriv ...) and ``python`` an interpreter
        it may run; ``env``: added to the environment; ``command``: the whole
        command instead (``podman run ... IMAGE watch ...``), writing JSON lines."""
        cmd = [python, "-m", "rawprobe", "watch", *args, "--json"]
        if comm is not None:
            # run the tool itself under `comm` (to check it never signals itself)
            code = ("import sys; open('/proc/self/comm', 'w').write(sys.argv[1]); "
                    "from rawprobe.__main__ import main; sys.exit(main(sys.argv[2:]))")
            cmd = [python, "-c", code, comm, "watch", *args, "--json"]
        env = {**os.environ, **(env or {}),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.p = subprocess.Popen(command or [*(run_as or []), *cmd], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        LIVE.append(self)
        self.timeout = timeout * SLOW
        self.events: list[dict] = []
        self.stderr = ""
        self._buf = b""
        self._queue: list[dict] = []
        self._eof = False
        self.armed = self._until("armed")

    def _lines(self, wait: float) -> list[bytes]:
        """Complete lines read from the raw pipe (select() on a buffered file object
        would miss lines already sitting in its buffer)."""
        fd = self.p.stdout.fileno()
        r, _, _ = select.select([fd], [], [], max(0.0, wait))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                self._eof = True
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return lines

    def _until(self, kind: str) -> dict:
        """Read events until one of ``kind`` (all read ones go to ``events``)."""
        end = time.monotonic() + self.timeout
        while True:
            while self._queue:
                ev = self._queue.pop(0)
                self.events.append(ev)
                if ev["event"] == kind:
                    return ev
            if self._eof or time.monotonic() >= end:
                break
            self._queue += [json.loads(x) for x in self._lines(end - time.monotonic())]
        self.p.kill()
        _, err = self.p.communicate()
        raise AssertionError(f"no {kind!r} event; stderr: {err.decode()[-2000:]}; "
                             f"events: {self.events}")

    def finish(self) -> int:
        """Wait for the tool to exit; all its events are then in ``events``."""
        try:
            out, err = self.p.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"watch did not finish; events so far: {self.events}")
        self.stderr = err.decode()
        self.events += self._queue
        self._queue = []
        data = self._buf + out
        self.events += [json.loads(x) for x in data.splitlines() if x.strip()]
        return self.p.returncode

    def of(self, kind: str, pid: int | None = None) -> list[dict]:
        return [e for e in self.events if e["event"] == kind and (pid is None or e.get("pid") == pid)]

    def summary(self) -> dict:
        return self.of("summary")[0]


@pytest.fixture
def targets():
    """``targets(comm, *args, **kw)`` starts a Target; all are killed at the end."""
    made: list[Target] = []

    def make(comm: str, *args: str, **kw) -> Target:
        t = Target(comm, *args, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.kill()
