"""libbpf as the oracle: load an object with `bpftool prog loadall` beside rawprobe.

`loadall(obj)` pins what libbpf made into a bpffs directory it creates and
removes; `map_table()` describes maps, rawprobe's or libbpf's, the same way:
as `bpftool map show -j` reports them, plus the BTF key/value type ids the
kernel keeps for each (bpf_map_info), so the two loaders compare field by field.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from rawprobe._sys import bpf as _bpf
from rawprobe._sys.fd import FD

BPFFS = Path("/sys/fs/bpf")


def bpftool() -> str:
    path = shutil.which("bpftool")
    if path is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    if not os.path.ismount(BPFFS):
        pytest.skip(f"no bpffs mounted at {BPFFS} (make mounts)")
    return path


def libbpf_version() -> tuple[int, int]:
    """The version of the libbpf bpftool uses ("using libbpf v1.1"): what it
    does differs between versions."""
    out = subprocess.run([bpftool(), "version"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"libbpf v(\d+)\.(\d+)", out)
    if m is None:
        pytest.skip(f"cannot tell bpftool's libbpf version from {out!r}")
    return int(m.group(1)), int(m.group(2))


class LibbpfLoad:
    """What one `bpftool prog loadall` made: its exit status and output, and
    the maps and programs it pinned, opened (name -> rawprobe FD, closed by close())."""

    def __init__(self, proc: subprocess.CompletedProcess, root: Path) -> None:
        self.ok = proc.returncode == 0
        self.output = proc.stdout + proc.stderr
        self.maps: dict[str, FD] = {}
        self.progs: dict[str, FD] = {}
        for kind, into in (("maps", self.maps), ("progs", self.progs)):
            d = root / kind
            for p in sorted(d.iterdir()) if d.is_dir() else ():
                into[p.name] = _bpf.obj_get(str(p))

    def close(self) -> None:
        for fd in (*self.maps.values(), *self.progs.values()):
            fd.close()
        self.maps.clear()
        self.progs.clear()


@contextmanager
def loadall(obj: Path, pin_root: Path | None = None) -> Iterator[LibbpfLoad]:
    """libbpf's load of ``obj``; everything is unpinned and closed afterwards.

    ``pin_root``: a bpffs directory that libbpf sees as /sys/fs/bpf, its default
    pin path for maps pinned by name (bpftool runs in a private mount namespace
    with ``pin_root`` bound there).  Its maps pinned by name stay; the other
    maps are not pinned (bpftool's pinmaps would pin the pinned ones a second
    time, which libbpf refuses): ``maps`` has every map the programs use, by
    the name the kernel keeps."""
    tool = bpftool()
    root = Path(tempfile.mkdtemp(prefix="rawprobe-test-", dir=pin_root or BPFFS))
    if pin_root is None:
        cmd = [tool, "prog", "loadall", str(obj), str(root / "progs"),
               "pinmaps", str(root / "maps")]
    else:
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$1" /sys/fs/bpf && exec "$2" prog loadall "$3" "$4"', "sh",
               str(pin_root), tool, str(obj), f"/sys/fs/bpf/{root.name}/progs"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        load = LibbpfLoad(proc, root)
        if pin_root is not None:
            for fd in load.progs.values():
                for map_id in prog_map_ids(fd):
                    m = _bpf.get_fd_by_id("map", map_id)
                    name = _bpf.map_get_info(m)["name"]
                    if name in load.maps:
                        m.close()
                    else:
                        load.maps[name] = m
        for sub in ("progs", "maps"):   # the fds keep the objects; the pins can go
            shutil.rmtree(root / sub, ignore_errors=True)
        try:
            yield load
        finally:
            load.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def prog_map_ids(fd: FD | int) -> list[int]:
    """The ids of the maps a loaded program uses, as bpftool lists them."""
    prog_id = _bpf.prog_get_info(fd)["id"]
    shown = json.loads(subprocess.run([bpftool(), "-j", "prog", "show", "id", str(prog_id)],
                                      check=True, capture_output=True, text=True).stdout)
    return shown.get("map_ids", [])


def map_table(fds: dict[str, FD] | dict[str, int]) -> dict[str, tuple]:
    """kernel map name -> (type, key size, value size, max_entries, flags, frozen,
    BTF object or not, BTF key type id, BTF value type id) for the maps behind
    ``fds``: bpftool's listing, and the BTF fields from the kernel's bpf_map_info
    (bpftool 7.1's listing shows a stale btf_id on maps that have none)."""
    shown = {m["id"]: m for m in json.loads(subprocess.run(
        [bpftool(), "-j", "map", "show"], check=True, capture_output=True,
        text=True).stdout)}
    table = {}
    for fd in fds.values():
        info = _bpf.map_get_info(fd)
        m = shown[info["id"]]
        table[m["name"]] = (m["type"], m["bytes_key"], m["bytes_value"], m["max_entries"],
                            m["flags"], m["frozen"], info["btf_id"] != 0,
                            info["btf_key_type_id"], info["btf_value_type_id"])
    return table


def prog_info(fd: FD | int) -> dict:
    """The kernel's bpf_prog_info of a program, less what differs between any
    two loads (ids, load time, the BTF object's id) and the number of maps it
    holds: libbpf also binds every .rodata* map to every program
    (BPF_PROG_BIND_MAP, for bpftool's metadata display), rawprobe does not."""
    info = _bpf.prog_get_info(fd)
    for k in ("id", "load_time", "btf_id", "nr_map_ids"):
        info.pop(k)
    return info


def btf_text(prog_fd: FD | int) -> str:
    """The BTF the kernel holds for a loaded program, as `bpftool btf dump id`
    prints it."""
    btf_id = _bpf.prog_get_info(prog_fd)["btf_id"]
    return subprocess.run([bpftool(), "btf", "dump", "id", str(btf_id)], check=True,
                          capture_output=True, text=True).stdout


def btf_func_linkage(prog_fd: FD | int) -> dict[str, str]:
    """FUNC name -> linkage ("static", "global") in the BTF the kernel holds for
    a loaded program."""
    return dict(re.findall(r"^\[\d+\] FUNC '(\w+)' type_id=\d+ linkage=(\w+)$",
                           btf_text(prog_fd), re.M))
