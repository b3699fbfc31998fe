"""The loader on the running kernel: real objects, real programs, checked results."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from fdcheck import open_fds

import rawprobe
from rawprobe.maps import possible_cpus

BPF = Path(__file__).parent / "bpf"
BASIC = BPF / "load_basic.bpf.o"
MAPS = BPF / "spec_maps.bpf.o"
CORE = BPF / "core_read.bpf.o"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")



@pytest.fixture
def basic():
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(programs=["count_getppid"]) as coll:
        yield coll


def test_global_data_subprograms_and_bpf_loop(basic):
    basic.programs["count_getppid"].attach()
    for _ in range(3):
        os.getppid()
    v = basic.variables
    assert v["target_tgid"].get_int() == os.getpid()        # set on the spec
    assert v["multiplier"].get_int() == 3                     # .rodata default
    assert v["hits"].get_int() == 3                           # .bss written by the program
    assert v["loop_sum"].get_int() == sum(range(10))          # bpf_loop callback
    assert v["static_result"].get_int() == 3 * 3              # static subprogram
    assert v["global_result"].get_int() == 3 + 5              # global subprogram + .data
    # .data is writable after load and the program sees it
    v["base_value"].set(100)
    os.getppid()
    assert v["hits"].get_int() == 4
    assert v["global_result"].get_int() == 4 + 100
    assert basic.maps["per_tgid"].lookup(os.getpid()) == struct.pack("<Q", 4)
    per_cpu = basic.maps["percpu_hits"].lookup_percpu(0)
    assert len(per_cpu) == possible_cpus()
    assert sum(struct.unpack("<Q", x)[0] for x in per_cpu) == 4


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return ""


def test_map_and_program_own_their_fd():
    """Map and Program share one fd-owner interface: .fd, fileno(), closed,
    close() (idempotent), with; the kernel object goes when its fd is closed."""
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    with spec.load(programs=["count_getppid"]) as coll:
        objs = [coll.programs["count_getppid"], coll.maps["per_tgid"]]
        for obj in objs:
            fd = obj.fd
            assert isinstance(fd, int) and fd >= 3 and obj.fileno() == fd
            assert not obj.closed and f"fd={fd}" in repr(obj)
            assert _fd_target(fd).startswith("anon_inode:bpf-")
            with obj as same:
                assert same is obj
            assert obj.closed and "closed" in repr(obj)
            assert not _fd_target(fd).startswith("anon_inode:bpf-")
            with pytest.raises(rawprobe.ClosedError):
                obj.fileno()
            obj.close()                                  # idempotent
    assert all(obj.closed for obj in objs)               # and the Collection's close too


def test_variable_set_after_load_is_checked_like_before_load(basic):
    v = basic.variables["base_value"]                        # __u32 in .data
    for bad in (-1, 1 << 32, b"\0" * 5, "5"):
        with pytest.raises(rawprobe.RawprobeError, match="base_value"):
            v.set(bad)
    v.set((1 << 32) - 1)
    assert v.get_int() == (1 << 32) - 1


def test_const_variable_not_settable_after_load(basic):
    with pytest.raises(rawprobe.RawprobeError, match="const"):
        basic.variables["multiplier"].set(7)


def test_other_processes_filtered_by_rodata(basic):
    basic.programs["count_getppid"].attach()
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", "import os; [os.getppid() for _ in range(5)]"],
                   check=True)
    assert basic.variables["hits"].get_int() == 0


def test_detached_program_runs_no_more(basic):
    link = basic.programs["count_getppid"].attach()
    os.getppid()
    link.close()
    os.getppid()
    assert basic.variables["hits"].get_int() == 1


def test_verifier_error_keeps_log():
    with pytest.raises(rawprobe.VerifierError) as ei:
        rawprobe.load(BASIC, programs=["bad_deref"])
    err = ei.value
    assert err.program == "bad_deref"
    assert "invalid mem access" in err.log
    assert "processed" in err.log
    assert "invalid mem access" in str(err)          # the summary shows the tail


def test_failed_load_closes_everything():
    before = open_fds()
    for _ in range(3):
        with pytest.raises(rawprobe.VerifierError):
            rawprobe.load(BASIC)                        # maps and BTF made, then failure
    assert open_fds() == before


def test_load_and_close_leave_no_fds():
    before = open_fds()
    coll = rawprobe.load(BASIC, variables={"target_tgid": 1}, programs=["count_getppid"])
    coll.programs["count_getppid"].attach()
    assert open_fds() != before
    coll.close()
    coll.close()                                        # idempotent
    assert open_fds() == before


def test_unknown_names_are_clear_errors():
    with pytest.raises(rawprobe.NotFoundError, match="no global variable 'nope'"):
        rawprobe.load(BASIC, variables={"nope": 1})
    with pytest.raises(rawprobe.NotFoundError, match="no program 'nope'"):
        rawprobe.load(BASIC, programs=["nope"])


@pytest.fixture(scope="module")
def maps_coll():
    with rawprobe.load(MAPS) as coll:
        yield coll


@pytest.mark.parametrize("name", ["hash_map", "array_map", "lru_hash", "percpu_hash",
                                  "percpu_array"])
def test_map_element_operations(maps_coll, name):
    m = maps_coll.maps[name]
    vs = m.value_size
    if m.percpu:
        value = b"".join(bytes([i + 1]) * vs + bytes(-vs % 8) for i in range(possible_cpus()))
    else:
        value = b"\x07" * vs
    count = min(3, m.max_entries)
    keys = [k.to_bytes(m.key_size, "little") for k in range(count)]
    for k in keys:
        m.update(k, value)
    assert m.lookup(keys[0]) == value
    if m.percpu:
        assert m.lookup_percpu(keys[0])[-1] == bytes([possible_cpus()]) * vs
    got = dict(m.items())
    for k in keys:
        assert got[k] == value
    if "array" in name:
        assert len(list(m.keys())) == m.max_entries             # arrays: every slot
    else:
        assert sorted(m.keys()) == sorted(keys)
        assert len(keys) == 3
        assert m.delete(keys[1]) is True
        assert m.delete(keys[1]) is False
        assert m.lookup(keys[1]) is None
        assert keys[1] not in m


def test_special_maps(maps_coll):
    rb = maps_coll.maps["ringbuf"]
    with pytest.raises(rawprobe.NotSupportedError, match="RingBuffer"):
        rb.lookup(0)
    assert maps_coll.maps["perf_events"].max_entries == possible_cpus()
    # the program array slot declared in the object holds tail_target
    jt = maps_coll.maps["jump_table"]
    prog_id = maps_coll.programs["tail_target"].info()["id"]
    slots = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in jt.items()}
    assert prog_id in slots.values()
    # the map-in-map slot holds inner_a
    outer = maps_coll.maps["outer"]
    assert outer.lookup(1) is not None


def test_core_task_fields_match_python():
    """pid, tgid, parent tgid and comm read from task_struct through CO-RE."""
    spec = rawprobe.ObjectSpec.from_file(CORE)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(programs=["core_probe_read"]) as coll:
        coll.programs["core_probe_read"].attach()
        os.getppid()
        out = coll.variables["out"].get()
    pid, tgid, ppid = struct.unpack_from("<III", out)
    comm = out[12:28].split(b"\0", 1)[0]
    assert (pid, tgid, ppid) == (os.getpid(), os.getpid(), os.getppid())
    assert comm == Path("/proc/self/comm").read_bytes().strip()


def test_closed_objects_raise_closed_error():
    """After close(), every map, program and variable operation raises
    ClosedError -- a RawprobeError (and a ValueError, as for a closed file)
    naming the object -- never a bare ValueError from deep inside."""
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    coll = spec.load(programs="count_getppid")
    m, p, v = coll.maps["per_tgid"], coll.programs["count_getppid"], coll.variables["hits"]
    coll.close()
    ops = {
        "map 'per_tgid'": [lambda: m.lookup(1), lambda: m.update(1, 2), lambda: m.delete(1),
                           lambda: list(m.keys()), lambda: list(m.items()), m.freeze,
                           lambda: m.fd, m.fileno, lambda: m[1], lambda: 1 in m],
        "program 'count_getppid'": [p.attach, p.info, lambda: p.fd, p.fileno],
        "variable 'hits'": [v.get, lambda: v.set(1), v.get_int],
    }
    for what, calls in ops.items():
        for call in calls:
            with pytest.raises(rawprobe.ClosedError, match=f"{what}.* closed") as e:
                call()
            assert isinstance(e.value, rawprobe.RawprobeError) and \
                isinstance(e.value, ValueError)


def test_load_one_program_by_name():
    """programs= takes one name as well as several: not the name's letters."""
    with rawprobe.load(BASIC, programs="count_getppid") as coll:
        assert list(coll.programs) == ["count_getppid"]
    with pytest.raises(rawprobe.NotFoundError, match="no program 'nope'"):
        rawprobe.load(BASIC, programs="nope")


