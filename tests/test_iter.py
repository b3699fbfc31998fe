"""BPF iterators (SEC("iter/<target>")): attached, run by reading, and what
they write checked against /proc and the kernel's map list -- and libbpf's
load of the same programs, run the same way, writes the same."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import rawprobe
from rawprobe._sys import bpf as _bpf
from rawprobe.link import attach_iter, read_iter

from libbpf_oracle import btf_text, loadall, prog_info

OBJ = Path(__file__).parent / "bpf" / "iter.bpf.o"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def _ours(text: bytes) -> set[tuple[str, str, str]]:
    """(tgid, pid, comm) of this process's threads in dump_task's output."""
    rows = (line.split(" ", 2) for line in text.decode().splitlines())
    return {tuple(r) for r in rows if r[0] == str(os.getpid())}


def _markers(text: bytes) -> set[str]:
    return {line for line in text.decode().splitlines() if " iter_marker " in line}


def test_task_iterator_lists_our_threads():
    with rawprobe.load(OBJ) as coll:
        link = coll.programs["dump_task"].attach()
        assert (link.kind, link.target, link.mechanism) == ("iter", "task", "bpf_link")
        got = _ours(read_iter(link))
    comm = Path("/proc/self/comm").read_text().strip()
    threads = {(str(os.getpid()), t, Path(f"/proc/self/task/{t}/comm").read_text().strip())
               for t in os.listdir("/proc/self/task")}
    assert (str(os.getpid()), str(os.getpid()), comm) in got
    assert got == threads


def test_map_iterator_lists_the_objects_map():
    with rawprobe.load(OBJ) as coll:
        marker_id = _bpf.map_get_info(coll.maps["iter_marker"].fd)["id"]
        link = coll.programs["dump_maps"].attach_iter()
        first, second = read_iter(link), read_iter(link)     # each read is a new run
    assert f"{marker_id} iter_marker 42" in _markers(first)
    assert _markers(first) == _markers(second)


def test_iterators_match_libbpf():
    """libbpf's programs (bpf_prog_info, BTF) are rawprobe's, and run through
    the same iterator link they write the same lines."""
    with rawprobe.load(OBJ) as coll, loadall(OBJ) as libbpf:
        assert libbpf.ok, libbpf.output
        for name, prog in coll.programs.items():
            theirs = libbpf.progs[name]
            assert prog_info(prog.fd) == prog_info(theirs), name
            assert btf_text(prog.fd) == btf_text(theirs), name
        with attach_iter(libbpf.progs["dump_task"]) as link:
            assert _ours(read_iter(link)) == _ours(read_iter(coll.programs["dump_task"].attach()))
        ids = {str(_bpf.map_get_info(fd)["id"])
               for fd in (coll.maps["iter_marker"].fd, libbpf.maps["iter_marker"])}
        with attach_iter(libbpf.progs["dump_maps"]) as link:
            theirs = {m for m in _markers(read_iter(link)) if m.split()[0] in ids}
        mine = {m for m in _markers(read_iter(coll.programs["dump_maps"].attach()))
                if m.split()[0] in ids}
    assert mine == theirs == {f"{i} iter_marker 42" for i in ids}   # both loaders' maps
