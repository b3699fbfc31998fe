#!/usr/bin/env python3
"""Benchmark: ``import rawprobe`` -> object loaded, next to ``bpftool prog loadall``.

Both run as fresh processes, alternately, ``-n`` times each, on the same object
(default: the interceptor's prebuilt object, every program in it, as bpftool's
``loadall`` does).  Figures are medians, as wall-clock time and as CPU time
(user + system of the process, which includes the kernel's verifier: it runs
inside the ``bpf()`` call).  On a shared machine the CPU figures are the stable
ones.  Printed:

* rawprobe in process: from just before ``import rawprobe`` to a loaded
  Collection (parse + CO-RE + BTF + maps + programs), the figure the issue
  names; of which inside ``bpf()`` calls (BTF load, map creation, program
  load: kernel work that bpftool pays too);
* rawprobe whole process and bpftool whole process (fork+exec to exit), next
  to a bare ``python -S -c pass`` so the interpreter's own start is visible;
* the ratios against bpftool;
* a cold first run: no kernel-BTF index and no CO-RE cache
  (``RAWPROBE_CACHE_DIR`` points at a new empty directory each time), in the
  first ``--cold`` rounds, right after that round's bpftool run; its ratios are
  the median of each round's own ratio (cold / that bpftool), so load from
  other users of the machine moves both sides.  The other runs take both
  caches from the cache directory, as every start after an installation's
  first.

How Python runs, so that the figures are what an installed rawprobe costs:

* byte-compiled: the package is compiled first (compileall) and the children
  run without ``PYTHONDONTWRITEBYTECODE`` into a private ``PYTHONPYCACHEPREFIX``
  (a warm-up run fills it for the standard library and dependencies too), so no
  child compiles anything; the checkout is not written to;
* ``python -S`` with the site-packages directories on ``PYTHONPATH``: site's
  ``.pth`` hooks do not run.  Some environments' hooks import dozens of modules
  (re, typing, enum, pathlib...) at every start, which would both slow every
  process down and hide rawprobe's own import cost; ``os`` is imported before
  the clock starts, as a normal start leaves it loaded.

Run as root: ``python3 tools/bench_load.py [object] [-n 20]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = (ROOT / "prebuilt" / "intercept.bpf.o", ROOT / "build" / "intercept.bpf.o")

# The child: CPU and wall time from before ``import rawprobe`` to loaded, and the
# part spent inside the bpf() calls that create kernel objects (timed by wrapping
# the _sys functions the loader calls through their module).
CHILD = r"""
import os, sys, time
OBJ = sys.argv[1]
w0, c0 = time.perf_counter_ns(), time.process_time_ns()
import rawprobe
from rawprobe._sys import bpf as _bpf
kern = [0, 0, 0, 0]         # all bpf() calls: wall, CPU; BPF_PROG_LOAD alone: wall, CPU
def _timed(fn, prog):
    def wrapper(*a, **kw):
        w, c = time.perf_counter_ns(), time.process_time_ns()
        try:
            return fn(*a, **kw)
        finally:
            dw, dc = time.perf_counter_ns() - w, time.process_time_ns() - c
            kern[0] += dw
            kern[1] += dc
            if prog:
                kern[2] += dw
                kern[3] += dc
    return wrapper
for _name in ("btf_load", "map_create", "map_update_elem", "map_freeze", "prog_load"):
    setattr(_bpf, _name, _timed(getattr(_bpf, _name), _name == "prog_load"))
