"""Maps pinned by name (LIBBPF_PIN_BY_NAME): pinned under the pin path, reused
when compatible, refused when not -- by rawprobe and, side by side, by libbpf
(`bpftool prog loadall` seeing the same bpffs as its /sys/fs/bpf).

Every test pins into a bpffs of its own, mounted for it and unmounted after.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import rawprobe
from rawprobe._sys import bpf as _bpf
from rawprobe.errors import ObjectFormatError, PinError, SyscallError, VerifierError
from rawprobe.uapi import MapType

from bpffs import private_bpffs
from libbpf_oracle import loadall

BPF = Path(__file__).parent / "bpf"
PINNING = BPF / "pinning.bpf.o"
MISMATCH = BPF / "pinning_mismatch.bpf.o"
PINNED = ("pinned_counts", "pinned_slots")    # those bump() uses
ALL_PINNED = {*PINNED, "pinned_events", "pinned_outer", "pinned_jumps"}
U64 = struct.Struct("<Q")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


@pytest.fixture
def bpffs(tmp_path):
    """A fresh bpffs of this test's own, unmounted (with its pins) afterwards."""
    with private_bpffs(tmp_path) as d:
        yield d


def _bump(prog_fd, key: int, n: int) -> None:
    """Run bump(): add n to slot key (struct bpf_raw_tracepoint_args)."""
    assert _bpf.prog_test_run(prog_fd, ctx_in=struct.pack("<QQ", key, n), repeat=0) == 0


def _count(map_fd, key: int) -> int | None:
    v = _bpf.map_lookup_elem(map_fd, struct.pack("<I", key), 8)
    return None if v is None else U64.unpack(v)[0]


def _map_id(fd) -> int:
    return _bpf.map_get_info(fd)["id"]


def _pins(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} - {"maps.debug", "progs.debug"}


def test_pinned_under_pin_path_and_reused(bpffs):
    """The first load creates and pins the maps declared LIBBPF_PIN_BY_NAME
    (only those); they outlive it; the next load reuses them, contents and
    all, while its unpinned maps are new.  A PERF_EVENT_ARRAY's max_entries 0
    compares as the number of CPUs it was created with."""
    with rawprobe.load(PINNING, pin_path=bpffs) as coll:
        assert _pins(bpffs) == ALL_PINNED
        for name in ALL_PINNED:
            m = coll.maps[name]
            assert (m.pin_path, m.reused) == (str(bpffs / name), False)
        assert (coll.maps["private_counts"].pin_path, coll.maps["private_counts"].reused) \
            == (None, False)
        ids = {n: _map_id(coll.maps[n].fd) for n in ALL_PINNED}
        _bump(coll.programs["bump"].fd, 3, 5)
    with _bpf.obj_get(str(bpffs / "pinned_counts")) as fd:
        assert _count(fd, 3) == 5                  # the pin kept the map
    with rawprobe.load(PINNING, pin_path=str(bpffs)) as coll:
        for name, map_id in ids.items():
            assert coll.maps[name].reused and _map_id(coll.maps[name].fd) == map_id, name
        _bump(coll.programs["bump"].fd, 3, 7)
        assert _count(coll.maps["pinned_counts"].fd, 3) == 12
        assert coll.maps["pinned_slots"].lookup(3) == U64.pack(12)
        assert _count(coll.maps["private_counts"].fd, 3) == 7


