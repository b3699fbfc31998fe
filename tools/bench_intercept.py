#!/usr/bin/env python3
"""Benchmark the interceptor; every figure is measured in this one run.

1. Intercept latency, call -> signal delivered, p50 over N processes, one at a
   time.  "call" is the target's CLOCK_MONOTONIC just before its write(); also
   shown from the kernel's stamp at sys_enter.  "delivered" is the kernel's
   signal_deliver.  The targets are tools/bench_swarm.c, compiled here (with
   no C compiler, a Python swarm, whose forked children add tens of us before
   the call).
     * ``rawprobe watch --action signal``        (ring buffer -> pidfd_send_signal),
       and the same with ``--busy-poll`` (the tool never sleeps)
     * ``rawprobe watch --action kernel-signal`` (bpf_send_signal at the call)
     * ``strace -f -e inject=write:signal=TERM`` (the original's strace script)
     * ``bpftrace --unsafe -e '...sys_enter_write /comm == X/ { signal(15) }'``
   The peers are timed by a rawprobe probe in report mode watching the same
   processes.  Each target keeps calling write() after the intercepted call, so
   the calls that slip through before the signal lands are counted too.
2. Overhead per syscall on a process that is NOT a target (dd bs=1: a read and a
   write per byte), with no probe, with an empty program on the same hook, and
   with rawprobe watching another comm; for the raw_tp and the tracepoint hooks.
   The configurations take turns, round after round, and each one's median is
   kept: this machine's speed drifts between seconds more than 5 %.
4. A burst: N processes (3,000) of the watched name make their call at once, in
   report, signal and kernel-signal mode: how many were intercepted, signalled
   and seen exit, whether anything was lost, how long from the release until the
   last one was signalled, and how many exits lack the kernel's time to exit.
3. Launch to armed (``python -m rawprobe watch`` started -> its "armed" line),
   first run (no byte-code cache, no kernel BTF index cache) and second run, run
   as bench_load.py runs Python (byte-compiled, ``-S``), next to the bare
   interpreter's start; and with site's hooks, as this environment has them.

4. Per hook (raw_tp, tracepoint, kprobe, fentry, and the default --hook auto),
   in a process that is NOT a target: the time of write() (the watched
   syscall) and of getppid() (a syscall nobody watches), tools/bench_syscall.c
   in a loop (the median of batches of 256 calls), with no probe, with an empty program on the same hook, and with
   rawprobe's kernel side watching another comm (armed in this process, as
   ``watch`` arms it); interleaved rounds, medians, as in 2.  Then
   the intercept latency and slipped calls of section 1 per hook.  Hooks this
   kernel lacks are left out and said so.

5. ``--action deny`` on write(), as 4 measures a hook: write() in a process that
   is not a target, with no probe, an empty program on the deny hook
   (``lsm/file_permission``, ``fmod_ret/security_file_permission``) and
   rawprobe's deny kernel side, per route; and each program's own time per
   run (BPF_ENABLE_STATS).  Needs a kernel where BPF LSM / trampoline programs
   run (the test VM: ``tools/vmtest.py -- python3 tools/bench_intercept.py
   --only deny``).

Needs root.  The empty baseline program is compiled here with clang (any
clang with the BPF target); without clang that baseline is skipped and said so.
A peer that is not installed (strace, bpftrace) is skipped and said so.

    python3 tools/bench_intercept.py [--n 50] [--dd 200000] [--rounds 9] [--calls 1000000]
                                     [--burst 3000]
                                     [--only latency|overhead|startup|hooks|burst|deny]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

# A parent that forks N children one after the other.  Each child makes one write
# (the call to intercept), then keeps writing (calls that may slip through) until a
# signal ends it.  It writes nothing else: under strace every write gets a signal.
# Just before its first write each child stores (pid, CLOCK_MONOTONIC ns) in a shared
# file mapping: the call's time seen from userspace, the same for every method.
SWARM = r"""
import mmap, os, signal, struct, sys, time
comm, n, shm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import ctypes                  # prctl(PR_SET_NAME): renaming must not be a write()
ctypes.CDLL(None).prctl(15, comm.encode(), 0, 0, 0)
out = os.open('/dev/null', os.O_WRONLY)
fd = os.open(shm, os.O_RDWR)
mm = mmap.mmap(fd, 16 * n)
sys.stdin.readline()           # go (a read, not a write)
for i in range(n):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        deadline = time.monotonic() + 5
        struct.pack_into('<QQ', mm, 16 * i, os.getpid(), time.monotonic_ns())
        while time.monotonic() < deadline:
            os.write(out, b'x')
        os._exit(9)
    os.waitpid(pid, 0)
    time.sleep(0.005)
