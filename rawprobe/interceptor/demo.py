"""``python -m rawprobe`` with no arguments: the demo.

A bundled toy target (demo_target.py: opens a file, writes a line every 100 ms, and
spends 250 ms cleaning up on SIGTERM) is started under a unique name; rawprobe
intercepts its first write(2), sends SIGTERM, and measures how long it takes to
exit, in the kernel and through a pidfd.  Nothing to compile: the BPF object ships
prebuilt in the package.
"""
from __future__ import annotations

import os
import secrets
import sys

CLEANUP_S = 0.25


def demo_main(argv: list[str]) -> int:
    from .options import DEFAULTS, UsageError, WatchOptions
    from .syscalls import resolve

    json_out = False
    action = DEFAULTS["action"]
    for a in argv:
        if a == "--json":
            json_out = True
        elif a in ("--kernel-signal", "--action=kernel-signal"):
            action = "kernel-signal"
        else:
            raise UsageError(f"demo takes only --json and --kernel-signal, not {a!r}")

    comm = "rpdemo_" + secrets.token_hex(4)
    name, nr = resolve("write")
    o = WatchOptions(comm=comm, syscall=name, syscall_nr=nr, action=action,
                     count=1, duration_ns=20_000_000_000,
                     json="-" if json_out else None)
    say = (lambda s: None) if json_out else (lambda s: sys.stdout.write(s + "\n"))
    say(f"rawprobe demo: a toy target named {comm!r} writes a line every 100 ms and takes "
        f"{CLEANUP_S * 1000:.0f} ms to clean up on SIGTERM.")
    say("rawprobe intercepts its first write(2), signals it, and times its exit.\n")

    target = {}

    def start_target(armed: dict) -> None:
        import subprocess
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_target.py")
        r, w = os.pipe()
        target["p"] = subprocess.Popen(
            [sys.executable, "-S", path, "--comm", comm, "--interval", "0.1",
             "--cleanup", str(CLEANUP_S), "--lifetime", "20", "--ready-fd", str(w)],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(w)
        os.read(r, 1)          # EOF once the target has its name
        os.close(r)
        say(f"started the target: pid {target['p'].pid}")

    from .cli import run_watch
    try:
        status, out, tracker = run_watch(
            o, text=None if json_out else sys.stdout,
            json_stream=sys.stdout if json_out else None,
            summary_stream=sys.stderr if json_out else sys.stdout,
            on_armed=start_target, record=True)
    finally:
        p = target.get("p")
        if p is not None:
            if p.poll() is None:
                p.kill()
            p.wait()
    exits = [e for e in out.events if e["event"] == "exit"]
    if exits and not json_out:
        e = exits[0]
        k, pf = e.get("time_to_exit_us"), e.get("time_to_exit_pidfd_us")
        say(f"\nThe target took {k / 1000:.1f} ms to exit after SIGTERM (kernel clock)"
            if k is not None else "")
        if pf is not None:
            say(f"and rawprobe saw it gone {pf / 1000:.1f} ms after sending the signal (pidfd); "
                f"its own cleanup was {CLEANUP_S * 1000:.0f} ms.")
    elif not exits:
        say("the target was not seen exiting (see the events above)")
        return 1
    return status