def _btf_the_kernel_refuses(spec: rawprobe.ObjectSpec) -> rawprobe.ObjectSpec:
    """``spec`` with a type no kernel accepts (an int of an unknown encoding)
    in its BTF."""
    from rawprobe.btf import types as T
    spec.btf.add_type(T.Int("rawprobe_bad_int", size=4, encoding=8, bits=32))
    return spec


def test_programs_load_without_btf_the_kernel_refuses():
    """As libbpf: when the kernel refuses the object's BTF, its maps are made
    without BTF and programs that need none load and run."""
    spec = _btf_the_kernel_refuses(rawprobe.ObjectSpec.from_file(BPF / "maps_btf.bpf.o"))
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll:
        from rawprobe._sys import bpf
        assert bpf.map_get_info(coll.maps["by_tgid"].fd)["btf_id"] == 0
        coll.programs["on_getppid"].attach()
        os.getppid()
        assert coll.maps["by_tgid"].lookup(os.getpid()) is not None


def test_program_with_global_subprogram_needs_btf():
    """count_getppid calls the global add_base(), which the kernel verifies
    on its own from BTF: without BTF that program cannot load, and says so."""
    spec = _btf_the_kernel_refuses(rawprobe.ObjectSpec.from_file(BASIC))
    with pytest.raises(rawprobe.NotSupportedError, match=r"the kernel refused the object's "
                                                         r"BTF .* its programs need it"):
        spec.load(programs="count_getppid")
