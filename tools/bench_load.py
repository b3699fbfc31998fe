#!/usr/bin/env python3
"""Benchmark: ``import rawprobe`` -> object loaded, next to ``bpftool prog loadall``.

Both run as fresh processes, alternately, N times each, on the same object
(default: the interceptor's prebuilt object) in the same run.  Printed:

* rawprobe in-process: from the first line of the script (before
  ``import rawprobe``) to a loaded Collection (parse + CO-RE + BTF + maps +
  programs), the figure the issue names;
* rawprobe whole process and bpftool whole process (fork+exec to exit), so
  the interpreter's own start (~10 ms) is visible rather than hidden;
* the ratios against bpftool.

Run as root: ``python3 tools/bench_load.py [object] [-n 15]``.  The first
rawprobe run also builds the kernel-BTF index cache; it is reported apart.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OBJ = ROOT / "prebuilt" / "intercept.bpf.o"

SNIPPET = r"""
import time
t0 = time.perf_counter_ns()
import rawprobe
coll = rawprobe.load(OBJ, programs=PROGS)
t1 = time.perf_counter_ns()
coll.close()
print((t1 - t0) / 1e6)
"""


def run_rawprobe(obj: Path, progs: list[str] | None) -> tuple[float, float]:
    code = SNIPPET.replace("OBJ", repr(str(obj))).replace("PROGS", repr(progs))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env).stdout
    return float(out.strip().splitlines()[-1]), (time.perf_counter() - t) * 1e3


def run_bpftool(bpftool: str, obj: Path, pin_root: Path) -> float:
    pin = pin_root / "rp_bench"
    t = time.perf_counter()
    subprocess.run([bpftool, "prog", "loadall", str(obj), str(pin)], check=True,
                   capture_output=True)
    ms = (time.perf_counter() - t) * 1e3
    shutil.rmtree(pin, ignore_errors=True)
    return ms


def loadable_programs(obj: Path) -> list[str]:
    """Programs this kernel accepts (bpftool loads every program of the object, so
    compare like with like: the object must load whole, or the bench says so)."""
    sys.path.insert(0, str(ROOT))
    import rawprobe
    return list(rawprobe.ObjectSpec.from_file(obj).programs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("object", nargs="?", default=str(DEFAULT_OBJ))
    ap.add_argument("-n", type=int, default=15, help="runs of each (default 15)")
    args = ap.parse_args()
    obj = Path(args.object)
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
    progs = loadable_programs(obj)
    pin_root = Path(tempfile.mkdtemp(dir=bpffs, prefix="rpbench"))
    try:
        first_in, first_proc = run_rawprobe(obj, progs)   # warms the BTF index cache
        run_bpftool(bpftool, obj, pin_root)               # warms the page cache
        rp_in, rp_proc, bt = [], [], []
        for _ in range(args.n):
            a, b = run_rawprobe(obj, progs)
            rp_in.append(a)
            rp_proc.append(b)
            bt.append(run_bpftool(bpftool, obj, pin_root))
    finally:
        shutil.rmtree(pin_root, ignore_errors=True)
    med = statistics.median
    print(f"object: {obj.name}  programs: {len(progs)}  runs: {args.n} each (medians, ms)")
    print(f"  bpftool prog loadall (whole process)       {med(bt):7.1f}")
    print(f"  rawprobe import -> loaded (in process)     {med(rp_in):7.1f}   "
          f"ratio {med(rp_in) / med(bt):.2f}x bpftool")
    print(f"  rawprobe whole process (python start incl) {med(rp_proc):7.1f}   "
          f"ratio {med(rp_proc) / med(bt):.2f}x bpftool")
    print(f"  rawprobe first run (builds BTF index cache) {first_in:6.1f} in process, "
          f"{first_proc:.1f} whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