def test_libbpf_and_rawprobe_share_pins(bpffs):
    """libbpf reuses the maps rawprobe pinned, and rawprobe those libbpf pinned:
    what either loader's program adds, the other's maps show."""
    with rawprobe.load(PINNING, pin_path=bpffs) as coll, loadall(PINNING, bpffs) as libbpf:
        assert libbpf.ok, libbpf.output
        for name in PINNED:
            assert _map_id(libbpf.maps[name]) == _map_id(coll.maps[name].fd), name
        assert _map_id(libbpf.maps["private_counts"]) != \
            _map_id(coll.maps["private_counts"].fd)
        _bump(libbpf.progs["bump"], 1, 4)
        _bump(coll.programs["bump"].fd, 1, 2)
        assert _count(coll.maps["pinned_counts"].fd, 1) == 6
        assert _count(libbpf.maps["private_counts"], 1) == 4
        assert _count(coll.maps["private_counts"].fd, 1) == 2
        for m in coll.maps.values():
            m.unpin()
    assert _pins(bpffs) == set()
    with loadall(PINNING, bpffs) as libbpf:       # libbpf pins first this time
        assert libbpf.ok, libbpf.output
        assert {"pinned_counts", "pinned_slots"} <= _pins(bpffs)
        _bump(libbpf.progs["bump"], 2, 9)
        with rawprobe.load(PINNING, pin_path=bpffs) as coll:
            assert all(coll.maps[n].reused for n in PINNED)
            assert _map_id(coll.maps["pinned_counts"].fd) == _map_id(libbpf.maps["pinned_counts"])
            assert _count(coll.maps["pinned_counts"].fd, 2) == 9


def test_pinned_map_that_differs_is_refused(bpffs):
    """A pinned map whose definition is not the object's (max_entries 16
    pinned, 32 declared) fails the load, naming the field and what to do; the
    pin is left alone.  libbpf refuses it too."""
    with rawprobe.load(PINNING, pin_path=bpffs):
        pass
    with pytest.raises(PinError, match=r"map 'pinned_counts': the map pinned at "
                                       r".*/pinned_counts differs from the object's: "
                                       r"max_entries 16 \(object: 32\); remove the pin"):
        rawprobe.load(MISMATCH, pin_path=bpffs)
    with _bpf.obj_get(str(bpffs / "pinned_counts")) as fd:
        assert _bpf.map_get_info(fd)["max_entries"] == 16
    with loadall(MISMATCH, bpffs) as libbpf:
        assert not libbpf.ok and "parameter mismatch" in libbpf.output


def test_failed_load_removes_only_its_own_pins(bpffs):
    """A load that fails after pinning (here its last program is refused)
    removes the pins it made, as libbpf does, and leaves those it reused."""
    made = {"pinned_counts", "pinned_outer", "pinned_jumps"}
    with rawprobe.load(PINNING, pin_path=bpffs) as coll:
        for name in made:
            coll.maps[name].unpin()
        kept = {n: _map_id(coll.maps[n].fd) for n in ALL_PINNED - made}
    spec = rawprobe.ObjectSpec.from_file(PINNING)
    p = spec.programs["tail"]
    p.insns = struct.pack("<BBhi", 0x95, 0, 0, 0)                 # exit, r0 unset
    p.func_info, p.line_info, p.core_relos, p.map_relocs = [], [], [], []
    with pytest.raises(VerifierError, match="program 'tail'"):
        spec.load(pin_path=bpffs)
    assert _pins(bpffs) == set(kept)
    for name, map_id in kept.items():
        with _bpf.obj_get(str(bpffs / name)) as fd:
            assert _map_id(fd) == map_id


def test_unpin_forgets_the_pin_and_says_what_stopped_it(bpffs):
    """unpin() removes the pin and forgets it (unpinning again does nothing); a pin
    it cannot remove (here its place taken by a directory) is an error naming the
    path, the map and why, not passed over."""
    import errno
    with rawprobe.load(PINNING, pin_path=bpffs) as coll:
        m = coll.maps["pinned_counts"]
        path = m.pin_path
        m.unpin()
        assert m.pin_path is None and not os.path.exists(path)
        m.unpin()
        other = coll.maps["pinned_slots"]
        path = other.pin_path
        os.unlink(path)
        os.mkdir(path)
        try:
            with pytest.raises(SyscallError) as e:
                other.unpin()
        finally:
            os.rmdir(path)
        assert e.value.errno == errno.EISDIR
        assert str(e.value).startswith(f"unlink({path!r}), the pin of map 'pinned_slots' "
                                       f"failed: EISDIR")


