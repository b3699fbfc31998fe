#!/usr/bin/env python3
"""Benchmark: the kernel BTF index (rawprobe.btf.kernel), first and later start.

Times, in fresh interpreters, importing rawprobe.btf.kernel, ``KernelBTF.load()``,
looking up task_struct and the size of every member, then building the full
index (``index()``): with no index cache (a first start: the lookup is lazy, the
index is built and written at the end) and with one (every later start: all
of it is read).  Prints the best and the median of 7 runs each.  ``python3 tools/bench_kernel_btf.py`` from a checkout.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(runs: int = 7) -> None:
    probe = (
        "import time; t0 = time.perf_counter()\n"
        "from rawprobe.btf.kernel import KernelBTF\n"
        "t1 = time.perf_counter(); kb = KernelBTF.load(); t2 = time.perf_counter()\n"
        "tid, ts = kb.type_by_name('task_struct')\n"
        "sizes = [kb.size_of(m.type) for m in ts.members]\n"
        "t3 = time.perf_counter(); kb.index(); t4 = time.perf_counter()\n"
        "assert kb._from_cache == (__import__('sys').argv[1] == 'warm')\n"
        "print(1e3*(t1-t0), 1e3*(t2-t1), 1e3*(t3-t2), 1e3*(t4-t3))\n")
    for label in ("cold", "warm"):
        rows = []
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, RAWPROBE_CACHE_DIR=d, PYTHONPATH=ROOT)
            if label == "warm":           # fill the cache once
                subprocess.run([sys.executable, "-c", probe, "cold"], env=env, check=True,
                               capture_output=True)
            for _ in range(runs):
                if label == "cold":
                    for f in os.listdir(d):
                        os.unlink(os.path.join(d, f))
                out = subprocess.run([sys.executable, "-c", probe, label], env=env,
                                     check=True, capture_output=True, text=True).stdout
                rows.append([float(x) for x in out.split()])
        cols = list(zip(*rows))
        desc = "first start, no index cache" if label == "cold" else "later start, cached index"
        print(f"{desc}: " + "  ".join(
            f"{name} {min(c):6.2f} ms (median {statistics.median(c):6.2f})"
            for name, c in zip(("import", "load", "task_struct+members", "index"), cols)))


if __name__ == "__main__":
    main()