coll = rawprobe.load(OBJ)
w1, c1 = time.perf_counter_ns(), time.process_time_ns()
n = len(coll.programs)
coll.close()
print((w1 - w0) / 1e6, (c1 - c0) / 1e6, *(k / 1e6 for k in kern), n)
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; (wall ms, CPU ms of the child, its stdout)."""
    r, w = os.pipe()
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env,
                         file_actions=[(os.POSIX_SPAWN_DUP2, w, 1),
                                       (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t) * 1e3
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_load: {' '.join(argv)} failed (exit status {status})")
    return wall, (ru.ru_utime + ru.ru_stime) * 1e3, out


def child_env(cache_dir: str, pycache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONSTARTUP")}
    paths = [str(ROOT), *site.getsitepackages()]
    user = site.getusersitepackages()
    if isinstance(user, str) and os.path.isdir(user):
        paths.append(user)
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONPYCACHEPREFIX=pycache,
               RAWPROBE_CACHE_DIR=cache_dir)
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("object", nargs="?", help="BPF object (default: prebuilt/ or "
                    "build/intercept.bpf.o)")
    ap.add_argument("-n", type=int, default=20, help="runs of each (default 20)")
    ap.add_argument("--cold", type=int, default=5, help="cold first runs, in the first "
                    "rounds (default 5, at most -n)")
    args = ap.parse_args()
    if args.object:
        obj = Path(args.object)
    else:
        obj = next((p for p in OBJECTS if p.exists()), None)
        if obj is None:
            print("bench_load: no intercept.bpf.o in prebuilt/ or build/ (make bpf)",
                  file=sys.stderr)
            return 2
    obj = obj.resolve()
    if os.geteuid() != 0:
        print("bench_load: run as root (loading BPF programs)", file=sys.stderr)
        return 2
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not os.path.exists(bpftool):
        print("bench_load: bpftool not found (apt-get install bpftool)", file=sys.stderr)
        return 2
    bpffs = Path("/sys/fs/bpf")
    if not os.path.ismount(bpffs):
        subprocess.run(["mount", "-t", "bpf", "bpf", str(bpffs)], check=True)

    py = os.path.realpath(sys.executable)
    bare = [py, "-S", "-c", "pass"]
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="rpbench") as tmp:
        # a script file, not -c: -c would put the current directory first on sys.path
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        child = [py, "-S", script, str(obj)]
        pycache = os.path.join(tmp, "pycache")
        warm_cache = os.path.join(tmp, "btf-cache")
        subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "rawprobe")], check=True,
                       stdout=subprocess.DEVNULL,
                       env=dict(child_env(warm_cache, pycache)))
        env = child_env(warm_cache, pycache)
        run(child, env)                       # fills pycache prefix, BTF index and CO-RE caches
        pin_root = Path(tempfile.mkdtemp(dir=bpffs, prefix="rpbench"))
        pin = str(pin_root / "p")
        bt_argv = [bpftool, "prog", "loadall", str(obj), pin]
        rows: dict[str, list[tuple[float, float]]] = {
            k: [] for k in ("rp", "rp_in", "rp_kern", "rp_prog", "bt", "py")}
        nprogs = 0
        cold_in: list[tuple[float, ...]] = []      # wall, CPU, and each / its round's bpftool
        cold_proc: list[tuple[float, ...]] = []
        try:
            run(bt_argv, env)
            shutil.rmtree(pin)
            for i in range(args.n):
                wall, cpu, out = run(child, env)
                w_in, c_in, w_k, c_k, w_p, c_p, n = out.split()
                nprogs = int(n)
                rows["rp"].append((wall, cpu))
                rows["rp_in"].append((float(w_in), float(c_in)))
                rows["rp_kern"].append((float(w_k), float(c_k)))
                rows["rp_prog"].append((float(w_p), float(c_p)))
                wall, cpu, _ = run(bt_argv, env)
                shutil.rmtree(pin)
                rows["bt"].append((wall, cpu))
                rows["py"].append(run(bare, env)[:2])
                if i < args.cold:
                    bt_w, bt_c = wall, cpu
                    cold_env = child_env(os.path.join(tmp, f"cold{i}"), pycache)
                    wall, cpu, out = run(child, cold_env)
                    w_in, c_in = float(out.split()[0]), float(out.split()[1])
                    cold_proc.append((wall, cpu, wall / bt_w, cpu / bt_c))
                    cold_in.append((w_in, c_in, w_in / bt_w, c_in / bt_c))
        finally:
            shutil.rmtree(pin_root, ignore_errors=True)

    def m(key: str | list, i: int) -> float:
        data = rows[key] if isinstance(key, str) else key
        return med([r[i] for r in data])

    bt_w, bt_c = m("bt", 0), m("bt", 1)
    print(f"object: {obj.name} ({nprogs} programs, all loaded, as bpftool loadall)   "
          f"runs: {args.n} each, alternating")
    print("python: byte-compiled, -S (no site .pth hooks), os preloaded; "
          "kernel BTF index and CO-RE results cached unless 'cold'")
    print(f"{'median ms':46s} {'wall':>8s} {'CPU':>8s}   {'ratio to bpftool (wall, CPU)'}")

    def line(label: str, w: float, c: float, ratio: bool = True) -> None:
        r = f"   {w / bt_w:5.2f}x  {c / bt_c:5.2f}x" if ratio else ""
        print(f"  {label:44s} {w:8.1f} {c:8.1f}{r}")

    line("bpftool prog loadall (whole process)", bt_w, bt_c, ratio=False)
    line("rawprobe import -> loaded (in process)", m("rp_in", 0), m("rp_in", 1))
    line("  of which in bpf() (BTF, maps, programs)", m("rp_kern", 0), m("rp_kern", 1),
         ratio=False)
    line("    of which BPF_PROG_LOAD (the verifier)", m("rp_prog", 0), m("rp_prog", 1),
         ratio=False)
    line("  rawprobe's own work (the rest)", m("rp_in", 0) - m("rp_kern", 0),
         m("rp_in", 1) - m("rp_kern", 1), ratio=False)
    line("rawprobe whole process", m("rp", 0), m("rp", 1))
    line("  python -S -c pass (interpreter start/exit)", m("py", 0), m("py", 1),
         ratio=False)
    def cold(label: str, data: list) -> None:
        def q(i: int) -> str:
            v = sorted(r[i] for r in data)
            return f"{m(data, i):5.2f}x [{v[0]:.2f}-{v[-1]:.2f}]"
        print(f"  {label:44s} {m(data, 0):8.1f} {m(data, 1):8.1f}   {q(2)}  {q(3)}")

    print(f"cold first runs (no caches), n={len(cold_in)}, each next to its round's bpftool "
          f"(ratios: median of the rounds' [min-max])")
    cold("cold, rawprobe import -> loaded (in process)", cold_in)
    cold("cold, rawprobe whole process", cold_proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