def test_pin_path_must_be_on_bpffs(tmp_path):
    with pytest.raises(PinError, match=r"pin_path '.*' is on a \w+ filesystem, not a bpffs"):
        rawprobe.load(PINNING, pin_path=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pin_path_holding_a_program_is_refused(bpffs):
    with rawprobe.load(PINNING, pin_path=bpffs) as coll:
        coll.maps["pinned_counts"].unpin()
        _bpf.obj_pin(coll.programs["bump"].fd, str(bpffs / "pinned_counts"))
    with pytest.raises(PinError, match=r"pinned_counts holds a BPF prog, not a map"):
        rawprobe.load(PINNING, pin_path=bpffs)


def test_pin_path_is_made_on_bpffs(bpffs):
    """A missing pin_path is made (one level, 0700), as libbpf makes it."""
    with rawprobe.load(PINNING, pin_path=bpffs / "tool") as coll:
        assert coll.maps["pinned_counts"].pin_path == str(bpffs / "tool" / "pinned_counts")
    assert (bpffs / "tool").stat().st_mode & 0o777 == 0o700
    assert _pins(bpffs / "tool") == ALL_PINNED


def test_default_pin_path_is_sys_fs_bpf(bpffs):
    """Without pin_path, maps pin under /sys/fs/bpf (here a private mount
    namespace's, bound to this test's bpffs)."""
    code = (f"import rawprobe; c = rawprobe.load({str(PINNING)!r}); "
            f"print(c.maps['pinned_counts'].pin_path)")
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" /sys/fs/bpf && exec "$2" -c "$3"', "sh", str(bpffs),
         sys.executable, code],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent).stdout
    assert out.strip() == "/sys/fs/bpf/pinned_counts"
    assert set(PINNED) <= _pins(bpffs)


def test_device_map_reused_despite_kernel_flag(bpffs):
    """The kernel reports BPF_F_RDONLY_PROG on every device map whatever it
    was created with; libbpf (1.7+) ignores that flag when it compares, and so
    does rawprobe."""
    spec = rawprobe.ObjectSpec.from_file(PINNING)
    m = spec.maps["pinned_slots"]
    m.type, m.value_size, m.map_flags, m.btf_value_type_id = int(MapType.DEVMAP), 4, 0, 0
    with spec.load(programs=[], pin_path=bpffs) as first:
        assert _bpf.map_get_info(first.maps["pinned_slots"].fd)["map_flags"] != 0
        with spec.load(programs=[], pin_path=bpffs) as second:
            assert second.maps["pinned_slots"].reused


def test_inner_map_cannot_be_pinned():
    obj = BPF / "pinning_inner.bpf.o"
    with pytest.raises(ObjectFormatError, match=r"inner map of 'outer': an inner map "
                                                r"cannot be pinned"):
        rawprobe.ObjectSpec.from_file(obj)
    with loadall(obj) as libbpf:
        assert not libbpf.ok and "inner def can't be pinned" in libbpf.output


def test_reused_map_slots(bpffs):
    """A reused program array gets this load's programs (libbpf fills it on
    every load); a reused map of maps keeps the slots it has (libbpf sets them
    only on the map it creates)."""
    with rawprobe.load(PINNING, pin_path=bpffs) as first:
        jumps, outer = first.maps["pinned_jumps"], first.maps["pinned_outer"]
        first_tail = first.programs["tail"].info()["id"]
        assert jumps.lookup(0) == first_tail.to_bytes(4, "little")
        assert outer.lookup(0) == _map_id(first.maps["slot_a"].fd).to_bytes(4, "little")
        _bump(first.programs["bump"].fd, 1, 1)
        assert _count(first.maps["private_counts"].fd, 101) == 1     # tail() ran
        outer.delete(0)
    with rawprobe.load(PINNING, pin_path=bpffs) as second:
        tail = second.programs["tail"].info()["id"]
        assert tail != first_tail
        assert second.maps["pinned_jumps"].lookup(0) == tail.to_bytes(4, "little")
        assert second.maps["pinned_outer"].lookup(0) is None