"""

EMPTY_BPF = r"""
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
SEC("raw_tracepoint/sys_enter") int empty_raw(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_write") int empty_tp(void *ctx) { return 0; }
SEC("lsm/file_permission") int empty_lsm(void *ctx) { return 0; }
SEC("fmod_ret/security_file_permission") int empty_fmod_ret(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def comm() -> str:
    return "rpb_" + secrets.token_hex(4)


def p50(xs):
    return statistics.median(xs) if xs else float("nan")


def compile_tool(tmp: str, name: str) -> str | None:
    """tools/NAME.c compiled into ``tmp``; None without a C compiler (or if it fails)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc:
        exe = os.path.join(tmp, name)
        r = subprocess.run([cc, "-O2", "-o", exe, str(ROOT / "tools" / f"{name}.c")],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return exe
    return None


def build_swarm(tmp: str) -> tuple[list[str], str]:
    """The swarm's command (tools/bench_swarm.c compiled, else the Python one) and
    what it is."""
    exe = compile_tool(tmp, "bench_swarm")
    if exe:
        return [exe], "tools/bench_swarm.c"
    return [sys.executable, "-S", "-c", SWARM], "a Python swarm (no C compiler found)"


SWARM_CMD: list[str] = [sys.executable, "-S", "-c", SWARM]


class Swarm:
    def __init__(self, name: str, n: int, prefix: list[str] = ()) -> None:
        self.n = n
        self.shm = tempfile.NamedTemporaryFile(prefix="rpbench-", dir="/dev/shm")
        self.shm.truncate(16 * n)
        # "go" may be sent at once: it waits in the pipe until the swarm has its name
        self.p = subprocess.Popen([*prefix, *SWARM_CMD, name, str(n), self.shm.name],
                                  stdin=subprocess.PIPE, text=True)

    def call_times(self) -> dict[int, int]:
        """pid -> CLOCK_MONOTONIC ns just before its first write."""
        import struct
        self.shm.seek(0)
        data = self.shm.read()
        self.shm.close()
        return {pid: t for pid, t in struct.iter_unpack("<QQ", data) if pid}

    def go(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def wait(self, timeout: float = 120) -> None:
        self.p.wait(timeout=timeout)


def watch(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "rawprobe", "watch", *args, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         cwd=str(ROOT))
    first = p.stdout.readline()
    if not first or json.loads(first)["event"] != "armed":
        p.kill()
        raise SystemExit(f"rawprobe watch did not arm: {p.communicate()[1].strip()}")
    p.armed = json.loads(first)
    return p


# -- 1. latency ------------------------------------------------------------------------

def _summary(call: dict[int, int], deliver: dict[int, int], kernel_us: list[float],
             slipped: list[int], extra: dict | None = None) -> dict:
    user = [(deliver[pid] - t) / 1000 for pid, t in call.items() if pid in deliver]
    out = {"n": len(user), "delivered_p50_us": p50(user), "kernel_p50_us": p50(kernel_us),
           "slipped_mean": statistics.fmean(slipped) if slipped else float("nan"),
           "slipped_max": max(slipped, default=None)}
    out.update(extra or {})
    return out


def latency_rawprobe(action: str, n: int, *extra: str) -> dict:
    name = comm()
    sw = Swarm(name, n)
    w = watch("--comm", name, "--action", action, "--count", str(n), "--kill-after", "2s",
              "--quiet", *extra)
    sw.go()
    out, err = w.communicate(timeout=300)
    sw.wait()
    ev = [json.loads(x) for x in out.splitlines() if x.strip()]
    exits = [e for e in ev if e["event"] == "exit" and e.get("deliver_ktime_ns")]
    return _summary(sw.call_times(), {e["pid"]: e["deliver_ktime_ns"] for e in exits},
                    [e["delivery_latency_us"] for e in exits],
                    [e["slipped_calls"] for e in exits],
                    {"sent_p50_us": p50([e["latency_us"] for e in ev if e["event"] == "signal"])})


def _latency_peer(n: int, prefix: list[str] = (), start=None) -> dict:
    """Targets signalled by a peer: ``prefix`` runs the swarm (strace), or
    ``start(comm)`` starts a signaller that is ready when it returns (bpftrace)."""
    from rawprobe.interceptor.events import KernelExit
    from rawprobe.interceptor.options import WatchOptions
    from rawprobe.interceptor.probe import Probe
    from rawprobe.interceptor.syscalls import resolve
    name = comm()
    nm, nr = resolve("write")
    # rawprobe in report mode only watches: its kernel side stamps the deliveries
    probe = Probe(WatchOptions(comm=name, syscall=nm, syscall_nr=nr, action="report"))
    probe.open()
    peer = None
    try:
        if start is not None:
            peer = start(name)
        sw = Swarm(name, n, prefix=prefix)
        sw.go()
        sw.wait()
        time.sleep(0.1)
        exits = [e for e in probe.read() if isinstance(e, KernelExit) and e.deliver_ns]
    finally:
        probe.close()
        if peer is not None:
            peer.terminate()
            peer.communicate(timeout=30)
    return _summary(sw.call_times(), {e.tgid: e.deliver_ns for e in exits},
                    [(e.deliver_ns - e.intercept_ns) / 1000 for e in exits],
                    [e.slipped for e in exits])


def latency_strace(n: int) -> dict | str:
    strace = shutil.which("strace")
    if not strace:
        return "strace is not installed (apt-get install strace)"
    # sys_enter fires after strace's syscall-entry stop, so the kernel-stamped figure
    # misses strace's round trip; the userspace call time does not.
    return _latency_peer(n, prefix=[strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=write",
                                    "-e", "inject=write:signal=TERM:when=1"])


def latency_bpftrace(n: int) -> dict | str:
    bpftrace = shutil.which("bpftrace")
    if not bpftrace:
        return "bpftrace is not installed (apt-get install bpftrace)"

    def start(name: str) -> subprocess.Popen:
        prog = ('tracepoint:syscalls:sys_enter_write /comm == "%s"/ { signal(15); }' % name)
        p = subprocess.Popen([bpftrace, "--unsafe", "-e", prog], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        if not p.stdout.readline().startswith("Attaching"):
            p.kill()
            raise RuntimeError("bpftrace did not attach")
        time.sleep(0.2)   # "Attaching" comes just before the attach itself
        return p
    try:
        return _latency_peer(n, start=start)
    except RuntimeError as e:
        return str(e)


# -- 2. overhead on a non-target ---------------------------------------------------------

def dd_ns_per_syscall(count: int) -> float:
    t0 = time.perf_counter_ns()
    subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={count}"],
                   check=True, capture_output=True)
    return (time.perf_counter_ns() - t0) / (2 * count)


def build_bpf(tmp: str, name: str, source: str) -> tuple[Path | None, str]:
    """Compile ``source`` into ``tmp``/``name``.bpf.o: (the object, "") or (None, why)."""
    cc = shutil.which("clang-19") or shutil.which("clang")
    if not cc:
        return None, "no clang to build the empty baseline programs"
    src = Path(tmp, f"{name}.bpf.c")
    src.write_text(source)
    obj = Path(tmp, f"{name}.bpf.o")
    r = subprocess.run([cc, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
    if r.returncode:
        return None, f"clang failed: {r.stderr.strip()[:200]}"
    return obj, ""


def empty_program(tmp: str, programs=("empty_raw", "empty_tp")):
    obj, why = build_bpf(tmp, "empty", EMPTY_BPF)
    if obj is None:
        return None, why
    import rawprobe
    try:
        return rawprobe.ObjectSpec.from_file(str(obj)).load(programs=list(programs)), ""
    except rawprobe.RawprobeError as e:
        return None, f"the empty program does not load here: {str(e)[:200]}"


def overhead(count: int, rounds: int) -> dict:
    """ns per syscall of dd under each configuration; the configurations take turns
    (in a rotating order) for ``rounds`` rounds, and each one's median is kept."""
    samples: dict[str, list[float]] = {"none": []}
    with tempfile.TemporaryDirectory() as tmp:
        coll, why = empty_program(tmp)

        def empty(hook: str):
            prog = coll.programs["empty_raw" if hook == "raw_tp" else "empty_tp"]
            return (prog.attach_raw_tracepoint("sys_enter") if hook == "raw_tp"
                    else prog.attach_tracepoint("syscalls", "sys_enter_write"))

        def measure(config: str) -> float:
            if config == "none":
                return dd_ns_per_syscall(count)
            kind, hook = config.split()
            if kind == "empty":
                link = empty(hook)
                try:
                    return dd_ns_per_syscall(count)
                finally:
                    link.close()
            w = watch("--comm", comm(), "--hook", hook, "--quiet")   # dd is not a target
            try:
                return dd_ns_per_syscall(count)
            finally:
                w.terminate()
                w.communicate(timeout=30)

        configs = ["none"]
        for hook in ("raw_tp", "tracepoint"):
            configs += [f"empty {hook}", f"rawprobe {hook}"] if coll is not None \
                else [f"rawprobe {hook}"]
        for r in range(rounds):
            for config in configs[r % len(configs):] + configs[:r % len(configs)]:
                samples.setdefault(config, []).append(measure(config))
        if coll is not None:
            coll.close()
    res: dict = {k: statistics.median(v) for k, v in samples.items()}
    if coll is None:
        for hook in ("raw_tp", "tracepoint"):
            res[f"empty {hook}"] = why
    return res


# -- 3. launch to armed ------------------------------------------------------------------

def launch_to_armed(env: dict, flags: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, *flags, "-m", "rawprobe", "watch", "--comm", comm(),
                          "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
    line = p.stdout.readline()
    t = time.perf_counter() - t0
    p.terminate()
    p.communicate(timeout=30)
    if b'"armed"' not in line:
        raise SystemExit("rawprobe watch did not arm")
    return t * 1000


def python_start(flags: list[str], env: dict) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True, env=env)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def startup(runs: int = 15) -> dict:
    """Launch to armed as an installed rawprobe starts (see bench_load.py): byte code
    in a private PYTHONPYCACHEPREFIX (filled by the first run, as pip's compile step
    would), ``-S`` with the site-packages on PYTHONPATH so this environment's .pth
    hooks are not counted, and the same interpreter's bare start measured alongside;
    with site (.pth hooks and all) too."""
    from bench_load import child_env
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(os.path.join(tmp, "cache"), os.path.join(tmp, "pyc"))
        first = launch_to_armed(env, ["-S"])    # no byte code, no kernel BTF index cache
        second = [launch_to_armed(env, ["-S"]) for _ in range(runs)]
        site_runs = [launch_to_armed(env, []) for _ in range(runs)]
        return {"first_ms": first, "second_ms": min(second), "second_median_ms": p50(second),
                "site_ms": min(site_runs), "site_median_ms": p50(site_runs),
                "python_S_c_pass_ms": python_start(["-S"], env),
                "python_c_pass_ms": python_start([], env)}


# -- 4. per hook: the watched syscall and an unwatched one, on non-targets ---------------

HOOKS = ("raw_tp", "tracepoint", "kprobe", "fentry")

# An empty program per hook, the baseline of what the hook itself costs.
EMPTY_HOOKS_BPF = r"""
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
SEC("raw_tracepoint/sys_enter") int empty_raw_tp(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_write") int empty_tracepoint(void *ctx) { return 0; }
SEC("kprobe/%(symbol)s") int empty_kprobe(void *ctx) { return 0; }
SEC("fentry/%(symbol)s") int empty_fentry(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""

# bench_syscall.c's job where there is no C compiler (Python adds ~60 ns a call).
SYSCALL_LOOP_PY = r"""
import os, statistics, sys, time
what, n, batch = sys.argv[1], int(sys.argv[2]), 256
fd = os.open('/dev/null', os.O_WRONLY)
call = (lambda: os.write(fd, b'x')) if what == 'write' else os.getppid
per_call, c0 = [], time.thread_time_ns()
for _ in range(n // batch):
    t0 = time.monotonic_ns()
    for _ in range(batch):
        call()
    per_call.append((time.monotonic_ns() - t0) / batch)
print(statistics.median(per_call), (time.thread_time_ns() - c0) / (n // batch * batch))
"""


def _syscall_loop(tmp: str) -> tuple[list[str], str]:
    """The loop's command (tools/bench_syscall.c compiled, else Python) and what it is."""
    exe = compile_tool(tmp, "bench_syscall")
    if exe:
        return [exe], "tools/bench_syscall.c"
    return [sys.executable, "-S", "-c", SYSCALL_LOOP_PY], "a Python loop (no C compiler found)"


def _empty_hooks(tmp: str) -> dict:
    """hook -> its empty program, loaded (or why not)."""
    from rawprobe.interceptor.syscalls import entry_symbol
    obj, why = build_bpf(tmp, "empty_hooks",
                         EMPTY_HOOKS_BPF % {"symbol": entry_symbol("write")})
    if obj is None:
        return dict.fromkeys(HOOKS, why)
    import rawprobe
    out: dict = {}
    for hook in HOOKS:
        try:      # one load each: fentry or kprobe may be refused where the rest work
            out[hook] = rawprobe.ObjectSpec.from_file(str(obj)).load(programs=[f"empty_{hook}"])
            out[hook].programs[f"empty_{hook}"].attach().close()
        except rawprobe.RawprobeError as e:
            out.pop(hook, None)
            out[hook] = f"empty {hook}: {str(e).splitlines()[0][:160]}"
    return out


def hooks_overhead(calls: int, rounds: int) -> tuple[dict, dict, str]:
    """ns per call (median batch) of write() (the watched syscall) and getppid() (unwatched) in a
    process that is not a target, for: no probe; per hook, its empty program and
    rawprobe watching another comm; and rawprobe with default options (--hook auto).
    Configurations take turns for ``rounds`` rounds; each one's median is kept.
    Returns (samples by config: {"write": ns, "getppid": ns} or why it was left
    out, the hook auto chose, what ran the loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        loop, loop_what = _syscall_loop(tmp)
        empties = _empty_hooks(tmp)

        def run_loops() -> dict[str, float]:
            return {what: float(subprocess.run([*loop, what, str(calls)], check=True,
                                               capture_output=True, text=True).stdout.split()[0])
                    for what in ("write", "getppid")}

        def arm(hook: str):
            """watch's kernel side, as `watch --comm OTHER [--hook HOOK]` arms it, in
            this process: arming it over and over costs no interpreter start, and
            for a process that is not a target the tool's loop does nothing."""
            from rawprobe.interceptor.cli import resolve_action
            from rawprobe.interceptor.options import parse_watch
            from rawprobe.interceptor.probe import Probe
            o = parse_watch(["--comm", comm(), *(() if hook == "auto" else ("--hook", hook))])
            probe = Probe(o, resolve_action(o.action)[0])
            try:
                probe.open()
            except BaseException:
                probe.close()
                raise
            return probe

        import rawprobe
        order, left_out, auto_hook = ["none"], {}, ""
        for hook in (*HOOKS, "auto"):
            if hook != "auto":
                order.append(f"empty {hook}")
                if isinstance(empties[hook], str):
                    left_out[f"empty {hook}"] = empties[hook]
            order.append(f"rawprobe {hook}")
            try:
                probe = arm(hook)
            except rawprobe.RawprobeError as e:
                left_out[f"rawprobe {hook}"] = str(e).splitlines()[0][:200]
                continue
            auto_hook = probe.hook if hook == "auto" else auto_hook
            probe.close()
        configs = [c for c in order if c not in left_out]

        def measure(config: str) -> dict[str, float]:
            if config == "none":
                return run_loops()
            kind, hook = config.split()
            if kind == "empty":
                link = empties[hook].programs[f"empty_{hook}"].attach()
                try:
                    return run_loops()
                finally:
                    link.close()
            probe = arm(hook)
            try:
                return run_loops()
            finally:
                probe.close()

        samples: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
        for r in range(rounds):
            for config in configs[r % len(configs):] + configs[:r % len(configs)]:
                samples[config].append(measure(config))
        for coll in empties.values():
            if not isinstance(coll, str):
                coll.close()
    return {c: left_out.get(c) or samples[c] for c in order}, auto_hook, loop_what


def _others_on_sys_enter() -> str:
    """How many BPF links (anyone's) sit on the sys_enter tracepoint now, by bpftool:
    while one does, every syscall already takes the slow path that the syscall
    tracepoints need, and "no probe" is not the quiet machine."""
    bpftool = shutil.which("bpftool")
    if not bpftool:
        return "? (no bpftool)"
    r = subprocess.run([bpftool, "link", "list"], capture_output=True, text=True)
    return str(r.stdout.count("'sys_enter'")) if r.returncode == 0 else "?"


def _ratio(xs: list[dict], base: list[dict], what: str) -> str:
    """Median and quartiles over rounds of each round's ratio (drift cancels)."""
    rs = [x[what] / b[what] for x, b in zip(xs, base)]
    q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [rs[0]] * 3
    return f"{statistics.median(rs):.3f}x [{q[0]:.2f}-{q[2]:.2f}]"


def hooks_report(calls: int, rounds: int, n: int) -> None:
    print(f"\n4. per hook, a syscall in a process that is not a target: write() (the watched "
          f"syscall) and getppid() (watched by nobody); ns per call (the median batch of 256), "
          f"median of {rounds} interleaved rounds of {calls} calls")
    before = _others_on_sys_enter()
    res, auto_hook, loop_what = hooks_overhead(calls, rounds)
    print(f"  loop: {loop_what}; default options (--hook auto) attached: {auto_hook or '?'}; "
          f"other BPF links on sys_enter before/after: {before}/{_others_on_sys_enter()}")
    print("  ratios: median over rounds of the round's ratio [quartiles]")
    none = res["none"]
    for config, v in res.items():
        if isinstance(v, str):
            print(f"  {config:<20} left out: {v}")
            continue
        cells = []
        hook = config.split()[-1]       # auto: compared with the hook it chose
        base = res.get(f"empty {auto_hook.split()[0] if hook == 'auto' and auto_hook else hook}")
        for what in ("write", "getppid"):
            cell = (f"{what} {statistics.median(x[what] for x in v):6.1f} ns "
                    f"{_ratio(v, none, what)} none")
            if config.startswith("rawprobe") and not isinstance(base, (str, type(None))):
                cell += f", {_ratio(v, base, what)} empty"
            cells.append(f"{cell:<58}")
        print(f"  {config:<20} " + " ".join(cells).rstrip())
    hooks_latency(n, [h for h in (*HOOKS, "auto") if not isinstance(res[f"rawprobe {h}"], str)])


def hooks_latency(n: int, hooks: list[str]) -> None:
    """Intercept latency and slipped calls for each of ``hooks`` (kernel-signal;
    signal for raw_tp and auto), on the same swarm as section 1."""
    global SWARM_CMD
    swarm_dir = tempfile.TemporaryDirectory()
    SWARM_CMD, swarm_what = build_swarm(swarm_dir.name)
    print(f"  intercept latency per hook, call -> signal delivered, p50 over {n} processes "
          f"({swarm_what}):")
    runs = [("kernel-signal", h) for h in hooks] + \
        [("signal", h) for h in ("raw_tp", "auto") if h in hooks]
    for action, hook in runs:
        r = latency_rawprobe(action, n, *(() if hook == "auto" else ("--hook", hook)))
        print(f"    {action:<13} {hook:<10} {r['delivered_p50_us']:6.0f} us (from the call's "
              f"kernel stamp {r['kernel_p50_us']:.0f} us); calls slipped through: mean "
              f"{r['slipped_mean']:.1f}, max {r['slipped_max']} (n={r['n']})")


def main() -> int:
    ap = argparse.ArgumentParser(description="interceptor benchmark")
    ap.add_argument("--n", type=int, default=50, help="processes per latency run")
    ap.add_argument("--dd", type=int, default=200_000, help="dd blocks per overhead run")
    ap.add_argument("--rounds", type=int, default=9,
                    help="overhead rounds (each configuration's median is kept)")
    ap.add_argument("--calls", type=int, default=1_000_000,
                    help="syscalls per loop in the per-hook part")
    ap.add_argument("--burst", type=int, default=3000, help="processes in the burst")
    ap.add_argument("--only", choices=("latency", "overhead", "startup", "hooks", "burst",
                                       "deny"),
                    help="run one part only")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_intercept: needs root", file=sys.stderr)
        return 1
    print(f"kernel {os.uname().release}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    if a.only in (None, "latency"):
        latency(a.n)
    if a.only in (None, "overhead"):
        overhead_report(a.dd, a.rounds)
    if a.only in (None, "startup"):
        startup_report()
    if a.only in (None, "hooks"):
        hooks_report(a.calls, a.rounds, a.n)
    if a.only in (None, "burst"):
        burst_report(a.burst)
    if a.only in (None, "deny"):
        deny_report(a.calls, a.rounds)
    return 0


def latency(n: int) -> None:
    global SWARM_CMD
    swarm_dir = tempfile.TemporaryDirectory()
    SWARM_CMD, swarm_what = build_swarm(swarm_dir.name)
    print("\n1. intercept latency, call -> signal delivered, p50 over "
          f"{n} processes one at a time (call: the target's clock just before write();"
          f" delivered: the kernel's signal_deliver); targets: {swarm_what}")
    rows = {"signal": latency_rawprobe("signal", n),
            "signal, busy-poll": latency_rawprobe("signal", n, "--busy-poll"),
            "kernel-signal": latency_rawprobe("kernel-signal", n),
            "strace inject": latency_strace(n),
            "bpftrace signal": latency_bpftrace(n)}
    for k, r in rows.items():
        if isinstance(r, str):
            print(f"  {k:<18} {r}")
            continue
        ratio = "".join(
            f"; {r['delivered_p50_us'] / b['delivered_p50_us']:.2f}x {peer.split()[0]}"
            for peer, b in rows.items()
            if isinstance(b, dict) and peer in ("strace inject", "bpftrace signal")
            and not k.startswith(("strace", "bpftrace")))
        sent = f", signal sent {r['sent_p50_us']:.0f} us after sys_enter" if "sent_p50_us" in r else ""
        print(f"  {k:<18} {r['delivered_p50_us']:6.0f} us{ratio} (from sys_enter "
              f"{r['kernel_p50_us']:.0f} us{sent}); calls slipped through: mean "
              f"{r['slipped_mean']:.1f}, max {r['slipped_max']} (n={r['n']})")



def overhead_report(dd: int, rounds: int) -> None:
    print(f"\n2. overhead per syscall on a non-target (dd bs=1 count={dd}, median of "
          f"{rounds} interleaved rounds)")
    ov = overhead(dd, rounds)
    none = ov["none"]
    for k, v in ov.items():
        if isinstance(v, str):
            print(f"  {k:<20} {v}")
        else:
            extra = ""
            hook = k.split()[-1]
            empty = ov.get(f"empty {hook}")
            if k.startswith("rawprobe") and isinstance(empty, float):
                extra = f"; {v / empty:.3f}x the empty program"
            print(f"  {k:<20} {v:7.1f} ns  ({v / none:.2f}x no probe{extra})")



def startup_report() -> None:
    print("\n3. launch to armed (python -m rawprobe watch ... -> its armed line), byte-compiled")
    s = startup()
    print(f"  first run   {s['first_ms']:.0f} ms (-S; no byte code, no kernel BTF index cache)")
    print(f"  second run  {s['second_ms']:.0f} ms best, {s['second_median_ms']:.0f} ms median "
          f"(-S, site-packages on PYTHONPATH); bare python -S -c pass "
          f"{s['python_S_c_pass_ms']:.0f} ms")
    print(f"  with site   {s['site_ms']:.0f} ms best, {s['site_median_ms']:.0f} ms median "
          f"(this environment's .pth hooks run); bare python -c pass "
          f"{s['python_c_pass_ms']:.0f} ms")
    return 0


# The burst: the parent forks N children that all block reading one pipe; closing
# its write end releases them at once.  Only the children take the watched name.
# Each child makes its one call (a write to /dev/null), then waits for a signal (report mode: exits on its own after 1 s).
BURST = r"""
import ctypes, os, signal, sys, time
comm, n, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
prctl = ctypes.CDLL(None).prctl
out = os.open('/dev/null', os.O_WRONLY)
r, w = os.pipe()
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        prctl(15, comm.encode(), 0, 0, 0)   # PR_SET_NAME, not a write(); the parent
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # keeps its own name
        os.read(r, 1)                  # EOF: released
        os.write(out, b'x')
        time.sleep(linger)
        os._exit(0)
    kids.append(pid)
os.close(r)
sys.stdout.write('ready\n'); sys.stdout.flush()
sys.stdin.readline()
sys.stdout.write('%d\n' % time.monotonic_ns()); sys.stdout.flush()
os.close(w)                            # go
for pid in kids:
    os.waitpid(pid, 0)
"""


def burst(action: str, n: int) -> dict:
    name = comm()
    linger = "1" if action == "report" else "60"
    sw = subprocess.Popen([sys.executable, "-S", "-c", BURST, name, str(n), linger],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sw.stdout.readline() == "ready\n"
    w = watch("--comm", name, "--action", action, "--count", str(n), "--kill-after", "20s",
              "--quiet")
    sw.stdin.write("go\n")
    sw.stdin.flush()
    go_ns = int(sw.stdout.readline())
    out, err = w.communicate(timeout=600)
    sw.wait(timeout=120)
    ev = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    summ = [e for e in ev if e["event"] == "summary"][0]["counts"]
    ktime = {e["pid"]: e["ktime_ns"] for e in ev if e["event"] == "intercept"}
    sig_at = [ktime[e["pid"]] + e["latency_us"] * 1000 for e in ev
              if e["event"] == "signal" and e["pid"] in ktime]
    exits = [e for e in ev if e["event"] == "exit"]
    return {"status": w.returncode, "counts": summ,
            "lost_events": len([e for e in ev if e["event"] == "lost"]),
            "last_signal_ms": (max(sig_at) - go_ns) / 1e6 if sig_at else None,
            "exits_without_kernel_time": sum(1 for e in exits if e["time_to_exit_us"] is None)}


def burst_report(n: int) -> None:
    print(f"\n4. a burst: {n} processes of the watched name call write() at once")
    for action in ("report", "signal", "kernel-signal"):
        r = burst(action, n)
        c = r["counts"]
        line = (f"  {action:<14} intercepted {c['intercepted']}, signalled {c['signalled']}, "
                f"exited {c['exited']}, lost {c['lost']}, not handled {c['not_handled']}, "
                f"refused {c['refused']}, errors {c['errors']}; exit status {r['status']}")
        if r["last_signal_ms"] is not None:
            line += f"; last signalled {r['last_signal_ms']:.0f} ms after the release"
        if action != "report":
            line += f"; exits without the kernel's time: {r['exits_without_kernel_time']}"
        print(line)



# -- 5. the deny program's overhead on a non-target --------------------------------------

def _prog_stats(name: str) -> tuple[int, int]:
    """(run_cnt, run_time_ns) summed over the loaded programs called ``name``."""
    from rawprobe._sys import bpf
    cnt = ns = 0
    pid = 0
    while (pid := bpf.get_next_id("prog", pid)) is not None:
        try:
            with bpf.get_fd_by_id("prog", pid) as fd:
                info = bpf.prog_get_info(fd)
        except Exception:       # noqa: BLE001 - gone meanwhile
            continue
        if info["name"] == name:
            cnt, ns = cnt + info["run_cnt"], ns + info["run_time_ns"]
    return cnt, ns


def deny_overhead(calls: int, rounds: int) -> dict | str:
    """Per configuration and round: write()'s ns per call (the median batch, as in
    4) in a process that is not a target, and the program's own ns per run from
    the kernel's run-time statistics (BPF_ENABLE_STATS): no probe; per route, an
    empty program on the deny hook and rawprobe's deny kernel side denying write()
    to another comm (armed in this process, as ``watch --action deny`` arms it)."""
    from rawprobe import lsms
    from rawprobe._sys import bpf
    from rawprobe.errors import RawprobeError
    from rawprobe.uapi import StatsType
    routes = []
    for route in ("lsm", "fmod_ret"):
        try:
            if lsms.deny_runs(route):
                routes.append(route)
        except RawprobeError:
            pass
    if not routes:
        return "skipped: no deny route runs on this kernel (`python -m rawprobe features`)"
    with tempfile.TemporaryDirectory() as tmp, bpf.enable_stats(StatsType.RUN_TIME):
        loop, loop_what = _syscall_loop(tmp)
        coll, why = empty_program(tmp, [f"empty_{r}" for r in routes])
        if coll is None:
            return why

        def arm(route: str):
            from rawprobe.interceptor.deny import DenyProbe
            from rawprobe.interceptor.options import parse_watch
            o = parse_watch(["--comm", comm(), "--action", "deny", "--hook", route])
            probe = DenyProbe(o, "deny")
            try:
                probe.open()
            except BaseException:
                probe.close()
                raise
            return probe

        def measure(config: str) -> dict[str, float]:
            if config == "none":
                on, name = None, ""
            else:
                kind, route = config.split()
                name = f"empty_{route}" if kind == "empty" else f"rp_{route}"
                on = coll.programs[name].attach() if kind == "empty" else arm(route)
            try:
                c0, t0 = _prog_stats(name) if name else (0, 0)
                ns = float(subprocess.run([*loop, "write", str(calls)], check=True,
                                          capture_output=True, text=True).stdout.split()[0])
                c1, t1 = _prog_stats(name) if name else (0, 0)
            finally:
                if on is not None:
                    on.close()
            return {"write": ns, "per_run": (t1 - t0) / (c1 - c0) if c1 > c0 else 0.0}

        configs = ["none", *(f"{k} {r}" for r in routes for k in ("empty", "rawprobe"))]
        samples: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
        try:
            for r in range(rounds):
                for config in configs[r % len(configs):] + configs[:r % len(configs)]:
                    samples[config].append(measure(config))
        finally:
            coll.close()
    samples["loop"] = loop_what      # type: ignore[assignment]
    return samples


def deny_report(calls: int, rounds: int) -> None:
    print(f"\n5. --action deny on write(), a process that is not a target: write() ns per "
          f"call (the median batch of 256), median of {rounds} interleaved rounds of {calls} "
          "calls; the program's own ns per run (BPF_ENABLE_STATS)")
    res = deny_overhead(calls, rounds)
    if isinstance(res, str):
        print(f"  {res}")
        return
    print(f"  loop: {res.pop('loop')}; ratios: median over rounds of the round's ratio "
          "[quartiles]")
    none = res["none"]
    for config, v in res.items():
        cell = f"write {statistics.median(x['write'] for x in v):6.1f} ns " \
               f"{_ratio(v, none, 'write')} none"
        empty = res.get(f"empty {config.split()[-1]}")
        if config.startswith("rawprobe") and empty:
            cell += f", {_ratio(v, empty, 'write')} empty"
        if config != "none":
            cell += f"; program {statistics.median(x['per_run'] for x in v):.0f} ns per run"
        print(f"  {config:<18} {cell}")
    for route in ("lsm", "fmod_ret"):
        if f"empty {route}" in res:
            extra = statistics.median(x["per_run"] for x in res[f"rawprobe {route}"]) - \
                statistics.median(x["per_run"] for x in res[f"empty {route}"])
            print(f"  {route}: the deny program costs a non-target's write() {extra:.0f} ns "
                  f"more than the empty one, "
                  f"{extra / statistics.median(x['write'] for x in none) * 100:.1f} % of it")

if __name__ == "__main__":
    raise SystemExit(main())
